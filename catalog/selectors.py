"""Reads that several pages share."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import FieldDoesNotExist
from django.db import connection, models

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


def galaxy_table_state() -> str | None:
    """A key that changes whenever the committed rows of the galaxy table may have changed:
    its file node (new after TRUNCATE) and PostgreSQL's counts of the rows ever inserted,
    updated and deleted in it (pg_stat_all_tables; a commit shows there within about a second,
    at most PostgreSQL's 10 s idle flush). None when nothing may be cached: the current
    transaction has changed the table itself (pg_stat_xact_all_tables), or the server counts
    no rows (track_counts off)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_relation_filenode(s.relid), s.n_tup_ins, s.n_tup_upd, s.n_tup_del, "
            "x.n_tup_ins + x.n_tup_upd + x.n_tup_del, current_setting('track_counts')::boolean "
            "FROM pg_stat_all_tables s JOIN pg_stat_xact_all_tables x USING (relid) WHERE s.relid = %s::regclass",
            [Galaxy._meta.db_table],
        )
        row = cur.fetchone()
    if row is None or row[4] or not row[5]:
        return None
    return ":".join(str(v) for v in row[:4])


def located_count() -> int:
    """How many galaxies have a position: counted once while the galaxy table is unchanged
    (galaxy_table_state), kept per process at most GALCAT_COUNT_CACHE_SECONDS, so that the
    unfiltered browse list and the home page do not count 5 million rows on every request."""
    seconds = settings.GALCAT_COUNT_CACHE_SECONDS
    state = galaxy_table_state() if seconds > 0 else None
    if state is None:
        return Galaxy.objects.located().count()
    key = f"galcat:located:{state}"
    count = cache.get(key)
    if count is None:
        count = Galaxy.objects.located().count()
        cache.set(key, count, seconds)
    return count


def catalog_counts() -> dict[str, int]:
    """Counts shown on the home page (votes and volunteers 0 without the zoo)."""
    counts = {
        "galaxies": located_count(),
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
