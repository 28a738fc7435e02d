"""Import of catalog tables: EDD pipe tables, CSV, VOTable, FITS binary tables and OpenNGC.

`import_catalog` streams a table: the reader yields rows, which are validated in chunks of
CHUNK_ROWS (every problem named by line and column) and COPYed, with their HEALPix index and
any missing galactic/supergalactic coordinates computed per chunk, into a temporary staging
table. Duplicate pgc numbers and names that clash (inside the file or with other galaxies) are
found set-wise in SQL. Only then, when the whole table is clean (or with partial=True, which
leaves the bad rows out), one INSERT ... SELECT ... ON CONFLICT (pgc) DO UPDATE writes the
columns the table holds (others keep their values), and one INSERT the names. Everything runs
in one transaction: a refused, failed or killed import leaves nothing behind. Memory depends on
CHUNK_ROWS, not on the size of the file (text tables and FITS are read as streams; astropy
parses a VOTable document whole).

A reader is a function (path, report) -> (header, rows) where rows yields (place, {header: raw
cell}) with place the line number (1-based, the header is line 1) or row number; a reader may
report the rows it cannot split into cells itself (report.add + report.rows_read += 1).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from catalog.columns import Column, column
from catalog.conf import conf
from catalog.importers.copy import copy_text
from catalog.importers.report import ImportReport, ImportValidationError
from catalog.models import Galaxy, GalaxyName
from catalog.names import display_name, normalise_name
from catalog.sky import derived_coordinates, healpix_index

FORMATS = ("edd", "csv", "votable", "fits", "openngc")
NAME_COLUMNS = ("name", "names", "objname", "alias", "aliases")
CHUNK_ROWS = 20_000
MAX_STR = Galaxy._meta.get_field("type").max_length
MAX_NAME = GalaxyName._meta.get_field("name").max_length
BINARY_PROBE = 65536
READ_BLOCK = 1 << 20
SKY_KEYS = ("gl", "gb", "sgl", "sgb")
STAGE = "galcat_import_stage"
STAGE_NAMES = "galcat_import_names"
STAGE_PROBLEMS = "galcat_import_problems"
STAGE_SKY = "galcat_import_sky"  # healpix and derived coordinates of the located rows, by line

Progress = Callable[[int, int], None]
Reader = Callable[[Path, ImportReport], tuple[list[str], Iterator[tuple[int, dict]]]]


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
# Reading: each reader gives the header and yields (place, {header: raw value})
# ---------------------------------------------------------------------------------------------
_SURROGATE = re.compile("[\udc80-\udcff]")


class TextLines:
    """The decoded lines of a text file, read as a stream. A file with a NUL byte in its first
    64 KB is binary; later NUL bytes and bytes that are not UTF-8 (kept as lone surrogates) are
    counted in `flagged`, so that the reader names the line and column holding them."""

    def __init__(self, path: Path):
        self.path = path
        self.flagged = 0
        self.bytes_read = 0
        self.size = path.stat().st_size

    def __iter__(self) -> Iterator[str]:
        with self.path.open("rb") as f:
            head = f.read(BINARY_PROBE)
            if not head.strip() and len(head) < BINARY_PROBE:
                raise TableReadError("the file is empty")
            if b"\x00" in head:
                raise TableReadError("the file is binary, not a text table (it contains NUL bytes)")
            f.seek(3 if head.startswith(b"\xef\xbb\xbf") else 0)
            rest = b""
            while True:
                block = f.read(READ_BLOCK)
                data = rest + block
                cut = data.rfind(b"\n") + 1 if block else len(data)
                if not cut:
                    if not block:
                        return
                    rest = data
                    continue
                self.bytes_read += cut
                data, rest = data[:cut], data[cut:]
                text = data.decode("utf-8", "surrogateescape")
                if b"\x00" not in data and not _SURROGATE.search(text):
                    yield from io.StringIO(text, newline="\n")
                    continue
                for line in io.StringIO(text, newline="\n"):  # flag the lines holding bad bytes
                    if "\x00" in line or _SURROGATE.search(line):
                        self.flagged += 1
                    yield line


def cell_problems(cells: list[str], header: list[str]) -> list[tuple[str | None, str]]:
    """(column, message) for each cell holding a NUL byte or bytes that are not UTF-8."""
    out = []
    for j, cell in enumerate(cells):
        name = header[j] if j < len(header) else None
        if "\x00" in cell:
            out.append((name, "NUL byte in the cell (is the file binary or corrupt?)"))
        m = _SURROGATE.search(cell)
        if m:
            byte = ord(m.group()) - 0xDC00
            out.append((name, f"not UTF-8 text (undecodable byte 0x{byte:02x} at character {m.start() + 1} of the cell)"))
    return out


def report_cell_problems(report: ImportReport, line: int, cells: list[str], header: list[str]) -> bool:
    """Add a line's cell problems (NUL bytes, bytes that are not UTF-8) to the report; True when
    it had any."""
    problems = cell_problems(cells, header)
    for col, message in problems:
        report.add(line, col, message)
    return bool(problems)


def _text_header(cells: list[str]) -> list[str]:
    problems = cell_problems(cells, [f"#{j + 1}" for j in range(len(cells))])
    if problems:
        raise TableReadError(f"line 1 (header), column {problems[0][0]}: {problems[0][1]}")
    return [h.strip() for h in cells]


def _read_edd(path: Path, report: ImportReport) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    lines = TextLines(path)
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise TableReadError("the file is empty")
    header = _text_header(first.rstrip("\r\n").split("|"))
    if len(header) < 2:
        raise TableReadError("line 1: no '|'-separated header found (is this an EDD table?)")

    def rows():
        flagged = lines.flagged
        for i, line in enumerate(it, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cells = line.split("|")
            if lines.flagged != flagged:
                flagged = lines.flagged
                if report_cell_problems(report, i, cells, header):
                    report.rows_read += 1
                    continue
            if len(cells) != len(header):
                report.rows_read += 1
                report.add(i, None, f"expected {len(header)} columns, found {len(cells)} (truncated or malformed line)")
                continue
            yield i, {h: c.strip() for h, c in zip(header, cells)}

    return header, _SizedRows(rows(), lines)


def _read_csv(path: Path, report: ImportReport) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    lines = TextLines(path)
    dialect = csv.excel_tab if path.name.lower().endswith(".tsv") else csv.excel
    reader = csv.reader(iter(lines), dialect)
    try:
        header = _text_header(next(reader))
    except StopIteration as exc:
        raise TableReadError("the file is empty") from exc
    except csv.Error as exc:
        raise TableReadError(f"line 1: {exc}") from exc
    if len(header) < 2:
        raise TableReadError("line 1: expected a comma-separated header with at least two columns")

    def rows():
        flagged = lines.flagged
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                report.rows_read += 1
                report.add(reader.line_num, None, f"malformed CSV: {exc}")
                continue
            i = reader.line_num
            if not "".join(cells).strip():
                continue
            if lines.flagged != flagged:
                flagged = lines.flagged
                if report_cell_problems(report, i, cells, header):
                    report.rows_read += 1
                    continue
            if len(cells) != len(header):
                report.rows_read += 1
                report.add(i, None, f"expected {len(header)} fields, found {len(cells)}")
                continue
            yield i, dict(zip(header, cells))

    return header, _SizedRows(rows(), lines)


class _SizedRows:
    """A row iterator that also tells how far through its file it is (for progress)."""

    def __init__(self, rows: Iterator, lines: TextLines):
        self.rows, self.lines = rows, lines

    def __iter__(self):
        return self.rows

    def __next__(self):
        return next(self.rows)

    def fraction(self) -> float:
        return self.lines.bytes_read / self.lines.size if self.lines.size else 1.0


def _read_astropy(path: Path, fmt: str, report: ImportReport) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    import warnings

    from astropy.table import Table

    if path.stat().st_size == 0:
        raise TableReadError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "votable":
                table = Table.read(path, format="votable")
            else:  # memory-mapped: rows are read from the file as they are used
                table = Table.read(path, format="fits", memmap=True)
    except Exception as exc:  # astropy raises many kinds for garbage input
        raise TableReadError(f"cannot read as {fmt.upper()}: {exc}") from exc
    header = list(table.colnames)

    def value(v: Any) -> Any:
        if v is np.ma.masked or (hasattr(v, "mask") and np.all(v.mask)):
            return None
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, np.generic):
            v = v.item()
        if fmt == "fits" and isinstance(v, float) and math.isnan(v):
            return None  # a memory-mapped FITS table leaves its nulls (NaN) unmasked
        return v

    def rows():
        for start in range(0, len(table), CHUNK_ROWS):
            part = table[start : start + CHUNK_ROWS]
            for i, row in enumerate(part, start=start + 1):
                yield i, {h: value(row[h]) for h in header}

    return header, rows()


def _read_openngc(path: Path, report: ImportReport) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    from catalog.importers.openngc import read_openngc

    return read_openngc(path, report)


READERS: dict[str, Reader] = {
    "edd": _read_edd,
    "csv": _read_csv,
    "votable": lambda path, report: _read_astropy(path, "votable", report),
    "fits": lambda path, report: _read_astropy(path, "fits", report),
    "openngc": _read_openngc,
}


# ---------------------------------------------------------------------------------------------
# Conversion of cells
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
            raise ValueError(f"text of {len(text)} characters, longer than {MAX_STR}")
        if "\x00" in text:
            raise ValueError("NUL byte in the text")
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


_NOT_PLAIN = re.compile(r"[^0-9.eE+\- \x1f]")
_NUMERIC_TEXT = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _is_blank(raw: Any) -> bool:
    return raw is None or (raw.__class__ is str and not raw.strip())


def _numeric_column(col: Column, raws: list, zero_is_null: bool) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(values, null mask, {row index: problem}) of a numeric column chunk, vectorised; cells
    that numpy cannot read, or non-finite values, are converted one by one for the message."""
    n = len(raws)
    errors: dict[int, str] = {}
    try:
        values = np.array(raws, dtype=np.float64)
        null = np.isnan(values)
        if null.any():  # None reads as NaN; the text "nan" must stay a problem
            null &= np.fromiter((r is None for r in raws), bool, n)
    except (TypeError, ValueError):
        blank = np.fromiter((_is_blank(r) for r in raws), bool, n)
        try:
            values = np.array(["nan" if b else r for r, b in zip(raws, blank)], dtype=np.float64)
        except (TypeError, ValueError):
            values = None
        null = blank
    if values is not None:
        finite = np.isfinite(values)
        odd = ~finite & ~null
        if col.kind == "int":
            odd |= finite & ((values != np.trunc(values)) | (np.abs(values) > 2**31 - 1))
    if values is None or odd.any():
        values = np.full(n, np.nan)
        null = np.zeros(n, bool)
        for i, raw in enumerate(raws):
            try:
                v = convert_value(col, raw, zero_is_null=zero_is_null)
            except ValueError as exc:
                errors[i] = str(exc)
                continue
            if v is None:
                null[i] = True
            else:
                values[i] = v
    elif zero_is_null and col.zero_is_null:
        null = null | (values == 0.0)
    return values, null, errors


def _numeric_text(values: np.ndarray, null: np.ndarray, raws: list) -> list[str]:
    """COPY text of a numeric column: the cell's own text when it is a plain number (no
    reformatting), else the value's repr; NULL as \\N."""
    try:
        plain = not _NOT_PLAIN.search("\x1f".join(raws))
    except TypeError:  # not all text (VOTable, FITS)
        plain = False
    if plain:  # every cell is a number as PostgreSQL writes them (numpy read them all)
        out = list(raws)
        for i in np.flatnonzero(null).tolist():
            out[i] = "\\N"
        return out
    out = []
    for v, isnull, raw in zip(values.tolist(), null.tolist(), raws):
        if isnull:
            out.append("\\N")
        elif raw.__class__ is str and _NUMERIC_TEXT.match(raw):
            out.append(raw.strip())
        else:
            out.append(repr(v))
    return out


_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_SKY_ROW = np.dtype(
    [("fields", ">i2"), ("line_len", ">i4"), ("line", ">i4"), ("healpix_len", ">i4"), ("healpix", ">i8")]
    + [item for k in SKY_KEYS for item in ((f"{k}_len", ">i4"), (k, ">f8"))]
)


# ---------------------------------------------------------------------------------------------
# The staging table
# ---------------------------------------------------------------------------------------------
class _Stage:
    """Validated rows of one import in a temporary table, ready for one upsert."""

    def __init__(self, cursor, columns: dict[str, Column], name_headers: list[str], zero_is_null: bool):
        self.cur = cursor
        self.columns = columns  # header -> registry column
        self.name_headers = name_headers
        self.zero_is_null = zero_is_null
        self.fields = [c.name for c in columns.values()]
        self.has_position = "ra" in self.fields
        self.stage_fields = self.fields
        meta = Galaxy._meta
        defs = []
        for f in self.stage_fields:
            field = meta.get_field(f)
            kind = (
                "bigint"
                if f in ("pgc", "healpix")
                else (
                    "float8"
                    if field.get_internal_type() in ("FloatField", "IntegerField", "PositiveIntegerField")
                    else field.db_type(connection)
                )
            )
            defs.append(f"{connection.ops.quote_name(f)} {kind}")
        cursor.execute(f"DROP TABLE IF EXISTS {STAGE}, {STAGE_NAMES}, {STAGE_SKY}, {STAGE_PROBLEMS}")
        cursor.execute(
            f"CREATE TEMP TABLE {STAGE_SKY} (line integer, healpix bigint, gl float8, gb float8, sgl float8, sgb float8) ON COMMIT DROP"
        )
        cursor.execute(f"CREATE TEMP TABLE {STAGE} (line integer, valid boolean, {', '.join(defs)}) ON COMMIT DROP")
        cursor.execute(f"CREATE TEMP TABLE {STAGE_NAMES} (line integer, pgc bigint, name text, normalised text) ON COMMIT DROP")

    # -- one chunk ------------------------------------------------------------------------------
    def add(self, chunk: list[tuple[int, dict]], report: ImportReport) -> None:
        """Validate a chunk of rows, report its problems by line and column, COPY it."""
        n = len(chunk)
        report.rows_read += n
        places = [p for p, _ in chunk]
        problems: list[tuple[int, int, str | None, str]] = []
        bad = np.zeros(n, bool)
        texts: dict[str, list[str]] = {}
        numbers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for order, (h, col) in enumerate(self.columns.items()):
            raws = [raw.get(h) for _, raw in chunk]
            if col.kind in ("float", "int"):
                values, null, errors = _numeric_column(col, raws, self.zero_is_null)
                numbers[col.name] = (values, null)
                if col.name != "pgc":
                    texts[col.name] = _numeric_text(values, null, raws)
            else:
                errors = {}
                out = []
                for i, raw in enumerate(raws):
                    try:
                        v = convert_value(col, raw, zero_is_null=self.zero_is_null)
                    except ValueError as exc:
                        errors[i] = str(exc)
                        out.append("\\N")
                        continue
                    if col.kind == "str":
                        out.append(copy_text(v))
                    else:
                        out.append("\\N" if v is None else ("t" if v else "f"))
                texts[col.name] = out
            for i, message in errors.items():
                problems.append((places[i], order, h, message))
                bad[i] = True
        header_of = {c.name: h for h, c in self.columns.items()}
        pgc, pgc_null = numbers["pgc"]
        no_pgc = ~bad & (pgc_null | ~(pgc > 0))
        for i in np.flatnonzero(no_pgc):
            problems.append((places[i], 10_000, header_of["pgc"], "pgc must be a positive integer"))
        bad |= no_pgc
        valid = ~bad
        if self.has_position:
            valid &= self._check_positions(numbers, places, bad, header_of, problems)
        names = self._names(chunk, places, pgc, valid, problems) if self.name_headers else []
        self._sky(numbers, places, valid)
        problems.sort(key=lambda p: (p[0], p[1]))
        for place, _, h, message in problems:
            report.add(place, h, message)
        keep = np.flatnonzero(~bad).tolist()
        if not keep:
            return
        texts["pgc"] = [str(int(v)) for v in pgc.tolist()] if len(keep) == n else ["" for _ in range(n)]
        if len(keep) == n:
            cols = [texts[f] for f in self.stage_fields]
        else:
            for i in keep:
                texts["pgc"][i] = str(int(pgc[i]))
            cols = [[texts[f][i] for i in keep] for f in self.stage_fields]
        lines = [str(places[i]) for i in keep]
        flags = ["t" if valid[i] else "f" for i in keep]
        data = "\n".join(map("\t".join, zip(lines, flags, *cols))) + "\n"
        quoted = ", ".join(connection.ops.quote_name(f) for f in self.stage_fields)
        with self.cur.copy(f"COPY {STAGE} (line, valid, {quoted}) FROM STDIN") as copy:
            copy.write(data)
        if names:
            with self.cur.copy(f"COPY {STAGE_NAMES} (line, pgc, name, normalised) FROM STDIN") as copy:
                copy.write("".join(f"{line}\t{p}\t{copy_text(name)}\t{copy_text(key)}\n" for line, p, name, key in names))

    def _check_positions(self, numbers, places, bad, header_of, problems) -> np.ndarray:
        if "dec" not in numbers:
            return np.ones(len(places), bool)
        (ra, ra_null), (dec, dec_null) = numbers["ra"], numbers["dec"]
        ok = np.ones(len(places), bool)
        half = ~bad & (ra_null != dec_null)
        for i in np.flatnonzero(half):
            problems.append((places[i], 10_001, header_of["ra" if ra_null[i] else "dec"], "ra and dec must be given together"))
        located = ~bad & ~ra_null & ~dec_null
        bad_ra = located & ~((ra >= 0.0) & (ra < 360.0))
        bad_dec = located & ~((dec >= -90.0) & (dec <= 90.0))
        for i in np.flatnonzero(bad_ra):
            problems.append((places[i], 10_002, header_of["ra"], f"RA {ra[i]} outside [0, 360) deg"))
        for i in np.flatnonzero(bad_dec):
            problems.append((places[i], 10_003, header_of["dec"], f"Dec {dec[i]} outside [-90, 90] deg"))
        ok &= ~(half | bad_ra | bad_dec)
        return ok

    def _names(self, chunk, places, pgc, valid, problems) -> list[tuple[int, int, str, str]]:
        out = []
        for i in np.flatnonzero(valid):
            raw = chunk[i][1]
            row = []
            for h in self.name_headers:
                cell = raw.get(h)
                if not cell:
                    continue
                for n in str(cell).split(";"):
                    n = n.strip()
                    if not n:
                        continue
                    name, key = display_name(n), normalise_name(n)
                    if len(name) > MAX_NAME or len(key) > MAX_NAME:
                        problems.append((places[i], 20_000, h, f"name {n[:40]!r}... of {len(name)} characters, longer than {MAX_NAME}"))
                        valid[i] = False
                        row = []
                        break
                    if "\x00" in name:
                        problems.append((places[i], 20_000, h, "NUL byte in a name"))
                        valid[i] = False
                        row = []
                        break
                    row.append((places[i], int(pgc[i]), name, key))
                if not valid[i]:
                    break
            out.extend(row)
        return out

    def _sky(self, numbers, places, valid) -> None:
        """COPY the HEALPix index and galactic/supergalactic coordinates of the valid located
        rows, computed vectorised, in PostgreSQL's binary format (no per-value formatting)."""
        if not self.has_position:
            return
        (ra, ra_null), (dec, dec_null) = numbers["ra"], numbers["dec"]
        located = np.flatnonzero(valid & ~ra_null & ~dec_null)
        if not len(located):
            return
        derived = derived_coordinates(ra[located], dec[located])
        rows = np.empty(len(located), _SKY_ROW)
        rows["fields"] = 6
        rows["line_len"], rows["healpix_len"] = 4, 8
        rows["line"] = np.asarray(places)[located]
        rows["healpix"] = healpix_index(ra[located], dec[located])
        for k in SKY_KEYS:
            rows[f"{k}_len"] = 8
            rows[k] = derived[k]
        with self.cur.copy(f"COPY {STAGE_SKY} FROM STDIN (FORMAT binary)") as copy:
            copy.write(_BINARY_HEADER + rows.tobytes() + b"\xff\xff")

    # -- set-wise checks -------------------------------------------------------------------------
    def _problems(self, report: ImportReport, select: str) -> None:
        """Report the (line, col, message) rows of a query in line order and mark their rows invalid."""
        self.cur.execute(f"CREATE TEMP TABLE {STAGE_PROBLEMS} ON COMMIT DROP AS {select}")
        self.cur.execute(f"SELECT count(*) FROM {STAGE_PROBLEMS}")
        total = self.cur.fetchone()[0]
        if total:
            room = report.room()
            self.cur.execute(f"SELECT line, col, message FROM {STAGE_PROBLEMS} ORDER BY line LIMIT %s", [room])
            for line, col, message in self.cur.fetchall():
                report.add(line, col, message)
            report.more_problems += max(0, total - room)
            self.cur.execute(f"UPDATE {STAGE} s SET valid = false FROM {STAGE_PROBLEMS} p WHERE s.line = p.line AND s.valid")
        self.cur.execute(f"DROP TABLE {STAGE_PROBLEMS}")

    def check(self, report: ImportReport) -> None:
        """Duplicate pgc numbers, then names that clash inside the file or with other galaxies."""
        pgc_header = next(h for h, c in self.columns.items() if c.name == "pgc")
        self._problems(
            report,
            f"SELECT line, {_literal(pgc_header)}::text AS col, format('duplicate pgc %s (also on %s)', pgc, first) AS message "
            f"FROM (SELECT line, pgc, first_value(line) OVER (PARTITION BY pgc ORDER BY line) AS first FROM {STAGE}) d "
            "WHERE line <> first",
        )
        if not self.name_headers:
            return
        self._problems(
            report,
            "SELECT line, 'name'::text AS col, format('name %L also given to pgc %s on line %s', name, prev_pgc, prev_line) AS message "
            "FROM (SELECT n.line, n.name, n.pgc, lag(n.pgc) OVER w AS prev_pgc, lag(n.line) OVER w AS prev_line "
            f"      FROM {STAGE_NAMES} n JOIN {STAGE} s ON s.line = n.line AND s.valid "
            '      WINDOW w AS (PARTITION BY n.normalised COLLATE "C" ORDER BY n.line)) x '
            "WHERE prev_pgc IS NOT NULL AND prev_pgc <> pgc "
            "UNION ALL "
            "SELECT line, 'name', format('name %s already belongs to PGC %s', normalised, owner) FROM ("
            "  SELECT DISTINCT ON (n.normalised) n.line, n.normalised, g.galaxy_id AS owner "
            f"  FROM {STAGE_NAMES} n JOIN {STAGE} s ON s.line = n.line AND s.valid "
            f"  JOIN {GalaxyName._meta.db_table} g ON g.normalised = n.normalised AND g.galaxy_id <> n.pgc "
            "  ORDER BY n.normalised, n.line DESC) t",
        )

    # -- the writes -------------------------------------------------------------------------------
    def valid_rows(self) -> int:
        self.cur.execute(f"SELECT count(*) FROM {STAGE} WHERE valid")
        return self.cur.fetchone()[0]

    def upsert(self) -> tuple[int, int]:
        """Insert or update the valid rows by pgc, writing only the staged columns; (created, updated)."""
        qn = connection.ops.quote_name
        now = timezone.now()
        insert_cols = list(self.stage_fields)
        select = [f"s.{qn(f)}" for f in self.stage_fields]
        if self.has_position:
            for f in SKY_KEYS:
                if f in insert_cols:
                    select[insert_cols.index(f)] = f"COALESCE(s.{f}, k.{f})"
            added = ["healpix"] + [k for k in SKY_KEYS if k not in insert_cols]
            insert_cols += added
            select += [f"k.{f}" for f in added]
        written = list(insert_cols)
        params: list[Any] = []
        for field in Galaxy._meta.concrete_fields:
            if field.column in insert_cols or field.null:
                continue
            insert_cols.append(field.column)
            select.append("%s")
            params.append(now if field.name in ("created", "updated") else field.get_default())
        updates = [f"{qn(f)} = EXCLUDED.{qn(f)}" for f in written if f != "pgc"] + ['"updated" = EXCLUDED."updated"']
        self.cur.execute(
            f"WITH up AS (INSERT INTO {Galaxy._meta.db_table} ({', '.join(qn(c) for c in insert_cols)}) "
            f"SELECT {', '.join(select)} FROM {STAGE} s LEFT JOIN {STAGE_SKY} k ON k.line = s.line WHERE s.valid ORDER BY s.pgc "
            f"ON CONFLICT (pgc) DO UPDATE SET {', '.join(updates)} RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
            params,
        )
        created, updated = self.cur.fetchone()
        if self.name_headers:
            self.cur.execute(
                f"INSERT INTO {GalaxyName._meta.db_table} (galaxy_id, name, normalised) "
                f'SELECT DISTINCT ON (n.normalised COLLATE "C") n.pgc, n.name, n.normalised FROM {STAGE_NAMES} n '
                f'JOIN {STAGE} s ON s.line = n.line AND s.valid ORDER BY n.normalised COLLATE "C", n.line '
                "ON CONFLICT (normalised) DO NOTHING"
            )
        return created, updated

    def drop(self) -> None:
        self.cur.execute(f"DROP TABLE IF EXISTS {STAGE}, {STAGE_NAMES}, {STAGE_SKY}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# The import
# ---------------------------------------------------------------------------------------------
def open_table(path: Path, fmt: str, report: ImportReport) -> tuple[dict[str, Column], list[str], Iterator[tuple[int, dict]]]:
    """(header -> registry column, name columns, rows) of a table; TableReadError when unreadable."""
    reader = READERS.get(fmt)
    if reader is None:
        raise TableReadError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    header, rows = reader(path, report)
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
    names = {c.name for c in columns.values()}
    if "pgc" not in names:
        raise TableReadError("the table has no pgc column")
    if len(names) != len(columns):
        raise TableReadError("the table names a column twice")
    if ("ra" in names) != ("dec" in names):
        raise TableReadError("the table has ra without dec or dec without ra; positions need both")
    return columns, name_headers, rows


def import_catalog(path: str | Path, fmt: str | None = None, *, partial: bool = False, progress: Progress | None = None) -> ImportReport:
    """Validate then upsert a catalog table by pgc, streaming (see the module's docstring).
    Raises ImportValidationError (nothing written) when the table has problems, unless
    partial=True (bad rows skipped and reported)."""
    path = Path(path)
    report = ImportReport(source=path.name)
    if not path.exists():
        report.add(None, None, f"no such file: {path}")
        raise ImportValidationError(report)
    size, cap = path.stat().st_size, conf.TABLE_MAX_BYTES
    if size > cap:
        report.add(None, None, f"the file has {size:,} bytes, more than the limit of {cap:,} bytes (GALCAT_TABLE_MAX_BYTES)")
        raise ImportValidationError(report)
    fmt = (fmt or guess_format(path)).lower()
    try:
        with transaction.atomic(), connection.cursor() as cur:
            columns, name_headers, rows = open_table(path, fmt, report)
            stage = _Stage(cur, columns, name_headers, zero_is_null=fmt == "edd")
            fraction = getattr(rows, "fraction", None)
            iterator = iter(rows)
            while chunk := list(islice(iterator, CHUNK_ROWS)):
                stage.add(chunk, report)
                if progress:
                    done = report.rows_read
                    progress(done, max(done, int(done / fraction())) if fraction and fraction() > 0 else done)
            stage.check(report)
            report.problems.sort(key=lambda p: p.line or 0)
            if report.rows_read == 0 and report.ok:
                report.add(None, None, "the table has a header but no rows")
            if not report.ok and not partial:
                raise ImportValidationError(report)
            written = stage.valid_rows()
            report.skipped = report.rows_read - written
            if not written:
                raise ImportValidationError(report)
            report.created, report.updated = stage.upsert()
            stage.drop()
    except TableReadError as exc:
        report.add(None, None, str(exc))
        raise ImportValidationError(report) from exc
    if progress:
        progress(written, written)
    return report
