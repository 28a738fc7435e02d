"""Short-lived copies of public pages for anonymous GETs (core.middleware.PublicCacheMiddleware)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from catalog.models import Galaxy

pytestmark = pytest.mark.django_db


@pytest.fixture
def cached(settings):
    settings.GALCAT_PUBLIC_CACHE_SECONDS = 60
    return settings


def _add(pgc: int) -> None:
    Galaxy.objects.create(pgc=pgc, ra=10.0 + pgc / 1e4, dec=20.0)


def _pgcs(response) -> set[int]:
    return {row["pgc"] for row in response.json()["results"]}


def test_anonymous_list_is_served_from_the_copy_until_it_expires(cached):
    _add(1001)
    client = Client()
    url = reverse("galaxy-list")
    first = client.get(url)
    _add(1002)
    second = client.get(url)
    assert first.status_code == second.status_code == 200
    assert "Age" not in first and "Age" in second
    assert _pgcs(second) == {1001}
    cached.GALCAT_PUBLIC_CACHE_SECONDS = 0
    assert _pgcs(client.get(url)) == {1001, 1002}


def test_token_clients_and_signed_in_users_get_fresh_answers(cached, volunteer):
    _add(1001)
    url = reverse("galaxy-list")
    anonymous = Client()
    anonymous.get(url)
    _add(1002)
    token = Token.objects.create(user=volunteer).key
    by_token = Client(HTTP_AUTHORIZATION=f"Token {token}").get(url)
    signed_in = Client()
    signed_in.force_login(volunteer)
    by_session = signed_in.get(url)
    for response in (by_token, by_session):
        assert "Age" not in response
        assert _pgcs(response) == {1001, 1002}


def test_keys_differ_by_query_and_accept(cached):
    _add(1001)
    client = Client()
    url = reverse("galaxy-list")
    client.get(url)
    assert "Age" not in client.get(url, {"page_size": 5})
    assert client.get(url, HTTP_ACCEPT="text/csv")["Content-Type"].startswith("text/csv")


def test_views_outside_the_list_are_never_copied(cached, volunteer):
    _add(1001)
    client = Client()
    url = reverse("vote-list")
    client.get(url)
    assert "Age" not in client.get(url)


def test_a_page_with_a_csrf_token_is_never_copied(cached):
    cached.GALCAT_PUBLIC_CACHE_VIEWS = (*cached.GALCAT_PUBLIC_CACHE_VIEWS, "accounts:login")
    client = Client()
    url = reverse("accounts:login")
    first, second = client.get(url), client.get(url)
    assert first.status_code == second.status_code == 200
    assert "csrfmiddlewaretoken" in second.content.decode()
    assert "Age" not in second


def test_the_galaxy_page_copy_has_the_same_body(cached):
    _add(1001)
    client = Client()
    url = reverse("catalog:galaxy-detail", args=[1001])
    first, second = client.get(url), client.get(url)
    assert "Age" in second
    assert first.content == second.content
