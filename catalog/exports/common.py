"""Pieces the three writers share: provenance, COPY streaming, buffering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.db import connection

from catalog.columns import Column

CHUNK_BYTES = 1 << 16


def provenance_items(provenance: dict | None, rows: int | None) -> list[tuple[str, str]]:
    """(key, value) pairs of the provenance, with the date and row count filled in."""
    items = {str(k): " ".join(str(v).split()) for k, v in (provenance or {}).items() if v not in (None, "")}
    items.setdefault("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if rows is not None:
        items["rows"] = str(rows)
    return list(items.items())


def count_rows(source) -> int:
    return source.count()


def select_sql(source, exprs: list[str]) -> str:
    return f"SELECT {', '.join(exprs)} FROM ({source.sql}) AS t"


def copy_out(sql: str, params: list) -> Iterator[bytes]:
    """Stream `COPY (sql) TO STDOUT` in blocks of about CHUNK_BYTES."""
    buf = bytearray()
    with connection.cursor() as cur:
        with cur.cursor.copy(sql, params or None) as copy:
            for block in copy:
                buf += block
                if len(buf) >= CHUNK_BYTES:
                    yield bytes(buf)
                    buf.clear()
    if buf:
        yield bytes(buf)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_line(col: Column) -> str:
    unit = f" [{col.unit}]" if col.unit else ""
    return f"{col.name}{unit} ({col.ucd}): {col.description}"
