"""PostgreSQL COPY text fields, and placeholder galaxies written set-wise instead of as model instances."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from django.db import connection

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """A string as a field of PostgreSQL's COPY text format."""
    return value.translate(_COPY_ESCAPES)


def copy_value(value) -> str:
    """A Python value (None, bool, number, str, date/datetime) as a COPY text field."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return copy_text(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def create_placeholder_galaxies(pgcs: Iterable[int]) -> int:
    """Galaxies known only by their pgc for those of `pgcs` the catalog lacks, in one statement
    (no model instances of 140-odd fields); returns how many were created."""
    pgcs = sorted(set(pgcs))
    if not pgcs:
        return 0
    return create_placeholder_galaxies_from("SELECT unnest(%s::integer[])", [pgcs])


def create_placeholder_galaxies_from(select: str, params: list | None = None) -> int:
    """create_placeholder_galaxies for the pgc numbers a query selects (one column), set-wise."""
    from django.utils import timezone

    from catalog.models import Galaxy

    qn = connection.ops.quote_name
    columns, values, defaults = ["pgc"], ["p.pgc"], []
    now = timezone.now()
    for field in Galaxy._meta.concrete_fields:
        if field.null or field.primary_key:
            continue
        columns.append(qn(field.column))
        values.append("%s")
        defaults.append(now if field.name in ("created", "updated") else field.get_default())
    with connection.cursor() as cur:
        cur.execute(
            f"WITH made AS (INSERT INTO {Galaxy._meta.db_table} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM ({select}) AS p (pgc) ORDER BY 1 ON CONFLICT (pgc) DO NOTHING RETURNING 1) "
            "SELECT count(*) FROM made",
            [*defaults, *(params or [])],
        )
        return cur.fetchone()[0]
