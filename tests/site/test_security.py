"""Security review of issue 18: private media, one release rule, and what must keep holding.

Each test names the finding it covers; every one failed on the code before the fix.
"""

from __future__ import annotations

import pytest
from django.test import Client

from catalog.api.uploads import store_uploaded_image
from catalog.releases import make_release
from tests.factories import GalaxyFactory, make_image, png_bytes


def _client(user=None) -> Client:
    c = Client()
    if user is not None:
        c.force_login(user)
    return c


@pytest.fixture
def private_image(member):
    galaxy = GalaxyFactory(ra=12.0, dec=3.0)
    image, _ = store_uploaded_image(png_bytes(64, 75.0), "secret.png", pgc=galaxy.pgc, band="g", user=member, is_public=False)
    return image


# -- finding 1: private images -------------------------------------------------------------------
def test_private_image_hidden_from_anonymous_page_and_media(private_image, member):
    galaxy_url = f"/galaxies/{private_image.galaxy_id}/"
    media_url = private_image.file.url
    anon = _client()
    page = anon.get(galaxy_url)
    assert page.status_code == 200 and media_url not in page.content.decode()
    assert anon.get(media_url).status_code == 404
    assert anon.get(f"/api/v1/images/{private_image.pk}/").status_code == 404
    assert media_url not in anon.get(f"/api/v1/galaxies/{private_image.galaxy_id}/").content.decode()
    # Members see it everywhere, and the answer is not cached for others.
    mc = _client(member)
    assert media_url in mc.get(galaxy_url).content.decode()
    r = mc.get(media_url)
    assert r.status_code == 200 and r["Content-Type"] == "image/png" and "private" in r["Cache-Control"]
    assert b"".join(r.streaming_content).startswith(b"\x89PNG")


def test_public_image_media_served_and_unknown_paths_404(db, volunteer):
    image = make_image(GalaxyFactory(), "g")
    r = _client().get(image.file.url)
    assert r.status_code == 200 and r["X-Content-Type-Options"] == "nosniff"
    # A file on disk that no row stores, or a path out of MEDIA_ROOT, answers like a missing one.
    for path in ("/media/images/00/none.png", "/media/../config/settings.py", "/media/%2e%2e/config/settings.py", "/media/images/%00"):
        assert _client(volunteer).get(path).status_code in (400, 404), path


def test_media_accel_redirect_hook(private_image, member, settings):
    settings.GALCAT_MEDIA_ACCEL_REDIRECT = "/protected-media/"
    r = _client(member).get(private_image.file.url)
    assert r.status_code == 200 and r["X-Accel-Redirect"] == "/protected-media/" + private_image.file.name
    assert _client().get(private_image.file.url).status_code == 404  # the check comes first


# -- finding 2: drafts -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/api/v1/releases/draft-pub/", "/api/v1/releases/draft-pub/rows/", "/api/v1/releases/draft-pub/rows/?format=csv"]
)
def test_draft_release_not_public_through_api(edd_galaxies, member, path):
    make_release("Draft set", "0.1", query={"inc_min": "80"}, slug="draft-pub")
    assert _client().get(path).status_code == 404
    assert _client(member).get(path).status_code == 404  # drafts are for curators
    assert "draft-pub" not in _client().get("/api/v1/releases/").content.decode()
    assert _client().get("/releases/draft-pub/").status_code == 404
    assert _client().get("/scs/draft-pub/?RA=0&DEC=0&SR=1").status_code in (400, 404)


# -- finding 5: every bad request a 4xx -------------------------------------------------------------
def _cursor(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "path",
    [
        "/api/objname/%00",
        "/api/objname/NGC%00224",
        "/api/v1/galaxies/?cursor=eyJ2IjpudWxsLCJrIjpudWxsfQ",
        "/api/v1/galaxies/?ordering=pgc&cursor=" + _cursor('{"v":1e400,"k":1}'),
        "/api/v1/galaxies/?ordering=vhel&cursor=" + _cursor('{"v":1e400,"k":1}'),
        "/api/v1/galaxies/?ordering=vhel&cursor=" + _cursor('{"v":1,"k":1e400}'),
        "/api/v1/galaxies/?ordering=vhel&cursor=" + _cursor('{"v":"NaN","k":1}'),
        "/api/v1/galaxies/?ordering=pgc&cursor=" + _cursor('{"v":1,"k":99999999999999999999999}'),
        "/api/v1/galaxies/?q=%00",
        "/api/v1/galaxies/?vhel_min=1e400",
    ],
)
def test_bad_requests_answer_4xx_json(db, path):
    GalaxyFactory.create_batch(3)
    r = _client().get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.content[:300])
    assert r["Content-Type"].startswith("application/json")


# -- findings 5 and 6: redirects ---------------------------------------------------------------------
@pytest.mark.parametrize("target", ["javascript:alert(1)", "https://evil.example/phish", "//evil.example/x", "/\\evil.example"])
def test_revote_next_never_leaves_the_site(volunteer, target):
    galaxy = GalaxyFactory()
    r = _client(volunteer).post(f"/zoo/revote/{galaxy.pgc}/", {"next": target})
    assert r.status_code == 302 and r["Location"] == f"/galaxies/{galaxy.pgc}/"


# -- finding 10: unknown filters, booleans ---------------------------------------------------------
def test_unknown_galaxy_filter_answers_400_naming_it(db):
    GalaxyFactory.create_batch(2)
    r = _client().get("/api/v1/galaxies/?pgc_minimum=5")
    assert r.status_code == 400 and r.json()["field"] == "pgc_minimum" and "unknown parameter" in r.json()["message"]
    ok = _client().get("/api/v1/galaxies/?vhel_min=0&ordering=-pgc&page_size=5&fields=pgc,ra&format=json")
    assert ok.status_code == 200, ok.content[:300]


def test_vote_inclination_refuses_booleans(volunteer):
    from tests.api.conftest import token_client

    galaxy = GalaxyFactory()
    r = token_client(volunteer).post("/api/v1/votes/", {"pgc": galaxy.pgc, "inc": True}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "inc"
    r = token_client(volunteer).post("/api/v1/votes/", {"pgc": True, "inc": 60}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "pgc"


def test_panels_leave_out_results_of_private_images(private_image, member):
    """The fitting panel lists only fits of images the viewer may see (finding 1, every path)."""
    from fitting.engine.version import ENGINE_VERSION
    from fitting.models import FitResult

    fit = FitResult.objects.create(image=private_image, model_kind="sersic", engine_version=ENGINE_VERSION)
    galaxy_url = f"/galaxies/{private_image.galaxy_id}/"
    assert f'id="fit-{fit.pk}"' not in _client().get(galaxy_url).content.decode()
    assert f'id="fit-{fit.pk}"' in _client(member).get(galaxy_url).content.decode()
