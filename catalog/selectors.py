"""Reads that several pages share."""

from __future__ import annotations

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from catalog.models import Galaxy, Image
from core.roles import is_member


def galaxy_related_model(name: str) -> type[models.Model] | None:
    """The model behind Galaxy's reverse relation `name` (``votes``: the zoo's votes), or None
    when the app that defines it is not installed: the catalog reads other apps' rows this way
    without importing them."""
    try:
        return Galaxy._meta.get_field(name).related_model
    except FieldDoesNotExist:
        return None


def catalog_counts() -> dict[str, int]:
    """Counts shown on the home page (votes and volunteers 0 without the zoo)."""
    counts = {
        "galaxies": Galaxy.objects.located().count(),
        "awaiting_position": Galaxy.objects.awaiting_position().count(),
        "images": Image.objects.count(),
        "votes": 0,
        "volunteers": 0,
    }
    votes = galaxy_related_model("votes")
    if votes is not None:
        counts["votes"] = votes.objects.count()
        counts["volunteers"] = votes.objects.values("user").distinct().count()
    return counts


def recent_jobs(user, limit: int = 10):
    """The latest jobs `user` may see on the jobs page (none for anonymous users), so the home
    page never lists what /jobs/ hides."""
    from jobs.services import visible_jobs

    return visible_jobs(user)[:limit]


def visible_images(user) -> models.QuerySet:
    """Images `user` may see: public ones for everyone, private ones for members too."""
    return Image.objects.all() if is_member(user) else Image.objects.filter(is_public=True)


def galaxy_with_related(pgc: int, user=None) -> Galaxy:
    """A galaxy with its names and the images `user` may see (``galaxy.images.all()``), or
    Galaxy.DoesNotExist."""
    return Galaxy.objects.prefetch_related("names", models.Prefetch("images", queryset=visible_images(user))).get(pgc=pgc)
