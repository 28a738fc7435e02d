"""Cone search on the HEALPix index: one function for pages, API, exports, cross-match and SCS.

A cone becomes a few ranges of the depth-29 nested HEALPix index (Gorski et al. 2005, ApJ 622,
759): cdshealpix covers the cone with cells at depth about log2(58.6 deg / r) + 2 (cells a
quarter of the radius or so), each cell is the range of its depth-29 descendants, and adjacent
ranges are merged. PostgreSQL answers the OR of BETWEENs with a bitmap OR of B-tree index scans;
the exact great-circle distance (haversine formula, well conditioned at small angles) then keeps
only what lies inside the cone. Cells, not RA/Dec boxes, so the poles and RA 0/360 need no
special case.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.core.paginator import Page
from django.db.models import BooleanField, FloatField, QuerySet, Value
from django.db.models.expressions import RawSQL

from catalog.sky import HEALPIX_DEPTH, SKY_CELL_DEPTH, check_position
from core.paginator import CountedPaginator

# Mean size of a depth-0 HEALPix cell, sqrt(4 pi / 12) rad = 58.6 deg (Gorski et al. 2005).
DEPTH0_CELL_DEG = math.degrees(math.sqrt(4 * math.pi / 12))
MIN_RADIUS_DEG = 1.0 / 3600 / 1000  # 1 milliarcsec: below the index resolution nothing is gained
MAX_RADIUS_DEG = 90.0
# Above this many ranges the cover is coarsened one depth: the planner's cost grows with ranges.
MAX_RANGES = 24
# Positions per UNION ALL statement in a cross-match.
CROSSMATCH_BATCH = 200
# cone_count covers a cone's edge with cells this many depths finer than cover_depth: an edge
# band of 4-6 % of the cone's area whose rows are checked one by one, in 300-600 ranges; the
# cells inside are counted from the HEALPix index alone.
COUNT_EXTRA_DEPTH = 5
# nearest_first starts from a cone expected (from the catalog's mean density) to hold this many
# times the rows asked for, and doubles its radius until it holds them.
NEAREST_MARGIN = 2.0
# Tables whose located rows per cell of depth SKY_CELL_DEPTH another table counts (cell, galaxies).
CELL_COUNTS = {"catalog_galaxy": "catalog_skycell"}


class ConeError(ValueError):
    """A cone that cannot be searched (bad centre or radius)."""


def cover_depth(radius_deg: float) -> int:
    """Depth of the covering cells for a cone of `radius_deg`: log2(58.6 deg / r) + 2, in [0, 29]."""
    return int(min(HEALPIX_DEPTH, max(0, math.floor(math.log2(DEPTH0_CELL_DEG / radius_deg) + 2))))


def check_cone(ra: float, dec: float, radius_deg: float) -> tuple[float, float, float]:
    """(ra, dec, radius) as floats, or ConeError saying what is wrong."""
    try:
        ra, dec = check_position(ra, dec)
    except ValueError as exc:
        raise ConeError(str(exc)) from None
    try:
        r = float(radius_deg)
    except (TypeError, ValueError):
        raise ConeError(f"radius {radius_deg!r} is not a number") from None
    if not math.isfinite(r) or r <= 0:
        raise ConeError(f"radius {radius_deg} deg must be a positive number")
    if r > MAX_RADIUS_DEG:
        raise ConeError(f"radius {r} deg is larger than the largest cone searched ({MAX_RADIUS_DEG:g} deg)")
    return ra, dec, max(r, MIN_RADIUS_DEG)


def _cover(ra: float, dec: float, radius_deg: float, depth: int):
    """(ipix, depths, fully_covered) of cdshealpix's MOC cover of a cone (cells down to `depth`).

    Calls cdshealpix's compiled cone_search directly when it is there: the public wrapper builds
    astropy Longitude/Latitude/Quantity objects on every call, which cost many times the cover
    itself (figures in bench/README.md).
    """
    try:
        from cdshealpix.cdshealpix import cone_search as _rust_cone
    except ImportError:  # another cdshealpix layout: the public, slower wrapper
        _rust_cone = None
    delta = min(2, HEALPIX_DEPTH - depth)  # cdshealpix panics beyond depth 29
    if _rust_cone is not None:
        return _rust_cone(
            np.uint8(depth),
            np.uint8(delta),
            np.float64(math.radians(ra)),
            np.float64(math.radians(dec)),
            np.float64(math.radians(radius_deg)),
            False,
        )
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import cone_search

    return cone_search(Longitude(ra * u.deg), Latitude(dec * u.deg), radius_deg * u.deg, depth, depth_delta=delta, flat=False)


def _merged_ranges(ipix: np.ndarray, depths: np.ndarray) -> list[tuple[int, int]]:
    """Merged half-open ranges [lo, hi) of depth-29 indices of cells (ipix at depths)."""
    shift = 2 * (HEALPIX_DEPTH - depths.astype(np.int64))
    lo = ipix.astype(np.int64) << shift
    hi = (ipix.astype(np.int64) + 1) << shift
    order = np.argsort(lo)
    merged: list[tuple[int, int]] = []
    for a, b in zip(lo[order].tolist(), hi[order].tolist(), strict=True):
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _pad(radius_deg: float) -> float:
    """What a cover adds to a cone's radius so that float rounding at the edge never drops a member."""
    return radius_deg * 1e-9 + 1e-9


def cone_ranges(ra: float, dec: float, radius_deg: float) -> list[tuple[int, int]]:
    """Merged half-open ranges [lo, hi) of depth-29 nested HEALPix indices covering the cone."""
    ra, dec, r = check_cone(ra, dec, radius_deg)
    depth = cover_depth(r)
    while True:
        merged = _merged_ranges(*_cover(ra, dec, r + _pad(r), depth)[:2])
        if len(merged) <= MAX_RANGES or depth == 0:
            return merged
        depth -= 1


def _subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of sorted disjoint half-open ranges outside sorted disjoint `holes`."""
    out, j = [], 0
    for lo, hi in ranges:
        while j < len(holes) and holes[j][1] <= lo:
            j += 1
        k = j
        while lo < hi and k < len(holes) and holes[k][0] < hi:
            if holes[k][0] > lo:
                out.append((lo, holes[k][0]))
            lo = max(lo, holes[k][1])
            k += 1
        if lo < hi:
            out.append((lo, hi))
    return out


def count_ranges(ra: float, dec: float, radius_deg: float) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(inside, edge): merged depth-29 ranges of cells wholly inside the cone, and of the cells
    on its edge, which together cover it. The cover goes COUNT_EXTRA_DEPTH depths finer than
    cover_depth, so that the edge is a thin band. "Inside" are the cells cdshealpix finds wholly
    within a cone smaller by one cell of the finest depth, so that an edge of a cell bulging
    past its corners can never put a row outside the cone among them."""
    ra, dec, r = check_cone(ra, dec, radius_deg)
    depth = min(HEALPIX_DEPTH - 2, cover_depth(r) + COUNT_EXTRA_DEPTH)
    cover = _merged_ranges(*_cover(ra, dec, r + _pad(r), depth)[:2])
    margin = DEPTH0_CELL_DEG / 2**depth
    if r <= margin:
        return [], cover
    ipix, depths, full = _cover(ra, dec, r - margin, depth)
    full = np.asarray(full, bool)
    inside = _merged_ranges(ipix[full], depths[full])
    return inside, _subtract(cover, inside)


def whole_cells(ranges: list[tuple[int, int]], depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(cells, rest) of sorted half-open depth-29 ranges: the whole cells of `depth` they hold,
    as half-open ranges of cell numbers at that depth, and what is left of them outside those
    cells, as depth-29 ranges."""
    shift = 2 * (HEALPIX_DEPTH - depth)
    cells, rest = [], []
    for lo, hi in ranges:
        first, end = -(-lo >> shift), hi >> shift  # the first whole cell, and the one after the last
        if first >= end:
            rest.append((lo, hi))
            continue
        cells.append((first, end))
        rest += [r for r in ((lo, first << shift), (end << shift, hi)) if r[0] < r[1]]
    return cells, rest


def _distance_sql(ra: float, dec: float, table: str = "") -> tuple[str, list[float]]:
    """SQL of the great-circle distance [deg] from (ra, dec) to a row's position (haversine)."""
    p = f'"{table}".' if table else ""
    sql = (
        f"degrees(2 * asin(least(1.0, sqrt("
        f'power(sin(radians({p}"dec" - %s) / 2), 2) + '
        f'cos(radians({p}"dec")) * %s * power(sin(radians({p}"ra" - %s) / 2), 2)))))'
    )
    return sql, [dec, math.cos(math.radians(dec)), ra]


def cone_condition(ra: float, dec: float, radius_deg: float, table: str) -> tuple[RawSQL, RawSQL]:
    """(distance expression [deg], boolean condition) of a cone over `table`'s ra/dec/healpix.

    The condition is one SQL fragment (OR of BETWENs on the index, then the exact distance):
    the ORM builds it in microseconds where a Q tree of ranges costs milliseconds.
    """
    ra, dec, r = check_cone(ra, dec, radius_deg)
    ranges = cone_ranges(ra, dec, r)
    dist_sql, dist_params = _distance_sql(ra, dec, table)
    between = " OR ".join([f'"{table}"."healpix" BETWEEN %s AND %s'] * len(ranges))
    bounds = [v for lo, hi in ranges for v in (lo, hi - 1)]
    condition = RawSQL(f"(({between}) AND {dist_sql} <= %s)", [*bounds, *dist_params, r], output_field=BooleanField())
    return RawSQL(dist_sql, dist_params, output_field=FloatField()), condition


def galaxies_in_cone(ra: float, dec: float, radius_deg: float, queryset: QuerySet | None = None) -> QuerySet:
    """Galaxies within `radius_deg` of (ra, dec), annotated with `distance_deg`, nearest first.

    `queryset` narrows the candidates (any Galaxy queryset, or another model with ra, dec and
    healpix columns such as ReleaseRow); galaxies without a position never match.
    Raises ConeError for a bad centre or radius.
    """
    if queryset is None:
        from catalog.models import Galaxy

        queryset = Galaxy.objects.all()
    distance, condition = cone_condition(ra, dec, radius_deg, queryset.model._meta.db_table)
    return queryset.annotate(distance_deg=distance).filter(condition).order_by("distance_deg", "pk")


def cone_count(ra: float, dec: float, radius_deg: float, table: str = "catalog_galaxy") -> int:
    """Exactly how many rows of `table` (ra, dec, healpix columns) lie in the cone, as
    galaxies_in_cone(...).count() says, without reading every row (see count_ranges): only the
    rows of the thin edge band are read and measured, those of the cells inside are counted
    from the HEALPix index alone, and those of the whole SKY_CELL_DEPTH cells inside from the
    counts of CELL_COUNTS (catalog_skycell for the galaxy table, the default), so that the
    count costs about the same at 5 million galaxies as at 1 million. Raises ConeError for a
    bad centre or radius."""
    from django.db import connection

    ra, dec, r = check_cone(ra, dec, radius_deg)
    cells_table = CELL_COUNTS.get(table)
    inside, edge = count_ranges(ra, dec, r)
    cells, inside = whole_cells(inside, SKY_CELL_DEPTH) if cells_table else ([], inside)
    dist_sql, dist_params = _distance_sql(ra, dec, "t")
    # a subquery per range: an index range scan each (index-only for the cells inside)
    inside_sql = f"SELECT count(*) FROM {table} t WHERE t.healpix >= c.lo AND t.healpix < c.hi"
    edge_sql = f"{inside_sql} AND {dist_sql} <= %s"
    cells_sql = f"SELECT sum(k.galaxies) FROM {cells_table} k WHERE k.cell >= c.lo AND k.cell < c.hi"
    ranges = "FROM unnest(%s::bigint[], %s::bigint[]) AS c (lo, hi)"

    def bounds(rs: list[tuple[int, int]]) -> list[list[int]]:
        return [[lo for lo, _ in rs], [hi for _, hi in rs]]

    parts = [f"(SELECT coalesce(sum(({inside_sql})), 0) {ranges})", f"(SELECT coalesce(sum(({edge_sql})), 0) {ranges})"]
    params = [*bounds(inside), *dist_params, r, *bounds(edge)]
    if cells:
        parts.append(f"(SELECT coalesce(sum(({cells_sql})), 0) {ranges})")
        params += bounds(cells)
    with connection.cursor() as cur:
        cur.execute(f"SELECT {' + '.join(parts)}", params)
        return int(cur.fetchone()[0])


def sky_density(table: str = "catalog_galaxy") -> float:
    """Mean rows of `table` per steradian, from PostgreSQL's estimate of its size (0 when it
    has none yet)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        row = cur.fetchone()
    return max(0.0, float(row[0])) / (4 * math.pi) if row else 0.0


def nearest_first(queryset: QuerySet, ra: float, dec: float, radius_deg: float, rows: int, beyond_deg: float = 0.0) -> list:
    """The first `rows` rows of a nearest-first cone queryset (galaxies_in_cone(ra, dec,
    radius_deg, ...), with any other filters, values() or not), the same as
    list(queryset[:rows]), but read from the smallest cone around the same centre that holds
    them: rows beyond a radius are all farther than those within it, so when a cone of radius
    rho < radius_deg holds `rows` rows, they are the first ones. rho starts where the catalog's
    mean density (sky_density) expects NEAREST_MARGIN times the rows beyond `beyond_deg` (the
    distance a page of a cursor starts from) and doubles until the cone holds them; so the page
    of a 10 deg cone costs what its rows cost, not what the 10 deg of rows would."""
    table = queryset.model._meta.db_table
    density = sky_density(table)
    if rows <= 0 or density <= 0:
        return list(queryset[: max(rows, 0)])
    # solid angle of a cone: 2 pi (1 - cos rho)
    solid = 2 * math.pi * (1 - math.cos(math.radians(min(beyond_deg, radius_deg)))) + NEAREST_MARGIN * rows / density
    rho = math.degrees(math.acos(max(-1.0, 1 - solid / (2 * math.pi))))
    while rho < radius_deg:
        found = list(queryset.filter(cone_condition(ra, dec, rho, table)[1])[:rows])
        if len(found) == rows:
            return found
        rho *= 2
    return list(queryset[:rows])


class NearestFirstPaginator(CountedPaginator):
    """Pages of a nearest-first cone queryset (galaxies_in_cone, any other filters), each read
    by nearest_first (count: see CountedPaginator; cone_count's when the cone is the only
    filter)."""

    def __init__(self, object_list: QuerySet, per_page: int, ra: float, dec: float, radius_deg: float, count: int | None = None):
        super().__init__(object_list, per_page, count)
        self.cone = (ra, dec, radius_deg)

    def page(self, number) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = nearest_first(self.object_list, *self.cone, bottom + self.per_page)[bottom:]
        return self._get_page(rows, number, self)


@dataclass(frozen=True)
class Match:
    """The nearest galaxy within the radius of one input position (galaxy None when none)."""

    index: int
    ra: float
    dec: float
    galaxy: object | None
    distance_deg: float | None


def crossmatch(
    positions: Iterable[tuple[float, float]], radius_deg: float, queryset: QuerySet | None = None, batch: int = CROSSMATCH_BATCH
) -> list[Match]:
    """Nearest galaxy within `radius_deg` of each (ra, dec) position, in input order.

    Each position is one `galaxies_in_cone(...)[:1]`; `batch` of them travel as one UNION ALL
    statement, so a cross-match costs one round trip per batch rather than per position.
    Raises ConeError naming the first bad position.
    """
    checked = []
    for i, (ra, dec) in enumerate(positions):
        try:
            checked.append(check_cone(ra, dec, radius_deg))
        except ConeError as exc:
            raise ConeError(f"position {i + 1}: {exc}") from None
    if queryset is None:
        from catalog.models import Galaxy

        queryset = Galaxy.objects.all()
    best: dict[int, tuple[int, float]] = {}
    for start in range(0, len(checked), max(1, batch)):
        parts = [
            galaxies_in_cone(ra, dec, r, queryset).annotate(xm_index=Value(i)).values_list("xm_index", "pk", "distance_deg")[:1]
            for i, (ra, dec, r) in enumerate(checked[start : start + batch], start=start)
        ]
        rows = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
        for i, pk, distance in rows:
            best[i] = (pk, distance)
    found = queryset.model._default_manager.in_bulk([pk for pk, _ in best.values()])
    out = []
    for i, (ra, dec, _) in enumerate(checked):
        pk, distance = best.get(i, (None, None))
        out.append(Match(i, ra, dec, found.get(pk), distance))
    return out
