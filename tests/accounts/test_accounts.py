"""Accounts: sign-up, login, logout, password reset by e-mail, the profile page."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from accounts.services import calibration_points, create_volunteer, vote_statistics
from core.roles import VOLUNTEER, is_volunteer, role_of
from tests.factories import GalaxyFactory, UserFactory
from zoo.models import CalibrationGalaxy, ConsensusInclination, InclinationVote, Volunteer, VolunteerCalibration

pytestmark = pytest.mark.django_db
PASSWORD = "Spiral-arms-42"


def test_signup_makes_a_volunteer_and_logs_in(client):
    r = client.post("/accounts/signup/", {"username": "ana", "email": "ana@example.org", "password1": PASSWORD, "password2": PASSWORD})
    assert r.status_code == 302 and r["Location"] == "/zoo/"
    user = get_user_model().objects.get(username="ana")
    assert is_volunteer(user) and role_of(user) == VOLUNTEER
    assert Volunteer.objects.get(user=user).pseudonym == "ana"
    assert client.get("/accounts/profile/").status_code == 200


@pytest.mark.parametrize(
    "form, error",
    [
        ({"username": "bo", "email": "not-an-email", "password1": PASSWORD, "password2": PASSWORD}, "valid email"),
        ({"username": "bo", "email": "bo@example.org", "password1": PASSWORD, "password2": "other-Pass-9"}, "didn"),
        ({"username": "bo", "email": "bo@example.org", "password1": "123", "password2": "123"}, "too short"),
        ({"username": "taken", "email": "bo@example.org", "password1": PASSWORD, "password2": PASSWORD}, "already exists"),
        ({"username": "bo", "email": "taken@example.org", "password1": PASSWORD, "password2": PASSWORD}, "reset its password"),
    ],
)
def test_signup_errors_write_nothing(client, form, error):
    create_volunteer("taken", "taken@example.org", PASSWORD)
    r = client.post("/accounts/signup/", form)
    assert r.status_code == 200 and error in r.content.decode()
    assert get_user_model().objects.count() == 1


def test_pseudonym_of_an_imported_volunteer_is_taken(client):
    other = UserFactory(username="imported01")
    Volunteer.objects.create(user=other, pseudonym="Volunteer21", imported=True)
    r = client.post(
        "/accounts/signup/", {"username": "volunteer21", "email": "v@example.org", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert "name is taken" in r.content.decode()


def test_login_and_logout(client):
    create_volunteer("cy", "cy@example.org", PASSWORD)
    r = client.post("/accounts/login/", {"username": "cy", "password": "wrong"})
    assert r.status_code == 200 and "correct username and password" in r.content.decode()
    r = client.post("/accounts/login/", {"username": "cy", "password": PASSWORD, "next": "/accounts/profile/"})
    assert r.status_code == 302 and r["Location"] == "/accounts/profile/"
    assert "cy" in client.get("/accounts/profile/").content.decode()
    r = client.post("/accounts/logout/")
    assert r.status_code == 302 and r["Location"] == "/"
    assert client.get("/accounts/logout/").status_code == 405  # logging out takes a POST
    assert client.get("/accounts/profile/").status_code == 302


def test_password_reset_by_email(client):
    create_volunteer("di", "di@example.org", PASSWORD)
    r = client.post("/accounts/password-reset/", {"email": "di@example.org"})
    assert r.status_code == 302 and r["Location"] == "/accounts/password-reset/sent/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["di@example.org"]
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    r = client.get(link)  # redirects to the set-password form
    assert r.status_code == 302
    form_url = r["Location"]
    new = "Barred-spiral-77"
    r = client.post(form_url, {"new_password1": new, "new_password2": new})
    assert r.status_code == 302 and r["Location"] == "/accounts/reset/done/"
    assert client.login(username="di", password=new)
    # Unknown addresses get the same answer and no mail.
    client.post("/accounts/password-reset/", {"email": "nobody@example.org"})
    assert len(mail.outbox) == 1


def test_profile_shows_own_votes_statistics_calibration_and_token_section(client):
    me = create_volunteer("eve", "eve@example.org", PASSWORD)
    other = create_volunteer("fay", "fay@example.org", PASSWORD)
    gals = [GalaxyFactory() for _ in range(4)]
    for g, inc in zip(gals[:3], (60.0, 70.0, 80.0)):
        InclinationVote.objects.create(user=me, galaxy=g, inc=inc)
        ConsensusInclination.objects.create(galaxy=g, inc=inc - 2, inc_e=1, inc_n=3, flag="A", method="joint", version="1.0")
    InclinationVote.objects.create(user=me, galaxy=gals[3], inc=None, face_on=True)
    InclinationVote.objects.create(user=other, galaxy=gals[3], inc=55.5)
    CalibrationGalaxy.objects.create(galaxy=gals[2], inc=81.0, flag="A")
    stats = vote_statistics(me)
    assert stats == {"total": 4, "measured": 3, "face_on": 1, "rejected": 0, "galaxies": 4}
    calib = calibration_points(me)
    assert calib["consensus"]["y"] == [60.0, 70.0] and calib["known"]["x"] == [81.0]
    assert calib["n"] == 3 and calib["mean_diff"] == pytest.approx((2 + 2 - 1) / 3, abs=0.01)
    assert calib["fit"]["a"] == pytest.approx(0.871, abs=0.01)
    client.force_login(me)
    assert 'id="method-calibration"' not in client.get("/accounts/profile/").content.decode()
    VolunteerCalibration.objects.create(user=me, a=1.04, b=-2.5, sigma=3.21, n_votes=3, method="joint", version="1.0")
    html = client.get("/accounts/profile/").content.decode()
    assert "= 1.040 <i>i</i> − 2.50°" in html and "scatter by 3.2°" in html
    assert html.count('class="vote-row"') == 4 and f"PGC {gals[0].pk}" in html
    assert "55.5" not in html  # another volunteer's vote
    assert 'id="calibration-plot"' in html and "plotly.min.js" in html
    assert 'id="api-token"' in html  # the API app's token section is included
