"""Shared fixtures: real PostgreSQL (pytest-django test database), the shared sample files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from core.roles import CURATOR, MEMBER, VOLUNTEER
from tests.utils import user_with_role


@pytest.fixture(autouse=True)
def _media_root(tmp_path, settings):
    """Each test stores files in its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _fresh_public_pages(settings):
    """Tests read what they just wrote: no copies of public pages (tests/site/test_public_cache.py
    turns them on), no kept counts."""
    settings.GALCAT_PUBLIC_CACHE_SECONDS = 0
    settings.GALCAT_COUNT_CACHE_SECONDS = 0  # tests/catalog/test_browse.py turns it on


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared sample folder (../shared/data or GALCAT_SAMPLE_DATA)."""
    folder = Path(os.environ.get("GALCAT_SAMPLE_DATA", settings.GALCAT_SAMPLE_DATA))
    if not (folder / "edd_cf4_sample.txt").exists():
        pytest.skip(f"shared sample data not found at {folder}")
    return folder


@pytest.fixture
def edd_galaxies(db, shared_data):
    """The 98 galaxies of the shared EDD table, imported through the real importer."""
    from catalog.importers.tables import import_catalog

    import_catalog(shared_data / "edd_cf4_sample.txt", "edd")
    from catalog.models import Galaxy

    return Galaxy.objects.located()


# One account per role, shared by every test folder.
@pytest.fixture
def volunteer(db):
    return user_with_role(VOLUNTEER, "vera")


@pytest.fixture
def member(db):
    return user_with_role(MEMBER, "max")


@pytest.fixture
def curator(db):
    return user_with_role(CURATOR, "cora")
