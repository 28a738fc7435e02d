"""Galaxy list and detail: filters, cone, ordering, field selection, cursor pages, errors."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from catalog.cone import galaxies_in_cone
from catalog.models import Galaxy
from tests.catalog.cone_data import insert_sky, uniform_sky
from tests.factories import GalaxyFactory, GalaxyNameFactory, make_image

pytestmark = pytest.mark.django_db


def test_list_defaults_and_cursor_pages_cover_every_galaxy_once(anon_client, edd_galaxies):
    seen = []
    url = "/api/v1/galaxies/?page_size=30"
    while url:
        r = anon_client.get(url)
        assert r.status_code == 200, r.content
        body = r.json()
        assert len(body["results"]) <= 30
        seen += [row["pgc"] for row in body["results"]]
        url = body["next"]
    assert seen == sorted(edd_galaxies.values_list("pgc", flat=True))
    first = anon_client.get("/api/v1/galaxies/?page_size=1").json()["results"][0]
    assert set(first) == {"pgc", "ra", "dec", "vhel", "d25", "b_a", "pa", "type", "inc", "inc_e", "inc_flg", "url"}


def test_ordering_by_nullable_column_descending_pages_consistently(anon_client, edd_galaxies):
    expected = list(Galaxy.objects.located().order_by("-vhel", "-pgc").values_list("pgc", "vhel"))
    expected = [p for p, v in expected if v is not None] + [p for p, v in expected if v is None]
    seen, url = [], "/api/v1/galaxies/?ordering=-vhel&page_size=7&fields=pgc,vhel"
    while url:
        body = anon_client.get(url).json()
        seen += [row["pgc"] for row in body["results"]]
        url = body["next"]
    assert seen == expected


def test_fields_selection_and_unknown_field_error(anon_client, edd_galaxies):
    body = anon_client.get("/api/v1/galaxies/?fields=pgc,r_mag,inc&page_size=2").json()
    assert set(body["results"][0]) == {"pgc", "r_mag", "inc", "url"}
    r = anon_client.get("/api/v1/galaxies/?fields=pgc,bogus")
    assert r.status_code == 400
    err = r.json()
    assert err["field"] == "fields" and "bogus" in err["message"]


def test_filters_of_the_browse_page(anon_client, edd_galaxies):
    body = anon_client.get("/api/v1/galaxies/?inc_min=80&inc_max=85&page_size=1000&fields=pgc,inc").json()
    incs = [row["inc"] for row in body["results"]]
    assert incs and all(80 <= i <= 85 for i in incs)
    assert len(incs) == Galaxy.objects.filter(inc__gte=80, inc__lte=85).count()
    r = anon_client.get("/api/v1/galaxies/?inc_min=abc")
    assert r.status_code == 400 and r.json()["field"] == "inc_min"


def test_cone_search_sorted_by_distance(anon_client, db):
    near = GalaxyFactory(ra=10.0, dec=20.0)
    nearer = GalaxyFactory(ra=10.01, dec=20.0)
    GalaxyFactory(ra=200.0, dec=-30.0)
    body = anon_client.get("/api/v1/galaxies/?ra=10.005&dec=20&radius=0.5").json()
    pgcs = [row["pgc"] for row in body["results"]]
    assert sorted(pgcs) == sorted([near.pgc, nearer.pgc])
    dists = [row["distance"] for row in body["results"]]
    assert dists == sorted(dists) and all(0 <= d <= 0.5 for d in dists)
    r = anon_client.get("/api/v1/galaxies/?ra=10&dec=95&radius=1")
    assert r.status_code == 400 and r.json()["field"] == "radius"
    r = anon_client.get("/api/v1/galaxies/?ordering=distance")
    assert r.status_code == 400 and r.json()["field"] == "ordering"


def test_detail_with_aliases_and_public_images(anon_client, member_client, db):
    g = GalaxyFactory(ra=189.086, dec=25.988)
    GalaxyNameFactory(galaxy=g, name="NGC 4565")
    make_image(g, "g")
    private = make_image(g, "r", inc=60)
    private.is_public = False
    private.save()
    body = anon_client.get(f"/api/v1/galaxies/{g.pgc}/").json()
    assert body["pgc"] == g.pgc and body["aliases"] == ["NGC 4565"]
    assert [i["band"] for i in body["images"]] == ["g"]
    assert body["consensus"] is None and body["predictions"] == [] and body["fits"] == []
    assert body["healpix"] is not None and "distance" not in body
    bands = sorted(i["band"] for i in member_client.get(f"/api/v1/galaxies/{g.pgc}/").json()["images"])
    assert bands == ["g", "r"]


def test_detail_of_galaxy_without_position(anon_client, db):
    placeholder = Galaxy.objects.create(pgc=424242)
    assert anon_client.get(f"/api/v1/galaxies/{placeholder.pgc}/").json()["ra"] is None
    listed = [g["pgc"] for g in anon_client.get("/api/v1/galaxies/").json()["results"]]
    assert placeholder.pgc not in listed


def test_unknown_galaxy_and_unknown_path_answer_json(anon_client, db):
    r = anon_client.get("/api/v1/galaxies/123456789/")
    assert r.status_code == 404 and r["Content-Type"].startswith("application/json")
    assert "123456789" in r.json()["message"]
    r = anon_client.get("/api/v1/no-such-thing/")
    assert r.status_code == 404 and r["Content-Type"].startswith("application/json")
    assert r.json()["message"]
    r = anon_client.get("/api/v1/galaxies/?cursor=garbage")
    assert r.status_code == 400 and r.json()["field"] == "cursor"
    r = anon_client.get("/api/v1/galaxies/?page_size=0")
    assert r.status_code == 400 and r.json()["field"] == "page_size"


def test_crash_under_api_answers_json_500_and_other_paths_untouched(rf):
    from core.api.errors import ApiJsonErrorsMiddleware

    mw = ApiJsonErrorsMiddleware(lambda request: None)
    response = mw.process_exception(rf.get("/api/v1/galaxies/"), RuntimeError("boom"))
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert b"internal server error" in response.content and b"boom" not in response.content
    assert mw.process_exception(rf.get("/galaxies/"), RuntimeError("boom")) is None


def test_detail_shows_consensus_with_curator_override_winning(anon_client, curator):
    from zoo.models import ConsensusInclination, ConsensusOverride

    g = GalaxyFactory(ra=12.0, dec=-3.0)
    ConsensusInclination.objects.create(galaxy=g, inc=63.0, inc_e=2.5, inc_n=4, flag="A", method="calibrated", version="1")
    body = anon_client.get(f"/api/v1/galaxies/{g.pgc}/").json()
    assert body["consensus"]["inc"] == 63.0 and body["consensus"]["inc_n"] == 4 and body["consensus"]["method"] == "calibrated"
    ConsensusOverride.objects.create(galaxy=g, curator=curator, inc=70.0, inc_e=1.0, flag="A", reason="checked")
    body = anon_client.get(f"/api/v1/galaxies/{g.pgc}/").json()
    assert body["consensus"]["inc"] == 70.0 and body["consensus"]["method"] == "curator override"
    assert [m["inc"] for m in body["consensus"]["methods"]] == [63.0]


def test_cone_results_page_by_distance(anon_client, db):
    made = [GalaxyFactory(ra=50.0 + 0.01 * i, dec=-10.0) for i in range(5)]
    seen, url = [], "/api/v1/galaxies/?ra=50&dec=-10&radius=1&page_size=2&fields=pgc"
    while url:
        body = anon_client.get(url).json()
        seen += [(row["pgc"], row["distance"]) for row in body["results"]]
        url = body["next"]
    assert [p for p, _ in seen] == [g.pgc for g in made]
    assert [d for _, d in seen] == sorted(d for _, d in seen)


def test_cursor_pages_of_a_wide_cone_read_nearest_first_give_every_row_in_order(anon_client, db):
    insert_sky(*uniform_sky(3000, np.random.default_rng(8)))
    with connection.cursor() as cur:
        cur.execute("ANALYZE catalog_galaxy")  # the statistics the nearest-first pages start from
    expected = list(galaxies_in_cone(300.0, -40.0, 30.0).values_list("pgc", flat=True))
    seen, url = [], "/api/v1/galaxies/?ra=300&dec=-40&radius=30&page_size=25&fields=pgc"
    while url:
        body = anon_client.get(url).json()
        seen += [row["pgc"] for row in body["results"]]
        url = body["next"]
    assert seen == expected and len(expected) > 100


@pytest.mark.parametrize("url", ["/api/v1/", "/api/v1/galaxies/", "/api/v1/galaxies/?inc_min=bad", "/api/v1/images/", "/api/v1/releases/"])
def test_browsable_pages_for_people_and_json_errors(curator_client, url, db):
    GalaxyFactory(ra=5.0, dec=5.0)
    r = curator_client.get(url, HTTP_ACCEPT="text/html")
    if "bad" in url:
        assert r.status_code == 400 and r["Content-Type"].startswith("application/json")
    else:
        assert r.status_code == 200 and r["Content-Type"].startswith("text/html")


def test_forged_cursors_answer_400(anon_client, db):
    import base64
    import json

    GalaxyFactory(ra=50.0, dec=-10.0)

    def cursor(v, k):
        return base64.urlsafe_b64encode(json.dumps({"v": v, "k": k}).encode()).decode().rstrip("=")

    for params in (
        f"ra=50&dec=-10&radius=1&cursor={cursor('abc', 1)}",
        f"ordering=vhel&cursor={cursor('abc', 1)}",
        f"ordering=vhel&cursor={cursor(1.0, 'x')}",
        f"cursor={cursor(None, [1])}",
    ):
        r = anon_client.get(f"/api/v1/galaxies/?{params}")
        assert r.status_code == 400 and r.json()["field"] == "cursor", params
