import json

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from catalog.cone import galaxies_in_cone
from catalog.filters import GalaxyFilter
from catalog.models import Galaxy, GalaxyName
from catalog.selectors import galaxy_table_state, located_count
from tests.catalog.cone_data import insert_sky, uniform_sky
from tests.factories import GalaxyFactory, make_image


def test_home_has_counts_and_sky_map(client, edd_galaxies):
    r = client.get("/")
    html = r.content.decode()
    assert 'id="count-galaxies">98<' in html and 'id="count-images"' in html and 'id="count-votes"' in html
    assert 'id="sky-map"' in html and "vendor/plotly/plotly.min.js" in html
    data = json.loads(client.get("/skymap.json").content)
    assert sum(data["count"]) == 98 and len(data["ra"]) == len(data["dec"]) == len(data["count"]) > 10
    assert all(0 <= ra < 360 for ra in data["ra"]) and all(-90 <= d <= 90 for d in data["dec"])


@pytest.mark.parametrize("depth", [2, 4, 8])  # from the sky cell counts up to their depth (6), deeper from the index
def test_sky_counts_agree_with_the_index(edd_galaxies, depth):
    from catalog.views import sky_counts

    cache.clear()
    data = sky_counts(depth)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*) FROM catalog_galaxy WHERE healpix IS NOT NULL GROUP BY healpix >> {2 * (29 - depth)} ORDER BY healpix >> {2 * (29 - depth)}"
        )
        assert data["count"] == [r[0] for r in cur.fetchall()] and data["depth"] == depth


def test_browse_filters_sorts_and_counts(client, edd_galaxies):
    r = client.get("/galaxies/", {"inc_min": 80, "ordering": "-vhel", "col": ["pgc", "vhel", "inc"]})
    assert r.status_code == 200
    expected = list(Galaxy.objects.filter(inc__gte=80).order_by("-vhel", "pgc").values_list("pgc", flat=True))
    rows = r.context["rows"]
    assert [row[0][1] for row in rows] == expected[:50]
    assert [c.name for c, _ in rows[0]] == ["pgc", "vhel", "inc"]
    assert r.context["page"].paginator.count == len(expected)
    assert "/galaxies/download.csv?inc_min=80" in r.content.decode()


def test_browse_paginates_and_refuses_bad_pages(client, edd_galaxies):
    r = client.get("/galaxies/", {"per_page": 10, "page": 3})
    assert [row[0][1] for row in r.context["rows"]] == list(Galaxy.objects.located().order_by("pgc").values_list("pgc", flat=True))[20:30]
    r = client.get("/galaxies/", {"page": 10**9})
    assert r.status_code == 404 and "beyond the last page" in r.content.decode()
    r = client.get("/galaxies/", {"page": "abc"})
    assert r.status_code == 400 and "not a page number" in r.content.decode()


@pytest.mark.parametrize(
    "params,msg",
    [
        ({"q": "hello world!"}, "Cannot read"),
        ({"q": "189 95"}, "outside"),
        ({"inc_min": "steep"}, "Enter a number"),
        ({"ordering": "bogus"}, "unknown sort column"),
        ({"col": ["pgc", "bogus"]}, "unknown column"),
        ({"ra_center": 10, "dec_center": 95, "radius": 1}, "Dec"),
        ({"ra_center": 10}, "together"),
    ],
)
def test_bad_browse_input_answers_400_with_a_message(client, db, params, msg):
    r = client.get("/galaxies/", params)
    assert r.status_code == 400
    assert msg in r.content.decode()


def test_search_by_name_redirects_and_by_position_lists_nearest_first(client, db):
    g = GalaxyFactory(pgc=42038, ra=189.0867, dec=25.9875)
    GalaxyName.objects.create(galaxy=g, name="NGC 4565")
    GalaxyFactory(pgc=42039, ra=189.10, dec=25.99)
    GalaxyFactory(pgc=50000, ra=10.0, dec=10.0)
    for text in ("NGC 4565", "ngc4565", "PGC 42038", "42038"):
        r = client.get("/galaxies/", {"q": text})
        assert r.status_code == 302 and r["Location"] == "/galaxies/42038/", text
    r = client.get("/galaxies/", {"q": "12:36:20.8 +25:59:15 5 arcmin"})
    assert [row[0][1] for row in r.context["rows"]] == [42038, 42039]
    assert r.context["rows"][0][-1][0].name == "distance"
    r = client.get("/galaxies/", {"q": "NGC 9999"})
    assert r.status_code == 200 and "No galaxy called" in r.content.decode()


def test_galaxy_page_shows_groups_aliases_images_neighbours_and_panels(client, db):
    g = GalaxyFactory(pgc=42038, ra=189.0867, dec=25.9875, vhel=1230.0)
    GalaxyName.objects.create(galaxy=g, name="UGC 7772")
    GalaxyFactory(pgc=42039, ra=189.10, dec=25.99)
    GalaxyFactory(pgc=42040, ra=191.0, dec=25.99)  # about 1.7 deg away
    make_image(g, "g")
    r = client.get("/galaxies/42038/")
    html = r.content.decode()
    assert "UGC 7772" in html and "SDSS g photometry" in html
    assert 'id="votes-panel"' in html  # a panel from settings.GALCAT_GALAXY_PANELS
    assert [n.pgc for n in r.context["neighbours"]] == [42039]
    assert "km/s" in html and "<img" in html
    r = client.get("/galaxies/42038/", {"radius": 180})
    assert [n.pgc for n in r.context["neighbours"]] == [42039, 42040]
    assert client.get("/galaxies/42038/", {"radius": "-1"}).status_code == 400
    assert client.get("/galaxies/7/").status_code == 404


def test_filterset_is_usable_on_a_plain_queryset(db):
    GalaxyFactory(pgc=1, ra=1.0, dec=1.0, vhel=500, type="Sc")
    GalaxyFactory(pgc=2, ra=1.1, dec=1.0, vhel=5000, type="Sa")
    Galaxy.objects.create(pgc=3)
    g1 = Galaxy.objects.get(pgc=1)
    make_image(g1)
    fs = GalaxyFilter({"vhel_max": "1000"}, queryset=Galaxy.objects.all())
    assert fs.is_valid() and [g.pgc for g in fs.qs] == [1]
    assert [g.pgc for g in GalaxyFilter({"has_images": "true"}, queryset=Galaxy.objects.all()).qs] == [1]
    assert [g.pgc for g in GalaxyFilter({"has_images": "false"}, queryset=Galaxy.objects.all()).qs] == [2]
    assert [g.pgc for g in GalaxyFilter({"type": "sa"}, queryset=Galaxy.objects.all()).qs] == [2]
    assert [g.pgc for g in GalaxyFilter({"include_unlocated": "true"}, queryset=Galaxy.objects.all()).qs] == [1, 2, 3]
    cone = GalaxyFilter({"ra_center": "1.0", "dec_center": "1.0", "radius": "0.5", "ordering": "-distance"}, queryset=Galaxy.objects.all())
    assert [g.pgc for g in cone.qs] == [2, 1] and cone.cone is not None
    assert GalaxyFilter({"votes_min": "1"}, queryset=Galaxy.objects.all()).qs.count() == 0


def test_sorting_puts_missing_values_last_and_model_filters_work(db):
    GalaxyFactory(pgc=1, ra=1.0, dec=1.0, vhel=None)
    GalaxyFactory(pgc=2, ra=2.0, dec=1.0, vhel=100.0)
    GalaxyFactory(pgc=3, ra=3.0, dec=1.0, vhel=300.0)
    for ordering, expected in (("vhel", [2, 3, 1]), ("-vhel", [3, 2, 1])):
        assert [g.pgc for g in GalaxyFilter({"ordering": ordering}, queryset=Galaxy.objects.all()).qs] == expected
    # no predictions or fits stored: has_cnn/has_fit select none, their negation all
    for name in ("has_cnn", "has_fit"):
        assert GalaxyFilter({name: "true"}, queryset=Galaxy.objects.all()).qs.count() == 0
        assert GalaxyFilter({name: "false"}, queryset=Galaxy.objects.all()).qs.count() == 3


def test_pgc_ordered_lists_page_by_pgc_bounds(client, edd_galaxies):
    pgcs = list(Galaxy.objects.located().order_by("pgc").values_list("pgc", flat=True))
    seen, url = [], "/galaxies/?per_page=10&col=pgc"
    while url:
        r = client.get(url if url.startswith("/") else "/galaxies/" + url)
        assert r.status_code == 200 and r.context["count"] == 98
        seen += [row[0][1] for row in r.context["rows"]]
        url = r.context["keyset"]["next"]
    assert seen == pgcs
    last = client.get("/galaxies/", {"per_page": 10, "last": 1})
    assert [row[0][1] for row in last.context["rows"]] == pgcs[-10:]
    back = client.get("/galaxies/" + last.context["keyset"]["prev"])
    assert [row[0][1] for row in back.context["rows"]] == pgcs[-20:-10]
    first = client.get("/galaxies/", {"per_page": 10}).context["keyset"]
    assert (first["prev"], first["first"]) == (None, None) and first["next"]
    assert (last.context["keyset"]["next"], last.context["keyset"]["last"]) == (None, None)
    assert back.context["keyset"]["prev"] and back.context["keyset"]["next"]
    assert client.get("/galaxies/", {"after": "x"}).status_code == 400
    assert client.get("/galaxies/", {"after": 10**12}).context["rows"] == []


@pytest.mark.parametrize("extra", [{}, {"vhel_max": "4000"}])
def test_cone_pages_read_nearest_first_and_count_every_row(client, db, extra):
    insert_sky(*uniform_sky(4000, np.random.default_rng(3)))
    with connection.cursor() as cur:
        cur.execute("ANALYZE catalog_galaxy")  # the statistics the nearest-first pages start from
    whole = galaxies_in_cone(40.0, 30.0, 25.0, Galaxy.objects.filter(vhel__lte=extra.get("vhel_max", 1e9)))
    expected = list(whole.values_list("pgc", flat=True))
    r = client.get("/galaxies/", {"ra_center": "40", "dec_center": "30", "radius": "25", "per_page": "20", "page": "3", **extra})
    assert r.status_code == 200 and r.context["count"] == len(expected) > 60
    assert [row[0][1] for row in r.context["rows"]] == expected[40:60]


def test_located_count_is_kept_while_the_galaxy_table_is_unchanged(transactional_db, settings):
    settings.GALCAT_COUNT_CACHE_SECONDS = 60
    cache.clear()
    with connection.cursor() as cur:
        # this connection's view of its own transaction's counts also holds the counts of its
        # earlier transactions not yet sent (PostgreSQL sends them at most once a second): out now
        cur.execute("SELECT pg_stat_force_next_flush()")
    for _ in range(5):  # another connection's statistics may reach the table's counts in between: again
        state = galaxy_table_state()
        assert located_count() == 0  # counted, and kept for this state
        with CaptureQueriesContext(connection) as queries:
            assert located_count() == 0
        if galaxy_table_state() == state:  # the counts only grow: the same state throughout
            break
    assert len(queries) == 1  # the table's state only: the count is kept
    assert cache.get(f"galcat:located:{state}") == 0
    with transaction.atomic():
        GalaxyFactory(ra=10.0, dec=10.0)
        assert galaxy_table_state() is None  # this transaction changed the table: nothing kept is used
        assert located_count() == 1


def test_unfiltered_browse_counts_every_located_galaxy_in_any_order(client, edd_galaxies, settings):
    settings.GALCAT_COUNT_CACHE_SECONDS = 60
    for params in ({}, {"ordering": "-pgc"}, {"include_unlocated": "false"}):
        r = client.get("/galaxies/", params)
        assert r.status_code == 200 and r.context["count"] == 98, params
    assert client.get("/galaxies/", {"vhel_max": "1000"}).context["count"] == Galaxy.objects.located().filter(vhel__lte=1000).count() < 98
