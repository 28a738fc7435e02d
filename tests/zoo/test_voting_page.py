"""The voting page /zoo/: target priority, standards, the form round trip, leaderboard, votes panel."""

from __future__ import annotations

import json
import re

import pytest
from django.core import signing

from tests.factories import GalaxyFactory, UserFactory, make_image
from zoo.models import CalibrationGalaxy, ConsensusInclination, InclinationVote, Standard
from zoo.services import TICKET_SALT, leaderboard, make_ticket, next_target, read_ticket, standards_payload
from zoo.standards import ensure_rendered_standards, read_reference_table, seed_references, standards_by_inc, uses_rendered_standards

pytestmark = pytest.mark.django_db


@pytest.fixture
def standards():
    assert ensure_rendered_standards(variants=1, size=32) == 46
    return Standard.objects.all()


def imaged_galaxy(**kw):
    g = GalaxyFactory(**kw)
    make_image(g)
    return g


def _votes(galaxy, n):
    for _ in range(n):
        InclinationVote.objects.create(user=UserFactory(), galaxy=galaxy, inc=60.0, source="import")


# ---------------------------------------------------------------------------------------------
# Standards
# ---------------------------------------------------------------------------------------------
def test_rendered_standards_cover_45_to_90(standards):
    by_inc = standards_by_inc()
    assert sorted(by_inc) == list(range(45, 91))
    s = by_inc[60][0]
    assert s.rendered and s.galaxy_id is None and s.url.endswith(".png")
    assert uses_rendered_standards()
    assert ensure_rendered_standards(variants=1, size=32) == 0  # idempotent
    payload = standards_payload()
    assert payload["rendered"] and payload["step_a"] == [45, 50, 55, 60, 65, 70, 75, 80, 85] and payload["step_b_size"] == 9


def test_rendered_disks_get_thinner_with_inclination():
    import io

    import numpy as np
    from PIL import Image as PILImage

    from zoo.standards import render_standard_png

    def extent(inc):
        grey = np.asarray(PILImage.open(io.BytesIO(render_standard_png(inc, size=128))))
        assert grey.shape == (128, 128) and grey[0, 0] > 200  # light sky, dark galaxy
        dark = grey < 128
        return int(dark.any(axis=1).sum()), int(dark.any(axis=0).sum())

    (h45, w45), (h70, w70), (h89, w89) = extent(45), extent(70), extent(89)
    assert h89 < h70 < h45  # thinner as it tilts
    assert h89 < 0.4 * w89  # edge-on: a thin streak along the horizontal major axis
    assert h89 / w89 < h70 / w70 < h45 / w45  # the apparent axis ratio falls with inclination


def test_seed_references_from_shared_files(shared_data):
    out = seed_references(shared_data)
    assert out["standards"] == 626 and out["calibration"] == 696
    assert CalibrationGalaxy.objects.filter(flag="A").count() == 460
    assert seed_references(shared_data)["standards"] == 626  # idempotent
    assert Standard.objects.count() == 626


def test_reference_table_errors(tmp_path):
    from zoo.standards import ReferenceError

    bad = tmp_path / "t.csv"
    bad.write_text("pgc,inc\n1,50\n")
    with pytest.raises(ReferenceError, match="missing column"):
        read_reference_table(bad)
    bad.write_text("pgc,inc,flag\n1,95,A\n")
    with pytest.raises(ReferenceError, match="within"):
        read_reference_table(bad)
    with pytest.raises(ReferenceError, match="no such file"):
        read_reference_table(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------
# Next target
# ---------------------------------------------------------------------------------------------
def test_next_target_priority(volunteer, settings):
    settings.GALCAT_ZOO_CALIBRATION_RATE = 0
    GalaxyFactory()  # no image: never a target
    many = imaged_galaxy()
    few = imaged_galaxy()
    _votes(many, 3)
    _votes(few, 1)
    assert next_target(volunteer) == few
    InclinationVote.objects.create(user=volunteer, galaxy=few, inc=50.0)
    assert next_target(volunteer) == many
    InclinationVote.objects.create(user=volunteer, galaxy=many, inc=50.0)
    assert next_target(volunteer) is None


def test_calibration_galaxies_are_interleaved(volunteer, settings):
    settings.GALCAT_ZOO_CALIBRATION_RATE = 0.5
    target = imaged_galaxy()
    cal = imaged_galaxy()
    _votes(cal, 5)
    CalibrationGalaxy.objects.create(galaxy=cal, inc=70.0, flag="A")
    assert next_target(volunteer) == target  # 0 votes so far: an ordinary target
    InclinationVote.objects.create(user=volunteer, galaxy=GalaxyFactory(), inc=50.0)
    assert next_target(volunteer) == cal  # every second target is a calibration galaxy


def uncertainty_for_tests(pgcs):
    return {p: (10.0 if p % 2 else 1.0) for p in pgcs}


def test_machine_uncertainty_orders_targets(volunteer, settings):
    settings.GALCAT_ZOO_CALIBRATION_RATE = 0
    settings.GALCAT_ZOO_UNCERTAINTY = "tests.zoo.test_voting_page.uncertainty_for_tests"
    even = imaged_galaxy(pgc=800002)
    odd = imaged_galaxy(pgc=800003)
    assert next_target(volunteer) == odd
    _votes(odd, 3)  # enough votes now: the unsure but well-voted galaxy goes behind
    assert next_target(volunteer) == even


def test_ticket_round_trip_and_tampering():
    ticket = make_ticket(4242)
    token, t = read_ticket(ticket, 4242)
    assert len(token) >= 16 and t.tzinfo is not None
    from zoo.voting import InvalidVote

    with pytest.raises(InvalidVote, match="another galaxy"):
        read_ticket(ticket, 4243)
    with pytest.raises(InvalidVote, match="damaged"):
        read_ticket(ticket[:-2] + "xx", 4242)
    forged = signing.dumps({"pgc": 4242, "token": "x" * 20, "t": "2020-01-01T00:00:00+00:00"}, salt="other")
    with pytest.raises(InvalidVote):
        read_ticket(forged, 4242)
    assert signing.loads(ticket, salt=TICKET_SALT)["pgc"] == 4242


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------
def test_vote_page_needs_login_and_a_volunteer(client):
    r = client.get("/zoo/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    client.force_login(UserFactory())
    r = client.get("/zoo/")
    assert r.status_code == 403 and "not in the volunteer group" in r.content.decode()


def test_vote_page_round_trip(client, volunteer, standards, settings):
    settings.GALCAT_ZOO_CALIBRATION_RATE = 0
    g = imaged_galaxy()
    client.force_login(volunteer)
    r = client.get("/zoo/")
    html = r.content.decode()
    assert r.status_code == 200 and f"PGC {g.pgc}" in html
    assert "rendered by this project" in html  # the page says its standards are rendered
    data = json.loads(re.search(r'<script id="zoo-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert sorted(int(k) for k in data["standards"]) == list(range(45, 91))
    ticket = re.search(r'name="ticket" value="([^"]+)"', html).group(1)
    form = {"pgc": g.pgc, "ticket": ticket, "inc": "62.5", "not_sure": "1", "note": "faint", "face_on": "0"}
    r = client.post("/zoo/vote/", form, follow=True)
    assert "recorded: 62.5 deg" in r.content.decode()
    vote = InclinationVote.objects.get(user=volunteer)
    assert vote.inc == 62.5 and vote.not_sure and vote.note == "faint" and vote.checkout_time is not None and vote.client_token
    # The same form again is refused and stores nothing.
    r = client.post("/zoo/vote/", form, follow=True)
    assert "already submitted" in r.content.decode()
    assert InclinationVote.objects.filter(user=volunteer).count() == 1
    # Nothing left to vote on.
    assert "No galaxy is waiting" in client.get("/zoo/").content.decode()


def test_face_on_vote_from_page(client, volunteer, standards):
    g = imaged_galaxy()
    client.force_login(volunteer)
    form = {"pgc": g.pgc, "ticket": make_ticket(g.pgc), "inc": "", "face_on": "1"}
    client.post("/zoo/vote/", form)
    vote = InclinationVote.objects.get(user=volunteer)
    assert vote.face_on and vote.inc is None


def test_bad_form_is_refused(client, volunteer, standards):
    g = imaged_galaxy()
    client.force_login(volunteer)
    r = client.post("/zoo/vote/", {"pgc": g.pgc, "ticket": make_ticket(g.pgc), "inc": "95"}, follow=True)
    assert "outside [0, 90]" in r.content.decode()
    r = client.post("/zoo/vote/", {"pgc": g.pgc, "ticket": make_ticket(g.pgc + 1), "inc": "60"}, follow=True)
    assert "another galaxy" in r.content.decode()
    r = client.post("/zoo/vote/", {"pgc": "x", "inc": "60"}, follow=True)
    assert "names no galaxy" in r.content.decode()
    assert not InclinationVote.objects.exists()


def test_curator_opens_revote_from_galaxy_page(client, volunteer, curator):
    g = imaged_galaxy()
    InclinationVote.objects.create(user=volunteer, galaxy=g, inc=50.0)
    client.force_login(volunteer)
    r = client.post(f"/zoo/revote/{g.pgc}/", follow=True)
    assert "only curators" in r.content.decode()
    client.force_login(curator)
    client.post(f"/zoo/revote/{g.pgc}/", {"reason": "new image"})
    assert next_target(volunteer) == g


@pytest.mark.parametrize(
    "unsafe", ["https://evil.example/phish", "javascript:alert(1)", "//evil.example/x", "/\\evil.example/x", "http://[x", "not-a-view-name"]
)
def test_revote_ignores_an_unsafe_next(client, curator, unsafe):
    g = GalaxyFactory()
    client.force_login(curator)
    r = client.post(f"/zoo/revote/{g.pgc}/", {"next": unsafe})
    assert r.status_code == 302
    assert r["Location"] == f"/galaxies/{g.pgc}/" and "evil.example" not in r["Location"]


def test_revote_follows_a_safe_next(client, curator):
    g = GalaxyFactory()
    client.force_login(curator)
    r = client.post(f"/zoo/revote/{g.pgc}/", {"next": "/galaxies/"})
    assert r.status_code == 302 and r["Location"] == "/galaxies/"


def test_leaderboard(client, volunteer):
    g = GalaxyFactory()
    InclinationVote.objects.create(user=volunteer, galaxy=g, inc=50.0)
    InclinationVote.objects.create(user=UserFactory(username="zed"), galaxy=g, inc=None, face_on=True)
    InclinationVote.objects.create(user=volunteer, galaxy=GalaxyFactory(), inc=55.0)
    rows = leaderboard()
    assert [(r["name"], r["votes"], r["measured"]) for r in rows] == [("vera", 2, 2), ("zed", 1, 0)]
    html = client.get("/zoo/leaderboard/").content.decode()
    assert "vera" in html and "plotly.min.js" in html and 'id="leaderboard-chart"' in html


def test_votes_panel_on_galaxy_page(client, volunteer):
    g = GalaxyFactory()
    for inc in (60.0, 62.0, 64.0):
        InclinationVote.objects.create(user=UserFactory(), galaxy=g, inc=inc)
    ConsensusInclination.objects.create(galaxy=g, inc=62.0, inc_e=1.2, inc_n=3, flag="A", method="joint", version="1.0")
    r = client.get(f"/galaxies/{g.pgc}/")
    html = r.content.decode()
    assert r.status_code == 200 and 'id="votes-panel"' in html
    assert "62.0 ± 1.2°" in html and 'id="votes-hist"' in html
    data = json.loads(re.search(r'<script id="votes-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert sorted(data["incs"]) == [60.0, 62.0, 64.0] and data["inc"] == 62.0


def test_curator_override_from_galaxy_page(client, volunteer, curator):
    from zoo.models import ConsensusOverride

    g = GalaxyFactory()
    for inc in (60.0, 62.0, 64.0):
        InclinationVote.objects.create(user=UserFactory(), galaxy=g, inc=inc)
    client.force_login(volunteer)
    assert "Override consensus" not in client.get(f"/galaxies/{g.pgc}/").content.decode()
    r = client.post(f"/zoo/override/{g.pgc}/", {"flag": "J"}, follow=True)
    assert "only curators" in r.content.decode() and not ConsensusOverride.objects.exists()
    client.force_login(curator)
    assert "Override consensus" in client.get(f"/galaxies/{g.pgc}/").content.decode()
    r = client.post(f"/zoo/override/{g.pgc}/", {"flag": "A", "inc": "66", "inc_e": "1"}, follow=True)
    assert "curator value set (66.0 deg)" in r.content.decode()
    assert ConsensusOverride.objects.get().inc == 66.0


def test_cnn_doubt_puts_galaxies_first(volunteer, settings):
    """With the default hook, the galaxy the CNN ensemble is least sure about comes first."""
    from django.apps import apps

    if not apps.is_installed("ml"):
        pytest.skip("the ml app is not installed")
    from zoo.services import prediction_uncertainty

    ModelVersion = apps.get_model("ml", "ModelVersion")
    Prediction = apps.get_model("ml", "Prediction")
    settings.GALCAT_ZOO_CALIBRATION_RATE = 0
    settings.GALCAT_ZOO_UNCERTAINTY = "zoo.services.prediction_uncertainty"
    sure, unsure, far = imaged_galaxy(pgc=700001), imaged_galaxy(pgc=700002), imaged_galaxy(pgc=700003)
    mv = ModelVersion.objects.create(name="test", version="1", architecture="vgg", active=True)
    for g, spread, ar in ((sure, 1.0, 70.0), (unsure, 6.0, 70.0), (far, 1.0, 50.0)):
        Prediction.objects.create(
            image=g.images.first(), galaxy=g, model_version=mv, value=70.0, uncertainty=spread, reject_likelihood=0.1, axis_ratio_inc=ar
        )
    assert prediction_uncertainty([sure.pgc, unsure.pgc, far.pgc]) == {sure.pgc: 1.0, unsure.pgc: 6.0, far.pgc: 11.0}
    assert next_target(volunteer) == far
    InclinationVote.objects.create(user=volunteer, galaxy=far, inc=50.0)
    assert next_target(volunteer) == unsure
