"""Reads that several pages share."""

from __future__ import annotations

from django.db.models import Count

from catalog.models import Galaxy, Image, InclinationVote, Job


def catalog_counts() -> dict[str, int]:
    """Counts shown on the home page."""
    return {
        "galaxies": Galaxy.objects.located().count(),
        "awaiting_position": Galaxy.objects.awaiting_position().count(),
        "images": Image.objects.count(),
        "votes": InclinationVote.objects.count(),
        "volunteers": InclinationVote.objects.values("user").distinct().count(),
    }


def recent_jobs(limit: int = 10):
    return Job.objects.select_related("created_by")[:limit]


def galaxy_with_related(pgc: int) -> Galaxy:
    """A galaxy with its names and images, or Galaxy.DoesNotExist."""
    return Galaxy.objects.prefetch_related("names", "images").annotate(vote_count=Count("votes", distinct=True)).get(pgc=pgc)
