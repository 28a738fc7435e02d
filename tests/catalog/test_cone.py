import csv
import io
import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from django.db import connection

from catalog.cone import (
    ConeError,
    cone_count,
    cone_ranges,
    count_ranges,
    cover_depth,
    crossmatch,
    galaxies_in_cone,
    nearest_first,
    whole_cells,
)
from catalog.importers import tables
from catalog.importers.tables import import_catalog
from catalog.models import Galaxy
from catalog.sky import HEALPIX_DEPTH, SKY_CELL_DEPTH, SKY_CELL_SHIFT
from tests.catalog.cone_data import around, insert_sky, uniform_sky
from tests.factories import GalaxyFactory

CENTRES = [
    (10.0, 20.0),
    (123.0, 90.0),  # north pole
    (0.0, -90.0),  # south pole
    (359.999, 12.0),  # across RA 0/360
    (0.0005, -3.0),
    (200.0, 89.5),
    (75.0, -88.7),
    (180.0, 0.0),
]
RADII = [1 / 3600, 1 / 60, 1.0, 10.0, 90.0]


@pytest.fixture
def sky(db):
    rng = np.random.default_rng(42)
    parts = [uniform_sky(3000, rng)]
    parts.append((rng.uniform(0, 360, 300), rng.uniform(88.0, 90.0, 300)))
    parts.append((rng.uniform(0, 360, 300), rng.uniform(-90.0, -88.0, 300)))
    wrap_ra = np.concatenate([rng.uniform(359.0, 360.0, 150), rng.uniform(0, 1.0, 150)]) % 360.0
    parts.append((wrap_ra, rng.uniform(-1, 25, 300)))
    for ra0, dec0 in CENTRES:  # points straddling each radius
        offsets = [r * f for r in RADII for f in (0.5, 0.99, 1.01, 1.5)]
        parts.append(around(ra0, dec0, offsets, rng))
    ra = np.concatenate([p[0] for p in parts])
    dec = np.concatenate([p[1] for p in parts])
    pgcs = insert_sky(ra, dec)
    return pgcs, ra % 360.0, dec


@pytest.mark.slow
def test_cone_matches_brute_force_everywhere(sky):
    pgcs, ra, dec = sky
    all_points = SkyCoord(ra * u.deg, dec * u.deg)
    checked = 0
    for ra0, dec0 in CENTRES:
        sep = SkyCoord(ra0 * u.deg, dec0 * u.deg).separation(all_points).deg
        for r in RADII:
            got = list(galaxies_in_cone(ra0, dec0, r).values_list("pgc", "distance_deg"))
            got_ids = {p for p, _ in got}
            near_edge = np.abs(sep - r) < 1e-9
            expected = set(pgcs[(sep <= r) & ~near_edge].tolist())
            assert expected <= got_ids, (ra0, dec0, r, sorted(expected - got_ids)[:5])
            extra = got_ids - expected
            assert extra <= set(pgcs[near_edge].tolist()), (ra0, dec0, r, sorted(extra)[:5])
            dist = np.array([d for _, d in got])
            assert np.all(np.diff(dist) >= 0), "nearest first"
            index = {p: i for i, p in enumerate(pgcs.tolist())}
            truth = np.array([sep[index[p]] for p, _ in got])
            assert np.allclose(dist, truth, atol=1e-9, rtol=0), (ra0, dec0, r)
            checked += len(got)
    assert checked > 10000


def test_cone_count_equals_the_rows_in_the_cone(sky):
    counts = []
    for ra0, dec0 in CENTRES:
        for r in RADII:
            counts.append(cone_count(ra0, dec0, r))
            assert counts[-1] == galaxies_in_cone(ra0, dec0, r).count(), (ra0, dec0, r)
    assert max(counts) > 1000 and min(counts) <= 2  # big cones and near-empty ones were both checked


def test_count_ranges_split_the_cover_into_inside_and_a_thin_edge():
    inside, edge = count_ranges(150.0, 20.0, 10.0)
    both = sorted(inside + edge)
    assert all(a[1] <= b[0] for a, b in zip(both, both[1:], strict=False))  # disjoint
    cover = sum(hi - lo for lo, hi in cone_ranges(150.0, 20.0, 10.0))
    assert sum(hi - lo for lo, hi in edge) < 0.1 * sum(hi - lo for lo, hi in inside) < cover


def test_whole_cells_split_ranges_at_cell_boundaries():
    c = 1 << 2 * (HEALPIX_DEPTH - 7)  # depth-29 indices per depth-7 cell
    cells, rest = whole_cells([(5, 3 * c + 7), (10 * c, 12 * c), (20 * c + 1, 20 * c + 9)], 7)
    assert cells == [(1, 3), (10, 12)]
    assert rest == [(5, c), (3 * c, 3 * c + 7), (20 * c + 1, 20 * c + 9)]


def _sky_cells() -> tuple[dict[int, int], dict[int, int]]:
    """(catalog_skycell's non-zero counts, the counts of the galaxy table itself)."""
    with connection.cursor() as cur:
        cur.execute("SELECT cell, galaxies FROM catalog_skycell WHERE galaxies <> 0")
        stored = dict(cur.fetchall())
        cur.execute(
            "SELECT healpix >> %s, count(*) FROM catalog_galaxy WHERE healpix IS NOT NULL GROUP BY 1",
            [SKY_CELL_SHIFT],
        )
        return stored, dict(cur.fetchall())


def test_sky_cells_follow_every_write_of_the_galaxies(sky, tmp_path, monkeypatch):
    pgcs = sky[0].tolist()
    stored, truth = _sky_cells()
    assert stored == truth and sum(truth.values()) == len(pgcs)
    g = Galaxy.objects.get(pgc=pgcs[0])
    g.ra, g.dec = (g.ra + 90.0) % 360.0, -g.dec
    g.save()  # moved to another cell
    Galaxy.objects.filter(pgc__in=pgcs[1:400]).delete()
    Galaxy.objects.bulk_create([Galaxy(pgc=10**8 + i) for i in range(3)])  # placeholders, no position
    Galaxy.objects.filter(pgc__in=pgcs[400:900]).update(vhel=1234.0)  # nobody moves
    path = tmp_path / "t.csv"  # a MERGE that moves 200 galaxies, adds 100 and places a placeholder
    rows = [f"{p},{(17.0 * k) % 360:.4f},{(k % 170) - 85:.4f}" for k, p in enumerate([*pgcs[900:1100], *range(10**9, 10**9 + 100), 10**8])]
    path.write_text("pgc,ra,dec\n" + "\n".join(rows) + "\n")
    assert import_catalog(path).created == 100
    stored, truth = _sky_cells()
    assert stored == truth and sum(truth.values()) == len(pgcs) - 399 + 101
    Galaxy.objects.filter(pgc__in=pgcs[1000:1010]).delete()  # the import turned the triggers back on
    stored, truth = _sky_cells()
    assert stored == truth and sum(truth.values()) == len(pgcs) - 409 + 101
    monkeypatch.setattr(tables, "BULK_MIN_ROWS", 5)  # a bulk write (its indexes rebuilt)
    rows = [f"{p},{(29.0 * k) % 360:.4f},{(k % 150) - 75:.4f}" for k, p in enumerate(pgcs[1100:2400])]
    path.write_text("pgc,ra,dec\n" + "\n".join(rows) + "\n")
    assert import_catalog(path).updated == 1300
    assert _sky_cells()[0] == _sky_cells()[1]
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending
        cur.execute("TRUNCATE catalog_galaxy CASCADE")
    assert _sky_cells() == ({}, {})


@pytest.mark.django_db
def test_sky_cells_follow_a_partial_import_whose_checks_drop_rows(tmp_path):
    """The moves count only the rows the set-wise checks keep."""
    rows = [f"{p},{(37.0 * p) % 360:.4f},{(p % 170) - 85:.4f},N {p}" for p in range(1, 301)]
    path = tmp_path / "a.csv"
    path.write_text("pgc,ra,dec,name\n" + "\n".join(rows) + "\n")
    import_catalog(path)
    assert _sky_cells()[0] == _sky_cells()[1]
    rows = [f"{p},{(53.0 * p) % 360:.4f},{(p % 150) - 75:.4f},M {p}" for p in range(250, 450)]
    rows.append("260,10.0,10.0,M 9999")  # pgc 260 again: this row dropped
    rows.append("500,20.0,20.0,N 7")  # a name of pgc 7: dropped
    path.write_text("pgc,ra,dec,name\n" + "\n".join(rows) + "\n")
    report = import_catalog(path, partial=True)
    assert (report.created, report.updated, report.skipped) == (149, 51, 2)
    stored, truth = _sky_cells()
    assert stored == truth and sum(truth.values()) == 449


@pytest.mark.django_db
@pytest.mark.parametrize(("pgcs", "method"), [(range(100, 400, 2), "hash"), (range(1, 1001, 50), "nested")])
def test_reimport_finds_its_galaxies_by_either_join(tmp_path, monkeypatch, pgcs, method):
    """A re-import whose pgc numbers are dense in their range hashes the galaxies of that range;
    a sparse one looks each up; either way the rows and the sky cells come out the same."""
    path = tmp_path / "a.csv"
    path.write_text("pgc,ra,dec,vhel\n" + "\n".join(f"{p},{(37.0 * p) % 360:.4f},{(p % 170) - 85:.4f},100" for p in range(1, 1001)) + "\n")
    import_catalog(path)
    chosen = []
    joins = tables._joins
    monkeypatch.setattr(tables, "_joins", lambda cur, how: chosen.append(how) or joins(cur, how))
    rows = [f"{p},{(53.0 * p) % 360:.4f},{(p % 150) - 75:.4f},{p + 1000}" for p in [*pgcs, 2000]]
    path.write_text("pgc,ra,dec,vhel\n" + "\n".join(rows) + "\n")
    report = import_catalog(path)
    assert chosen == [method]
    assert (report.created, report.updated) == (1, len(pgcs))
    assert dict(Galaxy.objects.exclude(vhel=100).values_list("pgc", "vhel")) == {p: p + 1000.0 for p in [*pgcs, 2000]}
    assert Galaxy.objects.filter(vhel=100).count() == 1000 - len(pgcs)
    stored, truth = _sky_cells()
    assert stored == truth and sum(truth.values()) == 1001


def test_cone_count_reads_whole_cells_from_their_counts(sky):
    inside, _ = count_ranges(10.0, 20.0, 10.0)
    cells, _ = whole_cells(inside, SKY_CELL_DEPTH)
    assert cells, "a 10 deg cone holds whole cells"
    before = cone_count(10.0, 20.0, 10.0)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO catalog_skycell (cell, galaxies) VALUES (%s, 1000) "
            "ON CONFLICT (cell) DO UPDATE SET galaxies = catalog_skycell.galaxies + 1000",
            [cells[0][0]],
        )
    assert cone_count(10.0, 20.0, 10.0) == before + 1000


def _analyzed():
    with connection.cursor() as cur:
        cur.execute("ANALYZE catalog_galaxy")  # nearest_first reads the catalog's size from the statistics


@pytest.mark.parametrize("rows", [1, 7, 60])
def test_nearest_first_equals_the_first_rows_of_the_whole_cone(sky, rows):
    _analyzed()
    for ra0, dec0 in CENTRES:
        for r in (1.0, 10.0, 90.0):
            qs = galaxies_in_cone(ra0, dec0, r).values_list("pgc", "distance_deg")
            assert nearest_first(qs, ra0, dec0, r, rows) == list(qs[:rows]), (ra0, dec0, r)


def test_nearest_first_grows_its_cone_when_a_filter_thins_the_rows(sky):
    _analyzed()
    qs = galaxies_in_cone(10.0, 20.0, 90.0, Galaxy.objects.filter(vhel__lt=1100)).values_list("pgc", flat=True)
    expected = list(qs[:20])
    assert len(expected) == 20  # a filter keeping about 1 % of the rows: the first guess of the cone is far too small
    assert nearest_first(qs, 10.0, 20.0, 90.0, 20) == expected


def test_nearest_first_after_a_cursor_distance(sky):
    _analyzed()
    whole = list(galaxies_in_cone(180.0, 0.0, 30.0).values_list("pgc", "distance_deg"))
    start = whole[100][1]
    qs = galaxies_in_cone(180.0, 0.0, 30.0).filter(distance_deg__gt=start).values_list("pgc", "distance_deg")
    assert nearest_first(qs, 180.0, 0.0, 30.0, 25, beyond_deg=start) == [row for row in whole if row[1] > start][:25]


def test_cover_is_a_few_ranges_at_the_right_depth():
    assert cover_depth(1.0) == math.floor(math.log2(58.6 / 1.0) + 2)
    assert cover_depth(1 / 3600) == 19
    assert cover_depth(90.0) == 1
    for r in (1 / 3600, 1 / 60, 1.0, 10.0):
        ranges = cone_ranges(189.0, 26.0, r)
        assert 1 <= len(ranges) <= 24
        assert all(lo < hi for lo, hi in ranges)
        assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False)), "merged and sorted"


@pytest.mark.django_db
def test_placeholders_without_position_never_match():
    GalaxyFactory(pgc=5, ra=10.0, dec=10.0)
    Galaxy.objects.create(pgc=6)  # known only by pgc
    assert list(galaxies_in_cone(10.0, 10.0, 90).values_list("pgc", flat=True)) == [5]


@pytest.mark.django_db
def test_cone_narrows_a_given_queryset():
    GalaxyFactory(pgc=7, ra=10.0, dec=10.0, vhel=500)
    GalaxyFactory(pgc=8, ra=10.01, dec=10.0, vhel=5000)
    qs = galaxies_in_cone(10.0, 10.0, 1.0, Galaxy.objects.filter(vhel__gt=1000))
    assert [g.pgc for g in qs] == [8]
    assert qs[0].distance_deg == pytest.approx(0.01 * math.cos(math.radians(10.0)), rel=1e-4)


@pytest.mark.parametrize(
    "ra,dec,r,msg", [(10, 95, 1, "Dec"), (400, 0, 1, "RA"), (10, 0, -1, "positive"), (10, 0, 91, "largest"), ("abc", 0, 1, "numeric")]
)
def test_bad_cones_are_refused(ra, dec, r, msg):
    with pytest.raises(ConeError, match=msg):
        galaxies_in_cone(ra, dec, r)


@pytest.mark.django_db
def test_crossmatch_gives_nearest_within_radius_in_input_order():
    GalaxyFactory(pgc=11, ra=100.0, dec=-30.0)
    GalaxyFactory(pgc=12, ra=100.0 + 5 / 3600, dec=-30.0)
    GalaxyFactory(pgc=13, ra=359.9999, dec=0.0)
    matches = crossmatch([(100.0 + 4 / 3600, -30.0), (0.0001, 0.0), (50.0, 50.0)], 10 / 3600)
    assert [m.galaxy.pgc if m.galaxy else None for m in matches] == [12, 13, None]
    assert matches[1].distance_deg == pytest.approx(0.0002, abs=1e-9)
    # batches of UNION ALL statements give the same answer as one cone per position
    positions = [(100.0 + 4 / 3600, -30.0), (0.0001, 0.0), (50.0, 50.0), (100.0, -30.0), (359.99995, 0.0)]
    batched = crossmatch(positions, 10 / 3600, batch=2)
    single = [galaxies_in_cone(ra, dec, 10 / 3600).first() for ra, dec in positions]
    assert [m.galaxy for m in batched] == single
    assert [m.index for m in batched] == [0, 1, 2, 3, 4]
    with pytest.raises(ConeError, match="position 2"):
        crossmatch([(1.0, 1.0), (1.0, 91.0)], 0.01)


@pytest.mark.django_db
def test_crossmatch_upload_answers_a_csv(client):
    GalaxyFactory(pgc=11, ra=100.0, dec=-30.0)
    GalaxyFactory(pgc=13, ra=359.9999, dec=0.0)
    upload = io.BytesIO(b"id,ra,dec\nA,100.001,-30.0\nB,0.0001,0.0\nC,50,50\n")
    upload.name = "positions.csv"
    r = client.post("/crossmatch/", {"file": upload, "radius": "10"})
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    rows = list(csv.reader([ln for ln in r.content.decode().splitlines() if not ln.startswith("#")]))
    assert rows[0] == ["id", "ra", "dec", "pgc", "pgc_ra", "pgc_dec", "distance_arcsec"]
    assert [(row[0], row[3]) for row in rows[1:]] == [("A", "11"), ("B", "13"), ("C", "")]
    assert float(rows[1][6]) == pytest.approx(0.001 * math.cos(math.radians(30)) * 3600, rel=1e-3)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content,radius,msg",
    [
        (b"x,y\n1,2\n", "10", "must name columns ra and dec"),
        (b"ra,dec\n1,abc\n", "10", "line 2"),
        (b"ra,dec\n1,95\n", "10", "Dec"),
        (b"ra,dec\n1,5\n", "-3", "radius"),
    ],
)
def test_crossmatch_upload_refuses_bad_files(client, content, radius, msg):
    upload = io.BytesIO(content)
    upload.name = "p.csv"
    r = client.post("/crossmatch/", {"file": upload, "radius": radius})
    assert r.status_code == 400 and msg in r.content.decode()
