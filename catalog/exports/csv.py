"""CSV export: provenance and column descriptions as '#' comment lines, then PostgreSQL's own
COPY ... TO STDOUT (FORMAT csv, HEADER): constant memory, no Python work per row."""

from __future__ import annotations

from collections.abc import Iterator

from catalog.columns import Column
from catalog.exports.common import column_line, copy_out, count_rows, provenance_items, quote_ident, select_sql


def csv_expr(source, col: Column) -> str:
    e = source.expr(col)
    if col.kind in ("bool", "flag"):
        e = f"({e})::int"
    return f"{e} AS {quote_ident(col.name)}"


def stream_csv(source, columns: list[Column], provenance: dict | None) -> Iterator[bytes]:
    rows = count_rows(source)
    lines = [f"# {k}: {v}" for k, v in provenance_items(provenance, rows)]
    lines.append("# columns (name [unit] (UCD): description):")
    lines += [f"#   {column_line(c)}" for c in columns]
    yield ("\n".join(lines) + "\n").encode()
    sql = f"COPY ({select_sql(source, [csv_expr(source, c) for c in columns])}) TO STDOUT WITH (FORMAT csv, HEADER true)"
    yield from copy_out(sql, source.params)
