"""The zoo's models, until now in the catalog app, become the zoo's: the catalog_* tables and
their rows stay as they are."""

from django.db import migrations

from core.migration_ops import MoveModels


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("catalog", "0005_release_immutable"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        MoveModels(
            "catalog",
            [
                "inclinationvote",
                "volunteer",
                "standard",
                "calibrationgalaxy",
                "voteround",
                "consensusinclination",
                "consensusoverride",
                "volunteercalibration",
            ],
        ),
    ]
