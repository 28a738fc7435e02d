"""Where exported rows come from: a Galaxy queryset, a Release, or a ReleaseRow queryset.

A TableSource knows, per registry column, the SQL expression of its typed value over an inner
SELECT aliased ``t``; `prepare(columns)` builds that inner SELECT with only the columns asked
for (rows in their final order). The writers wrap it in their own outer SELECT or COPY, so all
work per row stays in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import QuerySet

from catalog.columns import BY_NAME, COLUMNS, DEFAULT_LIST_COLUMNS, DERIVED, Column, derived_by_name, derived_columns, with_columns

# The angular distance from a cone's centre, present when the rows come from a cone search.
DISTANCE = Column("distance", "distance", "float", "deg", "pos.angDistance", "Angular distance from the cone centre", "position")
_SQL_TYPES = {"float": "float8", "int": "bigint", "bool": "boolean", "flag": "boolean", "str": "text"}


class ExportError(ValueError):
    """An export that cannot be made as asked (unknown column, column not in a release, ...)."""


@dataclass
class TableSource:
    expressions: dict[str, str]
    available: list[str]
    default_columns: list[str]
    build: Callable[[list[str], bool], tuple[str, list]]
    counter: Callable[[], int]
    has_distance: bool = False
    release: object | None = None
    sql: str = ""
    params: list | None = None
    unordered_sql: str = ""
    unordered_params: list | None = None

    def resolve(self, names: list[str] | str | None) -> list[Column]:
        """Registry columns for `names` (comma-separated or list; 'all'; None for the defaults)."""
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        if names and len(names) == 1 and str(names[0]).strip().lower() == "all":
            names = list(self.available)
        if not names:
            names = list(self.default_columns)
        out: list[Column] = []
        unknown, missing = [], []
        for n in names:
            key = n.name if isinstance(n, Column) else str(n).strip()
            col = _lookup(key)
            if col is None:
                unknown.append(key)
            elif col.name not in self.available:
                missing.append(key)
            elif col not in out:
                out.append(col)
        if unknown:
            raise ExportError(f"unknown column(s): {', '.join(unknown)}")
        if missing:
            where = f"release {self.release.slug}" if self.release is not None else "these rows"
            raise ExportError(f"column(s) not available in {where}: {', '.join(missing)}")
        return out

    def prepare(self, columns: list[Column]) -> TableSource:
        """Build the inner SELECT for `columns` (ordered, and unordered for aggregates)."""
        names = [c.name for c in columns]
        self.sql, self.params = self.build(names, True)
        self.unordered_sql, self.unordered_params = self.build(names, False)
        return self

    def count(self) -> int:
        return self.counter()

    def expr(self, col: Column) -> str:
        return self.expressions[col.name]


def _lookup(name: str) -> Column | None:
    if name.lower() == "distance":
        return DISTANCE
    if name in BY_NAME:
        return BY_NAME[name]
    for c in COLUMNS + DERIVED + derived_columns():
        if c.name == name.lower() or c.source.lower() == name.lower():
            return c
    return None


def _galaxy_source(qs: QuerySet) -> TableSource:
    has_distance = "distance_deg" in qs.query.annotations
    names = [c.name for c in COLUMNS] + ["healpix"] + [c.name for c in derived_columns()]
    expressions = {n: f't."{n}"' for n in names}
    default = list(DEFAULT_LIST_COLUMNS)
    if has_distance:
        expressions["distance"] = 't."distance_deg"'
        default.append("distance")

    def build(wanted: list[str], ordered: bool) -> tuple[str, list]:
        fields = [n for n in wanted if n != "distance"] or ["pgc"]
        if "distance" in wanted:
            fields.append("distance_deg")
        sub = with_columns(qs if ordered else qs.order_by(), [n for n in fields if n in derived_by_name()], join=True)
        sql, params = sub.values_list(*fields).query.sql_with_params()
        return sql, list(params)

    return TableSource(expressions, list(expressions), default, build, qs.count, has_distance)


def _release_rows_source(qs: QuerySet, release) -> TableSource:
    has_distance = "distance_deg" in qs.query.annotations
    frozen = list(release.columns) if release is not None and release.columns else list(DEFAULT_LIST_COLUMNS)
    expressions = {"pgc": 't."galaxy_id"', "ra": 't."ra"', "dec": 't."dec"', "healpix": 't."healpix"'}
    for name in frozen:
        col = _lookup(name)
        if col is None or col.name in expressions:
            continue
        expressions[col.name] = f"""(t."values"->>'{col.name}')::{_SQL_TYPES[col.kind]}"""
    order = ["pgc", "ra", "dec"] + [n for n in frozen if n not in ("pgc", "ra", "dec")]
    default = [n for n in order if n in expressions]
    available = list(expressions)
    if has_distance:
        expressions["distance"] = 't."distance_deg"'
        available.append("distance")
        default.append("distance")

    def build(wanted: list[str], ordered: bool) -> tuple[str, list]:
        fields = ["galaxy_id", "ra", "dec", "healpix"]
        if any(n not in ("pgc", "ra", "dec", "healpix", "distance") for n in wanted):
            fields.append("values")
        if "distance" in wanted:
            fields.append("distance_deg")
        sub = qs if ordered else qs.order_by()
        sql, params = sub.values_list(*fields).query.sql_with_params()
        return sql, list(params)

    return TableSource(expressions, available, default, build, qs.count, has_distance, release)


def table_source(obj, release=None) -> TableSource:
    """The TableSource of a Galaxy queryset, a Release, or a ReleaseRow queryset (of `release`)."""
    from catalog.models import Galaxy, Release, ReleaseRow

    if isinstance(obj, Release):
        return _release_rows_source(ReleaseRow.objects.filter(release=obj).order_by("galaxy_id"), obj)
    if isinstance(obj, QuerySet) and obj.model is Galaxy:
        return _galaxy_source(obj)
    if isinstance(obj, QuerySet) and obj.model is ReleaseRow:
        return _release_rows_source(obj, release)
    raise ExportError(f"cannot export {type(obj).__name__}: give a Galaxy queryset, a Release or a ReleaseRow queryset")
