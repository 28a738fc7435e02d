"""Counts of located galaxies per HEALPix cell of depth 6 (catalog.sky.SKY_CELL_DEPTH), kept by
statement triggers on the galaxy table: each INSERT, UPDATE, DELETE or MERGE adds the
difference its transition tables make per cell (nothing for updates that move no galaxy across
a cell), TRUNCATE empties them. The shift 46 = 2 * (29 - 6) maps a depth-29 index to its cell.
Cells are updated in cell order, so that two writers touching the same cells cannot deadlock."""

from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION catalog_skycell_count() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM catalog_skycell;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO catalog_skycell (cell, galaxies)
        SELECT healpix >> 46, count(*) FROM new_rows WHERE healpix IS NOT NULL GROUP BY 1 ORDER BY 1
        ON CONFLICT (cell) DO UPDATE SET galaxies = catalog_skycell.galaxies + EXCLUDED.galaxies;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO catalog_skycell (cell, galaxies)
        SELECT healpix >> 46, -count(*) FROM old_rows WHERE healpix IS NOT NULL GROUP BY 1 ORDER BY 1
        ON CONFLICT (cell) DO UPDATE SET galaxies = catalog_skycell.galaxies + EXCLUDED.galaxies;
    ELSE
        INSERT INTO catalog_skycell (cell, galaxies)
        SELECT cell, sum(d) FROM (
            SELECT healpix >> 46 AS cell, 1 AS d FROM new_rows WHERE healpix IS NOT NULL
            UNION ALL
            SELECT healpix >> 46, -1 FROM old_rows WHERE healpix IS NOT NULL
        ) moved GROUP BY cell HAVING sum(d) <> 0 ORDER BY cell
        ON CONFLICT (cell) DO UPDATE SET galaxies = catalog_skycell.galaxies + EXCLUDED.galaxies;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER catalog_skycell_insert AFTER INSERT ON catalog_galaxy
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_skycell_count();
CREATE TRIGGER catalog_skycell_update AFTER UPDATE ON catalog_galaxy
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_skycell_count();
CREATE TRIGGER catalog_skycell_delete AFTER DELETE ON catalog_galaxy
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_skycell_count();
CREATE TRIGGER catalog_skycell_truncate AFTER TRUNCATE ON catalog_galaxy
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_skycell_count();
INSERT INTO catalog_skycell (cell, galaxies)
SELECT healpix >> 46, count(*) FROM catalog_galaxy WHERE healpix IS NOT NULL GROUP BY 1 ORDER BY 1;
"""
BACKWARD = """
DROP TRIGGER IF EXISTS catalog_skycell_insert ON catalog_galaxy;
DROP TRIGGER IF EXISTS catalog_skycell_update ON catalog_galaxy;
DROP TRIGGER IF EXISTS catalog_skycell_delete ON catalog_galaxy;
DROP TRIGGER IF EXISTS catalog_skycell_truncate ON catalog_galaxy;
DROP FUNCTION IF EXISTS catalog_skycell_count();
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_release_immutable")]
    operations = [
        migrations.CreateModel(
            name="SkyCell",
            fields=[
                (
                    "cell",
                    models.BigIntegerField(
                        help_text="Nested HEALPix index at depth SKY_CELL_DEPTH (healpix >> 46)", primary_key=True, serialize=False
                    ),
                ),
                ("galaxies", models.BigIntegerField(default=0, help_text="Located galaxies in the cell")),
            ],
            options={"verbose_name": "sky cell count"},
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
