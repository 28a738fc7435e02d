"""Per-galaxy summary tables: stored copies of derived columns, one row per galaxy.

A derived column (catalog.columns.DerivedColumn) is defined by its `expression`, a correlated
subquery over its app's rows (consensus, predictions, fits). Evaluated for every row of a 1M-galaxy
table it makes filters, sorts and downloads 7-10x slower than stored columns, so each app keeps
a summary model (galaxy as primary key, one field per column, indexed) that tables join once.

`refresh_summary` recomputes the rows of some galaxies (or all) set-wise, with the columns' own
expressions: one DELETE and one INSERT ... SELECT, no Python per row. The apps call it from the
functions that write their rows (in the same transaction) and from post_save receivers for rows
written one at a time (admin, scripts, tests); `python manage.py refresh_summaries` rebuilds all
(after a migration that adds a summary, or rows written by raw SQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from django.db import connection, transaction
from django.db.models import Model, Q

from catalog.columns import DerivedColumn
from catalog.models import Galaxy

# {summary related name: refresh(pgcs=None) -> rows}, filled by the apps' column modules
# (register_summary) when derived_columns() loads them; `refresh_summaries` runs them all.
REFRESHERS: dict[str, Callable[..., int]] = {}

# Above this many galaxies a refresh rebuilds the galaxies that have rows at all (one scan), not
# a list of primary keys.
LIST_LIMIT = 20_000


def summary_columns(columns: Iterable[DerivedColumn], summary: str) -> list[DerivedColumn]:
    """The columns of `columns` stored in the summary whose related name is `summary`."""
    return [c for c in columns if c.stored.startswith(f"{summary}__")]


def refresh_summary(model: type[Model], columns: Sequence[DerivedColumn], pgcs: Iterable[int] | None, present: Q) -> int:
    """Recompute `model`'s rows (fields named like `columns`) for the galaxies `pgcs`, or for all
    galaxies when pgcs is None. `present`: a Q over galaxies, true where the app has rows for the
    galaxy at all (the full rebuild reads only those). A galaxy whose columns are all null gets no
    row. Returns the number of rows written."""
    table = connection.ops.quote_name(model._meta.db_table)
    key = connection.ops.quote_name(model._meta.pk.column)
    qs = Galaxy.objects.order_by()
    if pgcs is not None:
        pgcs = sorted({int(p) for p in pgcs})
        if not pgcs:
            return 0
        if len(pgcs) > LIST_LIMIT:
            pgcs = None
        else:
            qs = qs.filter(pk__in=pgcs)
    if pgcs is None:
        qs = qs.filter(present)
    aliases = {f"_s{k}": c.expression() for k, c in enumerate(columns)}
    sql, params = qs.annotate(**aliases).values_list("pk", *aliases).query.sql_with_params()
    names = [connection.ops.quote_name(model._meta.get_field(c.name).column) for c in columns]
    inner = ", ".join(names)
    some = " OR ".join(f"s.{n} IS NOT NULL" for n in names)
    update = ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
    with transaction.atomic(), connection.cursor() as cur:
        if pgcs is None:
            cur.execute(f"DELETE FROM {table}")
        else:
            cur.execute(f"DELETE FROM {table} WHERE {key} = ANY(%s)", [pgcs])
        cur.execute(
            f"INSERT INTO {table} ({key}, {inner}) SELECT * FROM ({sql}) AS s({key}, {inner}) WHERE {some} "
            f"ON CONFLICT ({key}) DO UPDATE SET {update}",
            params,
        )
        written = cur.rowcount
        if pgcs is None:
            cur.execute(f"ANALYZE {table}")  # the planner's statistics of a rebuilt table
        return written


def register_summary(summary: str, refresh: Callable[..., int]) -> None:
    """Name an app's summary refresher (called with no argument it rebuilds every galaxy)."""
    REFRESHERS[summary] = refresh


def refresh_galaxy_summaries(pgcs: Iterable[int]) -> dict[str, int]:
    """Recompute every registered summary of these galaxies (an image of theirs was saved or
    deleted, which can change what their columns are taken over): {summary: rows}."""
    from catalog.columns import derived_columns

    derived_columns()
    pgcs = list(pgcs)
    return {name: refresh(pgcs) for name, refresh in sorted(REFRESHERS.items())}


def refresh_all_summaries() -> dict[str, int]:
    """Rebuild every registered summary table from its source rows: {summary: rows}."""
    from catalog.columns import derived_columns

    derived_columns()  # imports the apps' column modules, which register their refreshers
    return {name: refresh() for name, refresh in sorted(REFRESHERS.items())}
