"""Releases: the result of a query (or all galaxies) frozen as a named, versioned table.

`make_release` copies the chosen columns of the selected galaxies into ReleaseRow values in one
INSERT ... SELECT (no row passes through Python), so freezing a million rows takes seconds.
A published release is immutable: `publish_release` freezes it and every function here refuses
to change it afterwards. Visibility: public published releases for everyone; private ones for
members; drafts for curators.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from catalog.columns import all_columns, resolve_columns, with_columns
from catalog.models import Galaxy, Release, ReleaseRow
from core.roles import is_curator, is_member

JSON_PAIRS_PER_CALL = 50  # jsonb_build_object takes at most 100 arguments


class ReleaseError(ValueError):
    """A release that cannot be made or changed as asked."""


def visible_releases(user) -> QuerySet:
    """Releases `user` may see: public published ones; private for members; drafts for curators."""
    qs = Release.objects.all()
    if is_curator(user):
        return qs
    qs = qs.filter(status=Release.Status.PUBLISHED)
    return qs if is_member(user) else qs.filter(is_public=True)


def query_queryset(query: dict | None) -> QuerySet:
    """Galaxies selected by filter parameters (the browse page's GalaxyFilter); ReleaseError if invalid."""
    from django import forms

    from catalog.filters import GalaxyFilter

    fs = GalaxyFilter({k: v for k, v in (query or {}).items()}, queryset=Galaxy.objects.all())
    try:
        if not fs.is_valid():
            raise ReleaseError(f"invalid query: {fs.error_text()}")
        return fs.qs
    except forms.ValidationError as exc:
        raise ReleaseError(f"invalid query: {' '.join(exc.messages)}") from None


def _values_sql(names: list[str]) -> str:
    calls = []
    for i in range(0, len(names), JSON_PAIRS_PER_CALL):
        pairs = ", ".join(f"'{n}', t.\"{n}\"" for n in names[i : i + JSON_PAIRS_PER_CALL])
        calls.append(f"jsonb_build_object({pairs})")
    return " || ".join(calls)


def make_release(
    name: str,
    version: str,
    *,
    query: dict | None = None,
    queryset: QuerySet | None = None,
    columns: list[str] | str | None = None,
    description: str = "",
    citation: str = "",
    user=None,
    publish: bool = False,
    is_public: bool = True,
    slug: str | None = None,
) -> Release:
    """Freeze the galaxies of `queryset` (or of filter parameters `query`, or all located
    galaxies) with `columns` (default: every column, the derived consensus, CNN and fit values
    included, frozen at this moment) as a new release."""
    name, version = (name or "").strip(), (version or "").strip()
    if not name or not version:
        raise ReleaseError("a release needs a name and a version")
    slug = slugify((slug or f"{name}-v{version}").replace(".", "-"))[:80]
    if not slug:
        raise ReleaseError(f"cannot make a URL slug from {name!r} {version!r}")
    if Release.objects.filter(Q(slug=slug) | Q(name=name, version=version)).exists():
        raise ReleaseError(f"a release {name} v{version} (or slug {slug}) exists already; releases are never overwritten")
    try:
        cols = resolve_columns(columns, default=tuple(c.name for c in all_columns()))
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None
    names = [c.name for c in cols]
    for required in ("pgc", "ra", "dec"):
        if required not in names:
            names.insert(("pgc", "ra", "dec").index(required), required)
    if queryset is None:
        queryset = query_queryset(query)
    queryset = queryset.filter(ra__isnull=False).order_by()
    select_names = sorted(set(names) | {"pgc", "ra", "dec", "healpix"})
    inner, params = with_columns(queryset, select_names, join=True).values_list(*select_names).query.sql_with_params()
    value_names = [n for n in names if n not in ("pgc", "ra", "dec")]
    values = _values_sql(value_names) if value_names else "'{}'::jsonb"
    with transaction.atomic():
        release = Release.objects.create(
            slug=slug,
            name=name,
            version=version,
            description=description,
            citation=citation,
            query=dict(query or {}),
            columns=names,
            is_public=is_public,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        with connection.cursor() as cur:
            cur.execute(
                f"INSERT INTO {ReleaseRow._meta.db_table} (release_id, galaxy_id, ra, dec, healpix, values) "
                f'SELECT %s, t."pgc", t."ra", t."dec", t."healpix", {values} FROM ({inner}) AS t',
                [release.pk, *params],
            )
            release.row_count = cur.rowcount
        release.save(update_fields=["row_count"])
        if publish:
            publish_release(release)
    return release


def check_mutable(release: Release) -> None:
    if release.is_published:
        raise ReleaseError(f"release {release} is published and cannot change")


def publish_release(release: Release) -> Release:
    """Freeze a draft release for good."""
    with transaction.atomic():
        locked = Release.objects.select_for_update().get(pk=release.pk)
        check_mutable(locked)
        locked.status = Release.Status.PUBLISHED
        locked.published_at = timezone.now()
        locked.row_count = ReleaseRow.objects.filter(release=locked).count()
        locked.save(update_fields=["status", "published_at", "row_count"])
    release.refresh_from_db()
    return release


def delete_draft(release: Release) -> None:
    """Delete a draft release and its rows (published releases are refused)."""
    check_mutable(release)
    release.delete()


def release_provenance(release: Release) -> dict:
    return {
        "release": f"{release.name} v{release.version} ({release.slug})",
        "status": release.status,
        "published": release.published_at.isoformat() if release.published_at else "",
        "citation": release.citation,
        "description": release.description,
    }
