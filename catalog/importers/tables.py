"""Import of catalog tables: EDD pipe tables, CSV, VOTable and FITS binary tables.

`import_catalog` validates the whole table first and writes nothing when it finds a problem
(unless partial=True, which skips the bad rows); then it upserts galaxies by pgc in one
transaction, computing the HEALPix index (and missing galactic/supergalactic coordinates).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction

from catalog.columns import BY_NAME, Column, column
from catalog.importers.report import ImportReport, ImportValidationError
from catalog.models import Galaxy, GalaxyName
from catalog.names import display_name, normalise_name
from catalog.sky import fill_sky_fields

FORMATS = ("edd", "csv", "votable", "fits")
NAME_COLUMNS = ("name", "names", "objname", "alias", "aliases")
WRITE_BATCH = 2000
MAX_STR = 200

Progress = Callable[[int, int], None]


class TableReadError(ValueError):
    """The file cannot be read as a table at all."""


def guess_format(path: Path) -> str:
    """Table format from the file name (and the first line for .txt files)."""
    name = path.name.lower()
    if name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
        return "fits"
    if name.endswith((".xml", ".vot", ".votable")):
        return "votable"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return "edd"


# ---------------------------------------------------------------------------------------------
# Reading: each reader yields (place, {header: raw value}) after giving the header
# ---------------------------------------------------------------------------------------------
def _decode_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise TableReadError("the file is empty")
    if b"\x00" in data[:65536]:
        raise TableReadError("the file is binary, not a text table (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableReadError(f"the file is not UTF-8 text (undecodable byte at offset {exc.start})") from exc


def _read_edd(path: Path, report: ImportReport) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    lines = _decode_text(path).splitlines()
    header = [h.strip() for h in lines[0].split("|")]
    if len(header) < 2:
        raise TableReadError("line 1: no '|'-separated header found (is this an EDD table?)")

    def rows():
        for i, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            cells = line.split("|")
            if len(cells) != len(header):
                report.add(i, None, f"expected {len(header)} columns, found {len(cells)} (truncated or malformed line)")
                continue
            yield i, {h: c.strip() for h, c in zip(header, cells)}

    return header, rows()


def _read_csv(path: Path, report: ImportReport) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    text = _decode_text(path)
    dialect = csv.excel_tab if path.name.lower().endswith(".tsv") else csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration as exc:
        raise TableReadError("the file is empty") from exc
    if len(header) < 2:
        raise TableReadError("line 1: expected a comma-separated header with at least two columns")

    def rows():
        for cells in reader:
            i = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                report.add(i, None, f"expected {len(header)} fields, found {len(cells)}")
                continue
            yield i, dict(zip(header, cells))

    return header, rows()


def _read_astropy(path: Path, fmt: str, report: ImportReport) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    import warnings

    from astropy.table import Table

    if path.stat().st_size == 0:
        raise TableReadError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = Table.read(path, format="votable" if fmt == "votable" else "fits")
    except Exception as exc:  # astropy raises many kinds for garbage input
        raise TableReadError(f"cannot read as {fmt.upper()}: {exc}") from exc
    header = list(table.colnames)

    def value(v: Any) -> Any:
        if v is np.ma.masked or (hasattr(v, "mask") and np.all(v.mask)):
            return None
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, np.generic):
            return v.item()
        return v

    def rows():
        for i, row in enumerate(table, start=1):
            yield i, {h: value(row[h]) for h in header}

    return header, rows()


# ---------------------------------------------------------------------------------------------
# Conversion of one cell
# ---------------------------------------------------------------------------------------------
def convert_value(col: Column, raw: Any, *, zero_is_null: bool) -> Any:
    """Python value of a cell for a column, or ValueError saying why it is not acceptable."""
    if raw is None:
        return "" if col.kind == "str" else None
    if isinstance(raw, str):
        raw = raw.strip()
        if raw == "":
            return "" if col.kind == "str" else (False if col.kind == "flag" else None)
    if col.kind == "str":
        text = str(raw)
        if len(text) > MAX_STR:
            raise ValueError(f"text longer than {MAX_STR} characters")
        return text
    if col.kind == "flag":
        text = str(raw).strip().upper()
        if text in (col.letter, "1", "TRUE", "T", "Y", "YES"):
            return True
        if text in ("0", "FALSE", "F", "N", "NO") and text != col.letter:
            return False
        raise ValueError(f"expected the flag letter {col.letter!r} or blank, got {raw!r}")
    if col.kind == "bool":
        text = str(raw).strip().lower()
        if text in ("1", "true", "t", "yes", "y", "1.0"):
            return True
        if text in ("0", "false", "f", "no", "n", "0.0"):
            return False
        raise ValueError(f"expected 0 or 1, got {raw!r}")
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {raw!r}") from None
    if math.isnan(number):
        raise ValueError("NaN is not a value (leave the cell empty when it is missing)")
    if math.isinf(number):
        raise ValueError("infinite value")
    if zero_is_null and col.zero_is_null and number == 0.0:
        return None
    if col.kind == "int":
        if number != int(number):
            raise ValueError(f"expected an integer, got {raw!r}")
        if abs(number) > 2**31 - 1:
            raise ValueError(f"integer {raw!r} out of range")
        return int(number)
    return number


def _check_position(values: dict, place: int, report: ImportReport) -> bool:
    ra, dec = values.get("ra"), values.get("dec")
    if (ra is None) != (dec is None):
        report.add(place, "ra" if ra is None else "dec", "ra and dec must be given together")
        return False
    if ra is None:
        return True
    ok = True
    if not 0.0 <= ra < 360.0:
        report.add(place, "ra", f"RA {ra} outside [0, 360) deg")
        ok = False
    if not -90.0 <= dec <= 90.0:
        report.add(place, "dec", f"Dec {dec} outside [-90, 90] deg")
        ok = False
    return ok


# ---------------------------------------------------------------------------------------------
# The import
# ---------------------------------------------------------------------------------------------
def read_catalog_table(path: Path, fmt: str, report: ImportReport) -> tuple[list[Column], list[str], list[tuple[int, dict, list[str]]]]:
    """Validated rows of a table: (columns, name columns, [(place, field values, names)])."""
    if fmt == "edd":
        header, rows = _read_edd(path, report)
    elif fmt == "csv":
        header, rows = _read_csv(path, report)
    elif fmt in ("votable", "fits"):
        header, rows = _read_astropy(path, fmt, report)
    else:
        raise TableReadError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")

    columns: dict[str, Column] = {}
    name_headers: list[str] = []
    for h in header:
        if h.strip().lower() in NAME_COLUMNS:
            name_headers.append(h)
            continue
        try:
            columns[h] = column(h)
        except KeyError:
            report.warnings.append(f"column {h!r} is not in the column registry; ignored")
    if "pgc" not in {c.name for c in columns.values()}:
        raise TableReadError("the table has no pgc column")
    if len({c.name for c in columns.values()}) != len(columns):
        raise TableReadError("the table names a column twice")

    zero_is_null = fmt == "edd"
    seen: dict[int, int] = {}
    out = []
    for place, raw in rows:
        report.rows_read += 1
        values: dict[str, Any] = {}
        bad = False
        for h, col in columns.items():
            try:
                values[col.name] = convert_value(col, raw.get(h), zero_is_null=zero_is_null)
            except ValueError as exc:
                report.add(place, h, str(exc))
                bad = True
        pgc = values.get("pgc")
        if not bad:
            if pgc is None or pgc <= 0:
                report.add(place, "pgc", "pgc must be a positive integer")
                bad = True
            elif pgc in seen:
                report.add(place, "pgc", f"duplicate pgc {pgc} (also on {seen[pgc]})")
                bad = True
            else:
                seen[pgc] = place
            bad = not _check_position(values, place, report) or bad
        names = []
        for h in name_headers:
            cell = raw.get(h)
            if cell:
                names.extend(n.strip() for n in str(cell).split(";") if n.strip())
        if not bad:
            out.append((place, values, names))
    return list(columns.values()), name_headers, out


def _check_names(rows: list[tuple[int, dict, list[str]]], report: ImportReport) -> None:
    wanted: dict[str, tuple[int, int]] = {}
    for place, values, names in rows:
        for n in names:
            key = normalise_name(n)
            other = wanted.get(key)
            if other and other[1] != values["pgc"]:
                report.add(place, "name", f"name {n!r} also given to pgc {other[1]} on line {other[0]}")
            wanted[key] = (place, values["pgc"])
    if not wanted:
        return
    taken = dict(GalaxyName.objects.filter(normalised__in=list(wanted)).values_list("normalised", "galaxy_id"))
    for key, (place, pgc) in wanted.items():
        if key in taken and taken[key] != pgc:
            report.add(place, "name", f"name {key} already belongs to PGC {taken[key]}")


def import_catalog(path: str | Path, fmt: str | None = None, *, partial: bool = False, progress: Progress | None = None) -> ImportReport:
    """Validate then upsert a catalog table by pgc. Raises ImportValidationError (nothing written)
    when the table has problems, unless partial=True (bad rows skipped and reported)."""
    path = Path(path)
    report = ImportReport(source=path.name)
    if not path.exists():
        report.add(None, None, f"no such file: {path}")
        raise ImportValidationError(report)
    fmt = (fmt or guess_format(path)).lower()
    try:
        columns, _, rows = read_catalog_table(path, fmt, report)
    except TableReadError as exc:
        report.add(None, None, str(exc))
        raise ImportValidationError(report) from exc
    _check_names(rows, report)
    if report.rows_read == 0 and not report.problems:
        report.add(None, None, "the table has a header but no rows")
    if report.problems and not partial:
        raise ImportValidationError(report)
    bad_places = {p.line for p in report.problems}
    rows = [r for r in rows if r[0] not in bad_places]
    report.skipped = report.rows_read - len(rows)
    if not rows:
        raise ImportValidationError(report)

    field_names = [c.name for c in columns]
    has_position = "ra" in field_names
    update_fields = [f for f in field_names if f != "pgc"]
    if has_position:
        update_fields = sorted(set(update_fields) | {"healpix", "gl", "gb", "sgl", "sgb"})
    update_fields.append("updated")

    total = len(rows)
    if progress:
        progress(0, total)
    with transaction.atomic():
        for start in range(0, total, WRITE_BATCH):
            batch = rows[start : start + WRITE_BATCH]
            dicts = [dict(values) for _, values, _ in batch]
            if has_position:
                fill_sky_fields(dicts)
            pgcs = [d["pgc"] for d in dicts]
            existing = set(Galaxy.objects.filter(pgc__in=pgcs).values_list("pgc", flat=True))
            objs = [Galaxy(**{k: v for k, v in d.items() if k in BY_NAME or k == "healpix"}) for d in dicts]
            Galaxy.objects.bulk_create(objs, update_conflicts=True, unique_fields=["pgc"], update_fields=update_fields)
            report.created += len(set(pgcs) - existing)
            report.updated += len(existing)
            names = [
                GalaxyName(galaxy_id=values["pgc"], name=display_name(n), normalised=normalise_name(n))
                for _, values, ns in batch
                for n in ns
            ]
            if names:
                GalaxyName.objects.bulk_create(names, ignore_conflicts=True)
            if progress:
                progress(min(start + WRITE_BATCH, total), total)
    return report
