"""Each role's rights: anonymous, volunteer, member, curator; images, votes, releases, jobs."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Image, Release, ReleaseRow
from catalog.releases import publish_release
from jobs.services import create_job
from tests.factories import GalaxyFactory, png_bytes
from zoo.models import InclinationVote

pytestmark = pytest.mark.django_db


@pytest.fixture
def galaxy():
    return GalaxyFactory(ra=150.0, dec=2.0)


def _upload(client, pgc, data=None, band="g", **extra):
    f = SimpleUploadedFile("pgc_upload.png", data if data is not None else png_bytes(48), content_type="image/png")
    return client.post("/api/v1/images/", {"pgc": pgc, "band": band, "file": f, **extra}, format="multipart")


def test_anonymous_cannot_vote(anon_client, galaxy):
    r = anon_client.post("/api/v1/votes/", {"pgc": galaxy.pgc, "inc": 70}, format="json")
    assert r.status_code in (401, 403)
    assert r.json()["message"]
    assert not InclinationVote.objects.exists()
    assert anon_client.get("/api/v1/votes/").status_code in (401, 403)


def test_volunteer_votes_and_lists_own_votes_only(volunteer_client, curator_client, volunteer, galaxy):
    other = GalaxyFactory(ra=151.0, dec=2.0)
    r = volunteer_client.post("/api/v1/votes/", {"pgc": galaxy.pgc, "inc": 72.5, "not_sure": True}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["pgc"] == galaxy.pgc and body["inc"] == 72.5 and body["not_sure"] is True and body["source"] == "api"
    assert body["volunteer"] == volunteer.username
    # the curator's own vote is not in the volunteer's list; the curator sees both
    assert curator_client.post("/api/v1/votes/", {"pgc": other.pgc, "inc": 60}, format="json").status_code == 201
    mine = volunteer_client.get("/api/v1/votes/").json()["results"]
    assert [v["pgc"] for v in mine] == [galaxy.pgc]
    everyone = curator_client.get("/api/v1/votes/").json()["results"]
    assert sorted(v["pgc"] for v in everyone) == sorted([galaxy.pgc, other.pgc])
    curator_vote = InclinationVote.objects.get(galaxy=other)
    assert volunteer_client.get(f"/api/v1/votes/{curator_vote.pk}/").status_code == 404


def test_vote_rejections_name_the_field(volunteer_client, galaxy):
    r = volunteer_client.post("/api/v1/votes/", {"pgc": galaxy.pgc, "inc": 95}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "inc"
    r = volunteer_client.post("/api/v1/votes/", {"pgc": 987654321, "inc": 50}, format="json")
    assert r.status_code == 404 and r.json()["field"] == "pgc"
    assert volunteer_client.post("/api/v1/votes/", {"pgc": galaxy.pgc, "inc": 50}, format="json").status_code == 201
    r = volunteer_client.post("/api/v1/votes/", {"pgc": galaxy.pgc, "inc": 51}, format="json")
    assert r.status_code == 409 and "already" in r.json()["message"]
    assert InclinationVote.objects.count() == 1


def test_vote_rate_limit_answers_429_with_retry_after(volunteer_client, settings):
    settings.GALCAT_VOTE_RATE = "2/60"
    galaxies = [GalaxyFactory(ra=10.0 + i, dec=0.0) for i in range(3)]
    codes = [volunteer_client.post("/api/v1/votes/", {"pgc": g.pgc, "inc": 60}, format="json") for g in galaxies]
    assert [r.status_code for r in codes] == [201, 201, 429]
    assert int(codes[2]["Retry-After"]) >= 1
    assert InclinationVote.objects.count() == 2


def test_volunteer_cannot_upload_images_member_can(volunteer_client, member_client, anon_client, galaxy):
    r = _upload(volunteer_client, galaxy.pgc)
    assert r.status_code == 403 and r.json()["message"]
    assert _upload(anon_client, galaxy.pgc).status_code in (401, 403)
    assert not Image.objects.exists()
    r = _upload(member_client, galaxy.pgc, pixel_scale=0.396, orientation="major_horizontal")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["pgc"] == galaxy.pgc and body["width"] == 48 and body["pixel_scale"] == 0.396 and len(body["sha256"]) == 64
    # the same bytes again: stored once
    again = _upload(member_client, galaxy.pgc, pixel_scale=0.396)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert Image.objects.count() == 1
    # everyone reads public images
    listed = anon_client.get(f"/api/v1/images/?pgc={galaxy.pgc}").json()["results"]
    assert [i["id"] for i in listed] == [body["id"]]


def test_bad_uploads_are_refused_and_write_nothing(member_client, galaxy):
    r = _upload(member_client, galaxy.pgc, data=b"not an image at all")
    assert r.status_code == 400 and r.json()["field"] == "file"
    r = _upload(member_client, 987654321)
    assert r.status_code == 400 and r.json()["field"] == "pgc"
    r = _upload(member_client, galaxy.pgc, band="q")
    assert r.status_code == 400 and r.json()["field"] == "band"
    assert not Image.objects.exists()


def test_private_images_only_for_members(anon_client, volunteer_client, member_client, member, galaxy):
    r = _upload(member_client, galaxy.pgc, is_public="false")
    assert r.status_code == 201
    image_id = r.json()["id"]
    assert anon_client.get(f"/api/v1/images/{image_id}/").status_code == 404
    assert volunteer_client.get("/api/v1/images/").json()["results"] == []
    assert member_client.get(f"/api/v1/images/{image_id}/").status_code == 200


@pytest.fixture
def releases(galaxy):
    public = Release.objects.create(slug="cf4-v1", name="CF4 candidates", version="1", is_public=True, columns=["pgc", "inc"])
    private = Release.objects.create(slug="internal-v1", name="Internal", version="1", is_public=False, columns=["pgc", "inc"])
    for rel in (public, private):
        ReleaseRow.objects.create(release=rel, galaxy=galaxy, ra=galaxy.ra, dec=galaxy.dec, healpix=galaxy.healpix, values={"inc": 70})
    return publish_release(public), publish_release(private)  # drafts are for curators only


def test_private_releases_for_members_only(anon_client, volunteer_client, member_client, releases):
    for client in (anon_client, volunteer_client):
        slugs = [r["slug"] for r in client.get("/api/v1/releases/").json()["results"]]
        assert slugs == ["cf4-v1"]
        assert client.get("/api/v1/releases/internal-v1/").status_code == 404
        assert client.get("/api/v1/releases/internal-v1/rows/").status_code == 404
        assert client.get("/api/v1/releases/cf4-v1/rows/").json()["results"][0]["values"] == {"inc": 70}
    slugs = sorted(r["slug"] for r in member_client.get("/api/v1/releases/").json()["results"])
    assert slugs == ["cf4-v1", "internal-v1"]
    rows = member_client.get("/api/v1/releases/internal-v1/rows/").json()["results"]
    assert rows[0]["pgc"] == releases[1].rows.get().galaxy_id


def test_jobs_own_or_all_for_curators(anon_client, volunteer_client, curator_client, volunteer, member):
    mine = create_job("import_catalog", {"path": "x"}, user=volunteer, total=10)
    theirs = create_job("fit", {}, user=member)
    assert anon_client.get("/api/v1/jobs/").status_code in (401, 403)
    listed = volunteer_client.get("/api/v1/jobs/").json()["results"]
    assert [j["id"] for j in listed] == [mine.pk]
    assert listed[0]["total"] == 10 and listed[0]["status"] == "queued" and listed[0]["owner"] == volunteer.username
    assert volunteer_client.get(f"/api/v1/jobs/{theirs.pk}/").status_code == 404
    assert sorted(j["id"] for j in curator_client.get("/api/v1/jobs/").json()["results"]) == sorted([mine.pk, theirs.pk])
    r = volunteer_client.get("/api/v1/jobs/?status=bogus")
    assert r.status_code == 400 and r.json()["field"] == "status"


def test_owner_cancels_own_job_not_others(volunteer_client, volunteer, member):
    mine = create_job("fit", {}, user=volunteer)
    theirs = create_job("fit", {}, user=member)
    r = volunteer_client.post(f"/api/v1/jobs/{mine.pk}/cancel/")
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "cancelled" and r.json()["cancel_requested"] is True
    again = volunteer_client.post(f"/api/v1/jobs/{mine.pk}/cancel/")
    assert again.status_code == 409 and again.json()["message"]
    assert volunteer_client.post(f"/api/v1/jobs/{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "queued"


def test_upload_over_the_size_limit_is_refused_with_413(member_client, galaxy, settings):
    settings.GALCAT_UPLOAD_MAX_BYTES = 100
    r = _upload(member_client, galaxy.pgc)
    assert r.status_code == 413 and r.json()["field"] == "file"
    assert not Image.objects.exists()


def test_out_of_range_numbers_are_400_not_500(volunteer_client, member_client, galaxy):
    r = volunteer_client.post("/api/v1/votes/", {"pgc": galaxy.pgc, "inc": 60, "std1": 10**12}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "std1"
    r = volunteer_client.post("/api/v1/votes/", {"pgc": 10**15, "inc": 60}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "pgc"
    assert _upload(member_client, 10**15).json()["field"] == "pgc"
    assert not InclinationVote.objects.exists()
