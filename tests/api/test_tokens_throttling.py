"""Tokens (one per user, issued and revoked from the API and the profile forms) and throttling."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import GalaxyFactory

pytestmark = pytest.mark.django_db


def test_token_from_password_then_revoke_takes_effect_at_once(volunteer):
    client = APIClient()
    r = client.post("/api/v1/token/", {"username": volunteer.username, "password": "pw-for-tests-123"}, format="json")
    assert r.status_code == 201, r.content
    key = r.json()["key"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/votes/").status_code == 200
    assert client.get("/api/v1/token/").json()["key"] == key
    assert client.delete("/api/v1/token/").status_code == 204
    r = client.get("/api/v1/votes/")
    assert r.status_code == 401 and r.json()["message"]
    assert not Token.objects.filter(user=volunteer).exists()


def test_one_token_per_user_new_one_replaces_old(volunteer):
    client = APIClient()
    client.force_login(volunteer)
    first = client.post("/api/v1/token/").json()["key"]
    second = client.post("/api/v1/token/").json()["key"]
    assert first != second and Token.objects.filter(user=volunteer).count() == 1
    old = APIClient()
    old.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert old.get("/api/v1/votes/").status_code == 401


def test_wrong_password_names_the_field(volunteer):
    r = APIClient().post("/api/v1/token/", {"username": volunteer.username, "password": "nope"}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "password"
    assert not Token.objects.exists()


def test_profile_forms_issue_and_revoke(client, volunteer):
    client.force_login(volunteer)
    r = client.post("/api/token/issue/", {"next": "/accounts/profile/"})
    assert r.status_code == 302 and r["Location"] == "/accounts/profile/"
    key = Token.objects.get(user=volunteer).key
    request = RequestFactory().get("/accounts/profile/")
    request.user = volunteer
    html = render_to_string("accounts/_token.html", {"request": request}, request=request)
    assert key in html and "Revoke token" in html
    r = client.post("/api/token/revoke/", {"next": "https://evil.example/"})
    assert r.status_code == 302 and r["Location"] == "/"
    assert not Token.objects.filter(user=volunteer).exists()
    volunteer.refresh_from_db()
    request.user = volunteer
    html = render_to_string("accounts/_token.html", {"request": request}, request=request)
    assert key not in html and "Create token" in html
    assert client.get("/api/token/revoke/").status_code == 405


def test_anonymous_throttle_per_ip_answers_429_with_retry_after(settings, db):
    settings.GALCAT_API_THROTTLE_ANON = "3/min"
    GalaxyFactory(ra=1.0, dec=1.0)
    client = APIClient()
    codes = [client.get("/api/v1/galaxies/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = client.get("/api/v1/galaxies/")
    assert r.status_code == 429 and 1 <= int(r["Retry-After"]) <= 60
    assert r["Content-Type"].startswith("application/json") and r.json()["status"] == 429
    other_ip = APIClient(REMOTE_ADDR="10.1.2.3")
    assert other_ip.get("/api/v1/galaxies/").status_code == 200


def test_user_throttle_counts_per_user(settings, volunteer_client, member_client):
    settings.GALCAT_API_THROTTLE_ANON = "1/min"
    settings.GALCAT_API_THROTTLE_USER = "2/min"
    assert [volunteer_client.get("/api/v1/votes/").status_code for _ in range(3)] == [200, 200, 429]
    assert member_client.get("/api/v1/votes/").status_code == 200  # another user, own count


def test_profile_page_token_section_round_trip(client, volunteer):
    """On the real profile page: create a token, see it, revoke it, all through the page's forms."""
    client.force_login(volunteer)
    page = client.get("/accounts/profile/")
    assert page.status_code == 200 and b'id="api-token"' in page.content and b"Create token" in page.content
    r = client.post("/api/token/issue/", {"next": "/accounts/profile/#api-token"}, follow=True)
    key = Token.objects.get(user=volunteer).key
    assert key in r.content.decode()
    r = client.post("/api/token/revoke/", {"next": "/accounts/profile/#api-token"}, follow=True)
    assert key not in r.content.decode() and not Token.objects.filter(user=volunteer).exists()


def test_forged_forwarded_for_does_not_escape_the_anonymous_limit(settings, db):
    settings.GALCAT_API_THROTTLE_ANON = "2/min"
    client = APIClient()
    codes = [client.get("/api/v1/galaxies/", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(3)]
    assert codes == [200, 200, 429]
