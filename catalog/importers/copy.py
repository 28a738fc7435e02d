"""Writing model rows with PostgreSQL's COPY instead of building model instances."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from django.db import connection, models

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


def copy_records(cursor, model: type[models.Model], records: Iterable[dict]) -> int:
    """COPY rows of `model` given as {attname: value}; fields a record lacks get their
    default (the auto primary key its sequence). Returns the number of rows written."""
    fields = [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]
    defaults = {f.attname: f.get_default() for f in fields}
    names = [f.attname for f in fields]
    lines = []
    for record in records:
        lines.append("\t".join(copy_value(record[n] if n in record else defaults[n]) for n in names) + "\n")
    if not lines:
        return 0
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with cursor.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
        copy.write("".join(lines))
    return len(lines)


def create_placeholder_galaxies(pgcs: Iterable[int]) -> int:
    """Galaxies known only by their pgc for those of `pgcs` the catalog lacks, in one statement
    (no model instances of 140-odd fields); returns how many were created."""
    from django.utils import timezone

    from catalog.models import Galaxy

    pgcs = sorted(set(pgcs))
    if not pgcs:
        return 0
    qn = connection.ops.quote_name
    columns, values, params = ["pgc"], ["p"], []
    now = timezone.now()
    for field in Galaxy._meta.concrete_fields:
        if field.null or field.primary_key:
            continue
        columns.append(qn(field.column))
        values.append("%s")
        params.append(now if field.name in ("created", "updated") else field.get_default())
    with connection.cursor() as cur:
        cur.execute(
            f"WITH made AS (INSERT INTO {Galaxy._meta.db_table} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM unnest(%s::integer[]) AS p ON CONFLICT (pgc) DO NOTHING RETURNING 1) "
            "SELECT count(*) FROM made",
            [*params, pgcs],
        )
        return cur.fetchone()[0]
