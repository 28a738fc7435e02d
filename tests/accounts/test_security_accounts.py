"""Issue 18, finding 8: a new password revokes API tokens and other sessions; failed logins
are throttled per account and per address, on the login page and the token endpoint."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from accounts.services import create_volunteer
from catalog.api.tokens import issue_token

pytestmark = pytest.mark.django_db
PASSWORD = "Spiral-arms-42"
NEW = "Barred-spiral-77"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _token_works(key: str) -> bool:
    return Client().get("/api/v1/token/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200


def test_password_reset_revokes_the_api_token_and_sessions():
    user = create_volunteer("di", "di@example.org", PASSWORD)
    key = issue_token(user).key
    other = Client()
    other.force_login(user)
    assert _token_works(key) and other.get("/accounts/profile/").status_code == 200
    c = Client()
    c.post("/accounts/password-reset/", {"email": "di@example.org"})
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form_url = c.get(link)["Location"]
    assert c.post(form_url, {"new_password1": NEW, "new_password2": NEW}).status_code == 302
    assert not _token_works(key)
    assert other.get("/accounts/profile/").status_code == 302  # signed out


def test_password_change_revokes_the_token():
    user = create_volunteer("ed", "ed@example.org", PASSWORD)
    key = issue_token(user).key
    user.set_password(NEW)
    user.save()
    assert not _token_works(key)
    user.save()  # other saves (last_login, profile) leave a new token alone
    assert _token_works(issue_token(user).key)


def test_failed_logins_throttled_per_account(settings):
    settings.GALCAT_LOGIN_FAILURES_PER_ACCOUNT = "5/300"
    create_volunteer("fay", "fay@example.org", PASSWORD)
    for _ in range(5):
        r = Client().post("/accounts/login/", {"username": "fay", "password": "wrong"}, REMOTE_ADDR="10.0.0.1")
        assert r.status_code == 200 and "Too many" not in r.content.decode()
    # From another address and with the right password: still paused, with a clear message.
    r = Client().post("/accounts/login/", {"username": "fay", "password": PASSWORD}, REMOTE_ADDR="10.0.0.2")
    assert r.status_code == 200 and "Too many failed sign-ins; try again in" in r.content.decode()
    r = Client().post("/api/v1/token/", {"username": "fay", "password": PASSWORD}, content_type="application/json")
    assert r.status_code == 429 and "Too many failed sign-ins" in r.json()["message"]
    cache.clear()
    assert Client().post("/accounts/login/", {"username": "fay", "password": PASSWORD}).status_code == 302


def test_failed_logins_throttled_per_address(settings):
    settings.GALCAT_LOGIN_FAILURES_PER_IP = "3/300"
    create_volunteer("gil", "gil@example.org", PASSWORD)
    for name in ("a1", "a2", "a3"):
        Client().post("/api/v1/token/", {"username": name, "password": "x"}, content_type="application/json", REMOTE_ADDR="10.0.0.9")
    r = Client().post("/accounts/login/", {"username": "gil", "password": PASSWORD}, REMOTE_ADDR="10.0.0.9")
    assert "Too many failed sign-ins" in r.content.decode()
    assert Client().post("/accounts/login/", {"username": "gil", "password": PASSWORD}, REMOTE_ADDR="10.0.0.8").status_code == 302


def test_password_reset_does_the_same_work_for_unknown_addresses():
    create_volunteer("hal", "hal@example.org", PASSWORD)
    known = Client().post("/accounts/password-reset/", {"email": "hal@example.org"})
    unknown = Client().post("/accounts/password-reset/", {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 302 and known["Location"] == unknown["Location"]
    for r in (known, unknown):
        assert "accounts/password_reset_email.txt" in [t.name for t in r.templates]
    assert len(mail.outbox) == 1
