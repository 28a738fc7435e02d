"""Fixtures of the API tests: one user per role, each with an API token."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from catalog.api.tokens import issue_token


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """Throttle counts live in the cache: each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


def token_client(user) -> APIClient:
    """A client that authenticates with the user's API token (a header, as scripts do)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(user).key}")
    return client


@pytest.fixture
def volunteer_client(volunteer) -> APIClient:
    return token_client(volunteer)


@pytest.fixture
def member_client(member) -> APIClient:
    return token_client(member)


@pytest.fixture
def curator_client(curator) -> APIClient:
    return token_client(curator)
