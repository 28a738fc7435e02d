"""Votes are append-only: the database itself refuses UPDATE of inclination votes."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION catalog_vote_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'inclination votes are append-only (vote %)', OLD.id USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER catalog_vote_no_update BEFORE UPDATE ON catalog_inclinationvote
    FOR EACH ROW EXECUTE FUNCTION catalog_vote_append_only();
"""
BACKWARD = """
DROP TRIGGER IF EXISTS catalog_vote_no_update ON catalog_inclinationvote;
DROP FUNCTION IF EXISTS catalog_vote_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
