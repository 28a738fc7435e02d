"""A published release is immutable: the database refuses changes to its rows and its data."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION catalog_release_row_frozen() RETURNS trigger AS $$
DECLARE
    rel_id bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN rel_id := NEW.release_id; ELSE rel_id := OLD.release_id; END IF;
    IF EXISTS (SELECT 1 FROM catalog_release WHERE id = rel_id AND status = 'published') THEN
        RAISE EXCEPTION 'release % is published: its rows are frozen', rel_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER catalog_release_row_frozen BEFORE INSERT OR UPDATE OR DELETE ON catalog_releaserow
    FOR EACH ROW EXECUTE FUNCTION catalog_release_row_frozen();

CREATE OR REPLACE FUNCTION catalog_release_frozen() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'published' THEN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'release % is published and cannot be deleted', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF NEW.status IS DISTINCT FROM OLD.status OR NEW.query IS DISTINCT FROM OLD.query
           OR NEW.columns IS DISTINCT FROM OLD.columns OR NEW.row_count IS DISTINCT FROM OLD.row_count
           OR NEW.name IS DISTINCT FROM OLD.name OR NEW.version IS DISTINCT FROM OLD.version
           OR NEW.slug IS DISTINCT FROM OLD.slug OR NEW.published_at IS DISTINCT FROM OLD.published_at THEN
            RAISE EXCEPTION 'release % is published: its data cannot change', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER catalog_release_frozen BEFORE UPDATE OR DELETE ON catalog_release
    FOR EACH ROW EXECUTE FUNCTION catalog_release_frozen();
"""
BACKWARD = """
DROP TRIGGER IF EXISTS catalog_release_row_frozen ON catalog_releaserow;
DROP FUNCTION IF EXISTS catalog_release_row_frozen();
DROP TRIGGER IF EXISTS catalog_release_frozen ON catalog_release;
DROP FUNCTION IF EXISTS catalog_release_frozen();
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0004_volunteer_calibration")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
