"""The Job model moves here from the catalog app; its table, catalog_job, and the rows in it stay."""

from django.db import migrations

from core.migration_ops import MoveModels


class Migration(migrations.Migration):
    initial = True
    dependencies = [("catalog", "0005_release_immutable"), ("contenttypes", "0002_remove_content_type_name")]
    operations = [MoveModels("catalog", ["job"])]
