"""No N+1: list endpoints cost a fixed number of SQL queries whatever the page size; tables
(CSV, VOTable) come from the export code."""

from __future__ import annotations

import csv
import io

import pytest
from astropy.io.votable import parse_single_table

from catalog.models import Release, ReleaseRow
from catalog.releases import publish_release
from jobs.services import create_job
from tests.factories import GalaxyFactory, VoteFactory, make_image

pytestmark = pytest.mark.django_db

MAX_QUERIES = 6  # token lookup (with the role groups), the page (+ spares for a savepoint or count)


@pytest.fixture
def many_rows(curator):
    galaxies = [GalaxyFactory(ra=100 + i * 0.01, dec=10.0) for i in range(40)]
    for g in galaxies[:20]:
        make_image(g, "g", size=32)
        VoteFactory(user=curator, galaxy=g)
        create_job("fit", {}, user=curator)
    release = Release.objects.create(slug="r1", name="R", version="1", columns=["pgc", "inc"])
    for g in galaxies:
        ReleaseRow.objects.create(release=release, galaxy=g, ra=g.ra, dec=g.dec, healpix=g.healpix, values={"inc": 60})
    publish_release(release)  # drafts are for curators only
    return galaxies


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/galaxies/?fields=all",
        "/api/v1/galaxies/?ra=100.2&dec=10&radius=1",
        "/api/v1/images/",
        "/api/v1/votes/",
        "/api/v1/jobs/",
        "/api/v1/releases/",
        "/api/v1/releases/r1/rows/",
        "/api/v1/predictions/",
    ],
)
def test_list_queries_do_not_grow_with_page_size(curator_client, many_rows, django_assert_max_num_queries, url):
    sep = "&" if "?" in url else "?"
    counts = []
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for size in (2, 40):
        with django_assert_max_num_queries(MAX_QUERIES), CaptureQueriesContext(connection) as ctx:
            r = curator_client.get(f"{url}{sep}page_size={size}")
        if r.status_code == 404 and "predictions" in url:
            pytest.skip("no ml predictions endpoint in this build")
        assert r.status_code == 200, r.content
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]


def test_galaxy_csv_and_votable_come_from_the_export_code(anon_client, many_rows):
    r = anon_client.get("/api/v1/galaxies/?format=csv&fields=pgc,ra,dec&ra=100.2&dec=10&radius=0.05")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    text = b"".join(r.streaming_content).decode()
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    table = list(csv.DictReader(io.StringIO("\n".join(rows))))
    assert table and all(abs(float(t["ra"]) - 100.2) <= 0.05 for t in table)
    r = anon_client.get("/api/v1/galaxies/?fields=pgc,vhel", HTTP_ACCEPT="application/x-votable+xml")
    assert r.status_code == 200
    votable = parse_single_table(io.BytesIO(b"".join(r.streaming_content)))
    assert len(votable.array) == len(many_rows)
    assert str(votable.get_field_by_id_or_name("vhel").unit) == "km / s"


def test_table_errors_are_json(anon_client, many_rows):
    r = anon_client.get("/api/v1/galaxies/?format=csv&fields=bogus")
    assert r.status_code == 400 and r["Content-Type"].startswith("application/json")
    assert r.json()["field"] == "fields"
    r = anon_client.get("/api/v1/galaxies/?format=csv&inc_min=x")
    assert r.status_code == 400 and r.json()["field"] == "inc_min"


def test_release_rows_as_csv(anon_client, many_rows):
    r = anon_client.get("/api/v1/releases/r1/rows/?format=csv")
    assert r.status_code == 200
    text = b"".join(r.streaming_content).decode()
    assert "R v1" in text  # provenance header names the release
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(rows) == 1 + len(many_rows)


def test_a_vote_through_the_api_costs_a_fixed_handful_of_queries(volunteer, django_assert_max_num_queries):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    galaxies = [GalaxyFactory(ra=100 + i * 0.01, dec=10.0) for i in range(2)]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=volunteer).key}")
    client.post("/api/v1/votes/", {"pgc": galaxies[0].pk, "inc": 50.0}, format="json")  # opens the collector
    # token and roles, BEGIN, the volunteer's lock, the checked insert, COMMIT, the trigger row and
    # its open collector (inside the test's transaction BEGIN/COMMIT are savepoints)
    with django_assert_max_num_queries(7):
        r = client.post("/api/v1/votes/", {"pgc": galaxies[1].pk, "inc": 61.5}, format="json")
    assert r.status_code == 201


def test_the_answer_to_a_vote_is_the_stored_vote(volunteer):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    galaxy = GalaxyFactory(ra=100.0, dec=10.0)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=volunteer).key}")
    created = client.post("/api/v1/votes/", {"pgc": galaxy.pk, "inc": 61.5, "not_sure": True, "note": " hi "}, format="json").json()
    assert created == client.get(f"/api/v1/votes/{created['id']}/").json()
    assert (created["inc"], created["not_sure"], created["note"], created["kind"], created["round"]) == (61.5, True, "hi", "target", 0)
