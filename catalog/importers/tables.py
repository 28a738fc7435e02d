"""Import of catalog tables: EDD pipe tables, CSV, VOTable, FITS binary tables and OpenNGC.

`import_catalog` streams a table: the reader yields chunks of CHUNK_ROWS rows by columns,
which are validated vectorised (every problem named by line and column) and COPYed in
PostgreSQL's binary format, with their HEALPix index and galactic/supergalactic coordinates
computed per chunk, into a temporary staging table; a second thread runs the COPY of one chunk
while the next is read, and the blocks of lines of a big text table (at least PREPARE_MIN_BYTES)
are split and validated in processes forked for the import (see _preparing). Duplicate pgc
numbers and names that clash (inside the file or with other galaxies) are found set-wise in
SQL, with the galaxy and name tables locked against other writers. Only then, when the whole
table is clean (or with partial=True, which leaves the bad rows out), one MERGE from the stage
writes the columns the table holds into the galaxies that exist (others keep their values)
and adds the new ones, and one INSERT the names; a write of at least a fifth of the galaxies
(BULK_SHARE) rebuilds their secondary indexes instead of maintaining them row by row (names:
a write that at least doubles them, their unique and primary keys too; the names' foreign key is not checked again where the role may
turn its checks off, as each name belongs to a galaxy just written). The sky cell counts of
the new rows are kept by the client as it stages them. Everything runs in one transaction: a
refused, failed or killed import leaves nothing behind. Memory depends on CHUNK_ROWS, not on
the size of the file (astropy parses a VOTable in BINARY serialisation whole; TABLEDATA, text
tables and FITS are read as streams).

A reader is a function (path, report) -> (header, chunks) where chunks yields (places, columns)
of at most CHUNK_ROWS rows: places the line numbers (1-based, the header is line 1) or row
numbers, columns one list of raw cells per header column. A reader reports the rows it cannot
split into cells itself (report.add + report.rows_read += 1). Text tables are split a block of
lines at a time (the csv module only where quotes need it), VOTable TABLEDATA is parsed
incrementally, FITS tables are memory-mapped and read by columns.
"""

from __future__ import annotations

import csv
import ctypes
import gc
import io
import itertools
import math
import multiprocessing
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from catalog.columns import Column, column
from catalog.conf import conf
from catalog.importers.copy import copy_text
from catalog.importers.report import ImportReport, ImportValidationError
from catalog.models import Galaxy, GalaxyName, SkyCell
from catalog.names import display_name, normalise_name
from catalog.sky import SKY_CELL_DEPTH, SKY_CELL_SHIFT, derived_coordinates, healpix_index

FORMATS = ("edd", "csv", "votable", "fits", "openngc")
NAME_COLUMNS = ("name", "names", "objname", "alias", "aliases")
CHUNK_ROWS = 20_000
BULK_MIN_ROWS = 50_000  # a write of this many rows or more may rebuild secondary indexes
BULK_SHARE = 0.2  # ... when it writes at least this share of the galaxies there are (see _without_secondary_indexes)
NAMES_BULK_SHARE = 1.0  # ... or stages at least as many names as there are (most of them already there in a re-import)
MAX_STR = Galaxy._meta.get_field("type").max_length
MAX_NAME = GalaxyName._meta.get_field("name").max_length
BINARY_PROBE = 65536
READ_BLOCK = 1 << 20
SKY_KEYS = ("gl", "gb", "sgl", "sgb")
STAGE = "galcat_import_stage"
STAGE_NAMES = "galcat_import_names"
STAGE_PROBLEMS = "galcat_import_problems"
STAGE_CELLS = "galcat_import_cells"
DENSE_RANGE = 2  # hash the galaxies of the staged pgc range when it spans at most this many times the staged rows (see upsert)
PREPARE_PROCESSES = 4  # most processes that validate chunks beside the one reading them (see _preparing) ...
PREPARE_MIN_BYTES = 16 << 20  # ... for files of at least this size
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends (see _use_worker)
WORK_MEM = "256MB"  # work_mem of an import: the checks' and writes' sorts and hashes of a million staged rows in memory

Progress = Callable[[int, int], None]
Chunk = tuple[list[int], list[list]]  # (places, one list of raw cells per header column)
Reader = Callable[[Path, ImportReport], tuple[list[str], Iterator[Chunk]]]


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
# Reading: each reader gives the header and yields chunks (places, one list of raw cells per
# header column) of at most CHUNK_ROWS rows
# ---------------------------------------------------------------------------------------------
_SURROGATE = re.compile("[\udc80-\udcff]")
_SPACE_BUT_NEWLINE = b"\t\x0b\x0c\r\x1c\x1d\x1e\x1f "  # the ASCII characters but \n that \s matches in str
_BAD_TEXT = re.compile("[\x00\udc80-\udcff]")


class TextLines:
    """The decoded text of a file, read as a stream of blocks of whole lines (`blocks`) or of
    lines (iteration). A file with a NUL byte in its first 64 KB is binary; later NUL bytes and
    bytes that are not UTF-8 (kept as lone surrogates) are flagged: a block holding any comes
    with bad=True, and iterating counts the lines holding them in `flagged`, so that the reader
    names the line and column holding them."""

    def __init__(self, path: Path):
        self.path = path
        self.flagged = 0
        self.bytes_read = 0
        self.size = path.stat().st_size

    def blocks(self) -> Iterator[tuple[str, bool]]:
        """(text, bad) of blocks of about READ_BLOCK bytes, each ending at a line end (but the last)."""
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
                try:
                    text, undecodable = data.decode("utf-8"), False
                except UnicodeDecodeError:  # the bytes that are not UTF-8 become lone surrogates
                    text, undecodable = data.decode("utf-8", "surrogateescape"), True
                yield text, undecodable or b"\x00" in data

    def __iter__(self) -> Iterator[str]:
        for text, bad in self.blocks():
            if not bad:
                yield from io.StringIO(text, newline="\n")
                continue
            for line in io.StringIO(text, newline="\n"):  # flag the lines holding bad bytes
                if _BAD_TEXT.search(line):
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


class _Chunker:
    """Rows collected from a reader, by columns or one at a time, handed out as chunks (places,
    columns) of CHUNK_ROWS rows."""

    def __init__(self, width: int):
        self.places: list[int] = []
        self.columns: list[list] = [[] for _ in range(width)]
        self.pending_places: list[int] = []
        self.pending: list = []

    def add_columns(self, places, columns) -> Iterator[Chunk]:
        self._flush()
        self.places.extend(places)
        for mine, more in zip(self.columns, columns):
            mine.extend(more)
        while len(self.places) >= CHUNK_ROWS:
            yield self._take(CHUNK_ROWS)

    def add_row(self, place: int, row: list) -> Iterator[Chunk]:
        self.pending_places.append(place)
        self.pending.append(row)
        if len(self.pending) >= CHUNK_ROWS:
            yield from self.add_columns((), ())

    def rest(self) -> Iterator[Chunk]:
        self._flush()
        while self.places:
            yield self._take(CHUNK_ROWS)

    def _flush(self) -> None:
        if self.pending:
            self.places.extend(self.pending_places)
            for mine, more in zip(self.columns, zip(*self.pending)):
                mine.extend(more)
            self.pending_places, self.pending = [], []

    def _take(self, n: int) -> Chunk:
        chunk = self.places[:n], [c[:n] for c in self.columns]
        del self.places[:n]
        for c in self.columns:
            del c[:n]
        return chunk


def _dict_chunks(header: list[str], rows: Iterator[tuple[int, dict]]) -> Iterator[Chunk]:
    """Chunks of a reader that yields (place, {header: raw cell}) rows (OpenNGC)."""
    chunker = _Chunker(len(header))
    for place, row in rows:
        yield from chunker.add_row(place, [row.get(h) for h in header])
    yield from chunker.rest()


class _Lines(NamedTuple):
    """A block of unquoted lines of a text table, from line `first` on."""

    text: str
    bad: bool  # whether it holds NUL bytes or bytes that are not UTF-8
    first: int


class _Splitter:
    """Lines of a text table into cells, a block of unquoted lines at a time (see _TextTable)."""

    def __init__(self, sep: str, header: list[str], csv: bool):
        self.sep, self.header, self.csv = sep, header, csv
        self.blank = re.compile(rf"^(?:[^\S\n]|{re.escape(sep)})*$" if csv else r"^[^\S\n]*$", re.M)
        self.blank_bytes = _SPACE_BUT_NEWLINE + (sep.encode() if csv else b"")  # what a blank ASCII line holds

    def any_blank(self, text: str, data: bytes) -> bool:
        """Whether a block of lines whose every line has its separators (text and its UTF-8
        bytes) has a blank line: only whitespace (and separators in a CSV). In ASCII, a line is
        blank when nothing is left of it once those bytes are deleted (one bytes.translate, 4
        times faster than the regular expression, which decides for other text)."""
        if not data.isascii():
            return self.blank.search(text, 0, max(0, len(text) - 1)) is not None
        kept = data.translate(None, self.blank_bytes) + (b"" if data.endswith(b"\n") else b"\n")
        return kept.startswith(b"\n") or b"\n\n" in kept

    def split(self, text: str, bad: bool, first: int, report: ImportReport) -> tuple[list[int] | range, list[list[str]], int]:
        """(places, columns, next line) of a block of unquoted lines starting at line `first`:
        blank lines left out, lines with the wrong number of cells or with bad bytes reported.
        A clean block (every line with its cells, none blank) is split in one go."""
        sep, width = self.sep, len(self.header)
        data = text.encode("utf-8", "surrogateescape")
        codes = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(codes == 10)
        if not text.endswith("\n"):
            ends = np.append(ends, len(codes))
        n, end = len(ends), first + len(ends)
        per_line = np.diff(np.searchsorted(np.flatnonzero(codes == ord(sep)), ends), prepend=0)
        if not bad and (per_line == width - 1).all() and not self.any_blank(text, data):
            cells = text.replace("\n", sep).split(sep)
            return range(first, end), [cells[j : n * width : width] for j in range(width)], end
        places, kept = [], []
        for i, ln in zip(range(first, end), text.split("\n")):
            if self.blank.match(ln):
                continue
            cells = ln.split(sep)
            if bad and _BAD_TEXT.search(ln) and report_cell_problems(report, i, cells, self.header):
                report.rows_read += 1
                continue
            if len(cells) != width:
                report.rows_read += 1
                if self.csv:
                    report.add(i, None, f"expected {width} fields, found {len(cells)}")
                else:
                    report.add(i, None, f"expected {width} columns, found {len(cells)} (truncated or malformed line)")
                continue
            places.append(i)
            kept.append(cells)
        return places, [list(c) for c in zip(*kept)] if kept else [[] for _ in range(width)], end


class _TextTable:
    """Rows of an EDD pipe table (sep '|') or a CSV/TSV (a csv dialect). Blocks of lines without
    quotes are split with str.split, whole; from the first block that needs the csv module
    (quotes, a lone carriage return, a field over the csv limit) on, rows go through csv.reader."""

    def __init__(self, path: Path, sep: str, dialect: type[csv.Dialect] | None):
        self.lines = TextLines(path)
        self.sep, self.dialect = sep, dialect
        self.blocks = self.lines.blocks()
        text, self.first_bad = next(self.blocks)
        head, _, self.first_rest = text.partition("\n")
        head = head.rstrip("\r")
        if dialect is None:
            self.header = _text_header(head.split(sep))
            if len(self.header) < 2:
                raise TableReadError("line 1: no '|'-separated header found (is this an EDD table?)")
        else:
            try:
                cells = next(csv.reader([head], dialect), [])
            except csv.Error as exc:
                raise TableReadError(f"line 1: {exc}") from exc
            self.header = _text_header(cells)
            if len(self.header) < 2:
                raise TableReadError("line 1: expected a comma-separated header with at least two columns")
        self.splitter = _Splitter(sep, self.header, dialect is not None)

    def fraction(self) -> float:
        return self.lines.bytes_read / self.lines.size if self.lines.size else 1.0

    def chunks(self, report: ImportReport, as_lines: bool = False) -> Iterator[Chunk | _Lines]:
        """Chunks of CHUNK_ROWS rows; with as_lines=True, each block of unquoted lines as _Lines,
        to be split by self.splitter elsewhere (then chunks of CHUNK_ROWS rows from the csv
        module's rows)."""
        chunker = _Chunker(len(self.header))
        line = 2
        text, bad = self.first_rest, self.first_bad
        blocks = itertools.chain([(text, bad)], self.blocks)
        for text, bad in blocks:
            if not text:  # the first block held the header only
                continue
            if "\r" in text:
                if text.count("\r") != text.count("\r\n") and self.dialect:
                    break
                text = text.replace("\r\n", "\n")
            if self.dialect and (
                '"' in text or (len(text) > csv.field_size_limit() and max(map(len, text.split("\n"))) > csv.field_size_limit())
            ):
                break
            if as_lines:
                yield _Lines(text, bad, line)
                line += text.count("\n") + (not text.endswith("\n"))
                continue
            places, columns, line = self.splitter.split(text, bad, line, report)
            yield from chunker.add_columns(places, columns)
        else:
            yield from chunker.rest()
            return
        # the csv module from here on: this block's lines, then the next blocks'
        for place, cells in self._csv_rows(itertools.chain([(text, bad)], blocks), line - 1, report):
            yield from chunker.add_row(place, cells)
        yield from chunker.rest()

    def _csv_rows(self, blocks: Iterator[tuple[str, bool]], before: int, report: ImportReport) -> Iterator[tuple[int, list[str]]]:
        flagged = [0]

        def lines():
            for text, bad in blocks:
                for ln in io.StringIO(text, newline="\n"):
                    if bad and _BAD_TEXT.search(ln):
                        flagged[0] += 1
                    yield ln

        reader = csv.reader(lines(), self.dialect)
        seen, width = 0, len(self.header)
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                report.rows_read += 1
                report.add(before + reader.line_num, None, f"malformed CSV: {exc}")
                continue
            i = before + reader.line_num
            if not "".join(cells).strip():
                continue
            if flagged[0] != seen:
                seen = flagged[0]
                if report_cell_problems(report, i, cells, self.header):
                    report.rows_read += 1
                    continue
            if len(cells) != width:
                report.rows_read += 1
                report.add(i, None, f"expected {width} fields, found {len(cells)}")
                continue
            yield i, cells


class _Chunks:
    """A reader's chunk iterator that also tells how far through its file it is (for progress)
    and, for a text table, how to read it as blocks of lines (see _TextTable.chunks)."""

    def __init__(self, chunks: Iterator[Chunk], fraction: Callable[[], float] | None = None, table: _TextTable | None = None):
        self.chunks, self.fraction, self.table = chunks, fraction, table

    def __iter__(self):
        return self.chunks


def _read_edd(path: Path, report: ImportReport) -> tuple[list[str], _Chunks]:
    table = _TextTable(path, "|", None)
    return table.header, _Chunks(table.chunks(report), table.fraction, table)


def _read_csv(path: Path, report: ImportReport) -> tuple[list[str], _Chunks]:
    tsv = path.name.lower().endswith(".tsv")
    table = _TextTable(path, "\t" if tsv else ",", csv.excel_tab if tsv else csv.excel)
    return table.header, _Chunks(table.chunks(report), table.fraction, table)


def _astropy_cells(col: Any, nan_is_null: bool) -> list:
    """The raw cells of an astropy column: numbers and str, None where masked (or NaN where
    NaN means null)."""
    values = np.asarray(getattr(col, "data", col))
    out = [v.decode("utf-8", "replace") for v in values.tolist()] if values.dtype.kind == "S" else values.tolist()
    null = np.zeros(len(out), bool)
    mask = np.asarray(getattr(col, "mask", False))
    if mask.ndim:
        null |= mask.reshape(len(out), -1).all(axis=1)
    if nan_is_null and values.dtype.kind == "f" and values.ndim == 1:
        null |= np.isnan(values)
    for i in np.flatnonzero(null).tolist():
        out[i] = None
    return out


def _astropy_table(path: Path, fmt: str) -> Any:
    import warnings

    from astropy.table import Table

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "votable":
                return Table.read(path, format="votable")
            return Table.read(path, format="fits", memmap=True)  # rows are read from the file as they are used
    except Exception as exc:  # astropy raises many kinds for garbage input
        raise TableReadError(f"cannot read as {fmt.upper()}: {exc}") from exc


def _table_chunks(table: Any, header: list[str], nan_is_null: bool) -> Iterator[Chunk]:
    for start in range(0, len(table), CHUNK_ROWS):
        part = table[start : start + CHUNK_ROWS]
        yield list(range(start + 1, start + 1 + len(part))), [_astropy_cells(part[h], nan_is_null) for h in header]


def _read_fits(path: Path, report: ImportReport) -> tuple[list[str], Iterator[Chunk]]:
    if path.stat().st_size == 0:
        raise TableReadError("the file is empty")
    table = _astropy_table(path, "fits")
    header = list(table.colnames)
    return header, _table_chunks(table, header, nan_is_null=True)  # a memory-mapped table leaves its nulls (NaN) unmasked


def _read_votable(path: Path, report: ImportReport) -> tuple[list[str], Iterator[Chunk]]:
    """The first TABLE of a VOTable. TABLEDATA (the XML encoding) is streamed with astropy's
    incremental XML parser; a BINARY, BINARY2 or FITS serialisation is read by astropy whole."""
    from astropy.utils.xml.iterparser import get_xml_iterator

    if path.stat().st_size == 0:
        raise TableReadError("the file is empty")

    def events():
        with get_xml_iterator(str(path)) as it:
            yield from it

    stream = events()
    fields: list[dict] = []
    encoding = None
    try:
        for start, tag, data, _ in stream:
            if not start:
                if tag == "TABLE":
                    break
                continue
            if tag == "FIELD":
                fields.append({"name": data.get("name") or data.get("ID") or f"col{len(fields) + 1}", "datatype": data.get("datatype", "")})
            elif tag == "VALUES" and fields and "null" in data:
                fields[-1]["null"] = data["null"]
            elif tag in ("TABLEDATA", "BINARY", "BINARY2", "FITS"):
                encoding = tag
                break
    except Exception as exc:  # expat and astropy raise many kinds for garbage input
        raise TableReadError(f"cannot read as VOTABLE: {exc}") from exc
    if not fields:
        raise TableReadError("cannot read as VOTABLE: no TABLE with FIELDs found")
    if encoding != "TABLEDATA":
        stream.close()
        table = _astropy_table(path, "votable")
        header = list(table.colnames)
        return header, _table_chunks(table, header, nan_is_null=False)
    header = [f["name"] for f in fields]
    nulls = [f.get("null") for f in fields]
    nan_null = [f["datatype"] in ("float", "double", "floatComplex", "doubleComplex") for f in fields]

    def chunks() -> Iterator[Chunk]:
        chunker = _Chunker(len(header))
        row: list = []
        place = 0
        try:
            for start, tag, data, _ in stream:
                if start:
                    if tag == "TR":
                        row = []
                    continue
                if tag == "TD":
                    j = len(row)
                    if j < len(header) and (data == nulls[j] or (nan_null[j] and data.strip().lower() == "nan")):
                        data = None
                    row.append(data)
                elif tag == "TR":
                    place += 1
                    if len(row) != len(header):
                        report.rows_read += 1
                        report.add(place, None, f"expected {len(header)} cells, found {len(row)}")
                        continue
                    yield from chunker.add_row(place, row)
                elif tag in ("TABLEDATA", "TABLE"):
                    break
        except TableReadError:
            raise
        except Exception as exc:
            raise TableReadError(f"cannot read as VOTABLE (row {place + 1}): {exc}") from exc
        finally:
            stream.close()
        yield from chunker.rest()

    return header, chunks()


def _read_openngc(path: Path, report: ImportReport) -> tuple[list[str], Iterator[Chunk]]:
    from catalog.importers.openngc import read_openngc

    header, rows = read_openngc(path, report)
    return header, _dict_chunks(header, rows)


READERS: dict[str, Reader] = {
    "edd": _read_edd,
    "csv": _read_csv,
    "votable": _read_votable,
    "fits": _read_fits,
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


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_SIMPLE_NAME = re.compile(r"([A-Za-z]+) ?0*([0-9]+)")


_SIMPLE_NAMES = re.compile(r"^([A-Za-z]+) ?0*([0-9]+)$", re.M)  # one _SIMPLE_NAME per line
_DISPLAY_NAMES = re.compile(r"(?:[A-Z]+ [1-9][0-9]*\n)*[A-Z]+ [1-9][0-9]*")  # lines of "NGC 4565": simple names as displayed
_SIMPLE_NAMES_PADDED = re.compile(r"^[^\S\n]*([A-Za-z]+) ?0*([0-9]+)[^\S\n]*$", re.M)  # the same amid whitespace (half as fast)


def _simple_names(cells: list) -> tuple[list[str], list[str]] | None:
    """(display names, lookup keys) of cells that are each one simple name (see _name_and_key),
    found in one pass over their text; None when any cell is not (empty, several names, another
    kind of name, or too long)."""
    try:
        text = "\n".join(cells)
    except TypeError:  # not all text (VOTable, FITS)
        return None
    if not cells or ";" in text or text.count("\n") != len(cells) - 1:
        return None
    if _DISPLAY_NAMES.fullmatch(text):  # written as their display names already: the keys drop the space
        if max(map(len, cells)) > MAX_NAME:
            return None
        return list(cells), text.replace(" ", "").split("\n")
    found = _SIMPLE_NAMES.findall(text)
    if len(found) != len(cells):
        found = _SIMPLE_NAMES_PADDED.findall(text)
        if len(found) != len(cells):
            return None
    prefixes = [prefix.upper() for prefix, _ in found]
    names = [f"{prefix} {number}" for prefix, (_, number) in zip(prefixes, found)]
    if max(map(len, names)) > MAX_NAME:
        return None
    return names, [prefix + number for prefix, (_, number) in zip(prefixes, found)]


def _name_and_key(name: str) -> tuple[str, str]:
    """(display_name, normalise_name) of a stripped name; names like "NGC 4565" or "ugc07772"
    (the most common kind) without the two general functions' regular expressions."""
    m = _SIMPLE_NAME.fullmatch(name)
    if m:
        prefix, number = m.group(1).upper(), int(m.group(2))
        return f"{prefix} {number}", f"{prefix}{number}"
    return display_name(name), normalise_name(name)


def _is_blank(raw: Any) -> bool:
    return raw is None or (raw.__class__ is str and not raw.strip())


def _numeric_column(col: Column, raws: list, zero_is_null: bool) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(values, null mask, {row index: problem}) of a numeric column chunk, vectorised; cells
    that numpy cannot read, or non-finite values, are converted one by one for the message."""
    n = len(raws)
    errors: dict[int, str] = {}
    try:
        values = np.fromiter(map(float, raws), np.float64, n)
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


_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_BINARY_TRAILER = b"\xff\xff"
_BINARY_NULL = b"\xff\xff\xff\xff"
_BINARY_BOOL = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00", None: _BINARY_NULL}
NULL_HEALPIX = -1  # the stage's HEALPix index of a row without a position (NaN stands for NULL in its float columns)


def _binary_text(text: str) -> bytes:
    """A str as a field of PostgreSQL's binary COPY format."""
    data = text.encode("utf-8", "surrogateescape")
    return len(data).to_bytes(4, "big") + data


# ---------------------------------------------------------------------------------------------
# The staging table
# ---------------------------------------------------------------------------------------------
class _Prepared(NamedTuple):
    """A chunk validated by _Preparer.prepare: what the stage takes from it (_Stage.add)."""

    rows: int  # rows of the chunk, bad ones included
    problems: list[tuple[int, str | None, str]]  # (line, column, message), in line order
    copies: list[tuple[str, bytes | str]]  # (COPY statement, data) that stage the chunk's rows
    valid: int  # staged rows to write
    names: int  # staged names
    cells: np.ndarray  # sky cells of the staged rows to write that have a position ...
    counts: np.ndarray  # ... and how many of them are in each
    pgc: tuple[int, int, int, int] | None  # least, greatest, first and last staged pgc (None: none staged)
    increasing: bool  # whether the staged pgc numbers increase line by line
    invalid: bool  # whether some staged row is not to be written


class _Preparer:
    """Validation of chunks into the stage's binary COPY data, with no connection and no state
    but its settings, so that it may run in another process (see _preparing).

    Rows are COPYed in PostgreSQL's binary format: the fixed-width columns (line, valid, pgc,
    every numeric column as float8 with NaN for NULL, and, for located tables, the HEALPix
    index and derived coordinates computed from ra/dec) as one numpy record per row, then the
    text and boolean columns, encoded per cell. No number is formatted or parsed as text."""

    def __init__(self, header: list[str], columns: dict[str, Column], name_headers: list[str], zero_is_null: bool):
        self.index = {h: j for j, h in enumerate(header)}
        self.columns = columns  # header -> registry column
        self.name_headers = name_headers
        self.zero_is_null = zero_is_null
        self.fields = [c.name for c in columns.values()]
        self.has_position = "ra" in self.fields
        self.numeric = [c.name for c in columns.values() if c.kind in ("float", "int") and c.name != "pgc"]
        self.variable = [(c.name, "text" if c.kind == "str" else "boolean") for c in columns.values() if c.kind not in ("float", "int")]
        fixed = [("line", ">i4", "integer"), ("valid", "?", "boolean"), ("pgc", ">i8", "bigint")]
        fixed += [(f, ">f8", "float8") for f in self.numeric]
        if self.has_position:
            fixed += [("sky_healpix", ">i8", "bigint")] + [(f"sky_{k}", ">f8", "float8") for k in SKY_KEYS]
        self.fixed = [(name, np.dtype(code).itemsize) for name, code, _ in fixed]
        self.row_type = np.dtype([("fields", ">i2")] + [item for name, code, _ in fixed for item in ((f"{name}:len", ">i4"), (name, code))])
        qn = connection.ops.quote_name
        self.definitions = [(name, kind) for name, _, kind in fixed] + self.variable  # the stage's columns
        self.copy_sql = f"COPY {STAGE} ({', '.join(qn(name) for name, _ in self.definitions)}) FROM STDIN (FORMAT binary)"
        self.template = np.empty(0, self.row_type)

    def prepare(self, places: list[int], cells: list[list]) -> _Prepared:
        """Validate a chunk of rows (cells: one list per header column): its problems by line and
        column, the COPY statements and data that stage it, and what the stage counts of it."""
        n = len(places)
        problems: list[tuple[int, int, str | None, str]] = []
        bad = np.zeros(n, bool)
        numbers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        encoded: dict[str, list[bytes]] = {}  # text and boolean columns as binary COPY fields
        for order, (h, col) in enumerate(self.columns.items()):
            raws = cells[self.index[h]]
            if col.kind in ("float", "int"):
                values, null, errors = _numeric_column(col, raws, self.zero_is_null)
                numbers[col.name] = (values, null)
            else:
                errors = {}
                out = []
                for i, raw in enumerate(raws):
                    try:
                        v = convert_value(col, raw, zero_is_null=self.zero_is_null)
                    except ValueError as exc:
                        errors[i] = str(exc)
                        v = None
                    out.append(_binary_text(v) if v.__class__ is str else _BINARY_BOOL[v])
                encoded[col.name] = out
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
        names = self._names(cells, places, pgc, valid, problems) if self.name_headers else ([], [], [], [])
        problems.sort(key=lambda p: (p[0], p[1]))
        listed = [(place, h, message) for place, _, h, message in problems]
        keep = np.flatnonzero(~bad)
        if not len(keep):
            return _Prepared(n, listed, [], 0, 0, np.empty(0, np.int64), np.empty(0, np.int64), None, True, False)
        rows = self._records(len(keep))
        rows["line"] = np.asarray(places)[keep]
        rows["valid"] = valid[keep]
        rows["pgc"] = staged = pgc[keep].astype(np.int64)
        for f in self.numeric:
            values, null = numbers[f]
            rows[f] = np.where(null, np.nan, values)[keep]
        cells_at, counts = np.empty(0, np.int64), np.empty(0, np.int64)
        if self.has_position:
            for k, v in self._sky(numbers, valid).items():
                rows[f"sky_{k}"] = v[keep]
            located = rows["sky_healpix"][rows["valid"]].astype(np.int64)  # NULL_HEALPIX unless valid and located
            cells_at, counts = np.unique(located[located != NULL_HEALPIX] >> SKY_CELL_SHIFT, return_counts=True)
        data = rows.tobytes()
        if self.variable:  # each row's fixed record, then its text and boolean fields
            w, whole = self.row_type.itemsize, len(keep) == n
            fields = [encoded[f] if whole else [encoded[f][i] for i in keep.tolist()] for f, _ in self.variable]
            data = b"".join(itertools.chain.from_iterable(zip([data[k : k + w] for k in range(0, len(data), w)], *fields)))
        copies: list[tuple[str, bytes | str]] = [(self.copy_sql, _BINARY_HEADER + data + _BINARY_TRAILER)]
        if names[0]:
            lines, pgcs, display, keys = names
            if _COPY_SPECIAL.search("".join(display)):
                display, keys = [copy_text(name) for name in display], [copy_text(key) for key in keys]
            copies.append(
                (
                    f"COPY {STAGE_NAMES} (line, pgc, name, normalised) FROM STDIN",
                    "".join(f"{line}\t{p}\t{name}\t{key}\n" for line, p, name, key in zip(lines, pgcs, display, keys)),
                )
            )
        span = (int(staged.min()), int(staged.max()), int(staged[0]), int(staged[-1]))
        increasing = bool((np.diff(staged) > 0).all())
        return _Prepared(
            n, listed, copies, int(valid[keep].sum()), len(names[0]), cells_at, counts, span, increasing, not valid[keep].all()
        )

    def _records(self, n: int) -> np.ndarray:
        """n binary COPY records with their field count and lengths filled in."""
        if len(self.template) < n:
            self.template = np.empty(n, self.row_type)
            self.template["fields"] = len(self.fixed) + len(self.variable)
            for name, size in self.fixed:
                self.template[f"{name}:len"] = size
        return self.template[:n].copy()

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

    def _names(self, cells, places, pgc, valid, problems) -> tuple[list[int], list[int], list[str], list[str]]:
        """(lines, pgc numbers, display names, lookup keys) of the names of the valid rows; a
        row with a name that cannot be stored is reported and made invalid (and none of its
        names kept). A column chunk of one simple name per cell is read in one pass."""
        rows = np.flatnonzero(valid).tolist()
        at: list[int] = []  # the row of each name found
        found: list[str] = []
        keys: list[str] = []
        for h in self.name_headers:
            column_cells = cells[self.index[h]]
            simple = _simple_names([column_cells[i] for i in rows])
            if simple is not None:
                at += rows
                found += simple[0]
                keys += simple[1]
                continue
            for i in rows:
                cell = column_cells[i]
                if not cell or not valid[i]:
                    continue
                cell = str(cell)
                for n in cell.split(";") if ";" in cell else (cell,):
                    n = n.strip()
                    if not n:
                        continue
                    name, key = _name_and_key(n)
                    if len(name) > MAX_NAME or len(key) > MAX_NAME:
                        problems.append((places[i], 20_000, h, f"name {n[:40]!r}... of {len(name)} characters, longer than {MAX_NAME}"))
                        valid[i] = False
                        break
                    if "\x00" in name:
                        problems.append((places[i], 20_000, h, "NUL byte in a name"))
                        valid[i] = False
                        break
                    at.append(i)
                    found.append(name)
                    keys.append(key)
        if at and not valid[at].all():  # a row made invalid by a later name of its own
            kept = valid[at].tolist()
            at, found, keys = ([x for x, k in zip(column, kept) if k] for column in (at, found, keys))
        pgcs = np.where(valid, pgc, 0).astype(np.int64).tolist()
        return [places[i] for i in at], [pgcs[i] for i in at], found, keys

    def _sky(self, numbers, valid) -> dict[str, np.ndarray]:
        """HEALPix index and galactic/supergalactic coordinates of the chunk's rows, computed
        vectorised for the valid located ones (NULL_HEALPIX and NaN for the others)."""
        (ra, ra_null), (dec, dec_null) = numbers["ra"], numbers["dec"]
        located = np.flatnonzero(valid & ~ra_null & ~dec_null)
        out = {"healpix": np.full(len(valid), NULL_HEALPIX, np.int64), **{k: np.full(len(valid), np.nan) for k in SKY_KEYS}}
        if len(located):
            out["healpix"][located] = healpix_index(ra[located], dec[located])
            for k, v in derived_coordinates(ra[located], dec[located]).items():
                out[k][located] = v
        return out


class _Stage:
    """Validated rows of one import in a temporary table, ready for one upsert: chunks prepared
    by its _Preparer (here or in other processes) are added in line order and COPYed."""

    def __init__(self, cursor, preparer: _Preparer):
        self.cur = cursor
        self.columns, self.name_headers = preparer.columns, preparer.name_headers
        self.fields, self.numeric, self.has_position = preparer.fields, preparer.numeric, preparer.has_position
        qn = connection.ops.quote_name
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        cursor.execute(f"DROP TABLE IF EXISTS {STAGE}, {STAGE_NAMES}, {STAGE_PROBLEMS}, {STAGE_CELLS}")
        cursor.execute(
            f"CREATE TEMP TABLE {STAGE} ({', '.join(f'{qn(name)} {kind}' for name, kind in preparer.definitions)}) ON COMMIT DROP"
        )
        cursor.execute(f"CREATE TEMP TABLE {STAGE_NAMES} (line integer, pgc bigint, name text, normalised text) ON COMMIT DROP")
        self.staged_valid = 0  # staged rows to write: the client's count, less what check() makes invalid
        self.staged_names = 0
        self.staged_cells = np.zeros(12 * 4**SKY_CELL_DEPTH if self.has_position else 0, np.int64)  # staged rows to write per sky cell
        self.staged_first, self.staged_last = None, None  # least and greatest staged pgc
        self.invalid_staged = False  # whether some staged row is not to be written
        self.increasing, self.last_pgc = True, 0  # whether the staged pgc numbers increase line by line (then none repeats)

    # -- one chunk ------------------------------------------------------------------------------
    def add(self, chunk: _Prepared, report: ImportReport) -> list[tuple[str, bytes | str]]:
        """Report a prepared chunk's problems and count its rows (chunks in line order); the
        COPYs that stage it (see write)."""
        report.rows_read += chunk.rows
        for place, h, message in chunk.problems:
            report.add(place, h, message)
        if chunk.pgc is None:
            return []
        low, high, head, tail = chunk.pgc
        self.staged_valid += chunk.valid
        self.staged_names += chunk.names
        self.staged_cells[chunk.cells] += chunk.counts
        self.staged_first = low if self.staged_first is None else min(self.staged_first, low)
        self.staged_last = high if self.staged_last is None else max(self.staged_last, high)
        self.increasing = self.increasing and head > self.last_pgc and chunk.increasing
        self.last_pgc = tail
        self.invalid_staged = self.invalid_staged or chunk.invalid
        return chunk.copies

    def write(self, copies: list[tuple[str, bytes | str]]) -> None:
        """Run the COPYs of a prepared chunk."""
        for sql, data in copies:
            with self.cur.copy(sql) as copy:
                copy.write(data)

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
            cell = (
                f"CASE WHEN s.sky_healpix = {NULL_HEALPIX} THEN -1 ELSE s.sky_healpix >> {SKY_CELL_SHIFT} END"
                if self.has_position
                else "-1"
            )
            self.cur.execute(
                f"WITH dropped AS (UPDATE {STAGE} s SET valid = false FROM {STAGE_PROBLEMS} p WHERE s.line = p.line AND s.valid "
                f"RETURNING {cell} AS cell) SELECT cell, count(*) FROM dropped GROUP BY 1"
            )
            for cell, count in self.cur.fetchall():  # the rows left out, by the sky cell counted for them (-1: none)
                self.staged_valid -= count
                if cell >= 0:
                    self.staged_cells[cell] -= count
            self.invalid_staged = True
        self.cur.execute(f"DROP TABLE {STAGE_PROBLEMS}")

    def check(self, report: ImportReport) -> None:
        """Duplicate pgc numbers (none where they increase line by line), then names that clash
        inside the file or with other galaxies. First the galaxy and name tables are locked
        against other writers until the import commits (readers go on; another import waits
        here, holding no lock that this one's index rebuilds would wait for), so that what is
        checked and written sees every galaxy and name there is."""
        self.cur.execute(f"LOCK TABLE {Galaxy._meta.db_table}, {GalaxyName._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        pgc_header = next(h for h, c in self.columns.items() if c.name == "pgc")
        if not self.increasing:
            self._problems(
                report,
                f"SELECT line, {_literal(pgc_header)}::text AS col, format('duplicate pgc %s (also on %s)', pgc, first) AS message "
                f"FROM (SELECT line, pgc, first_value(line) OVER (PARTITION BY pgc ORDER BY line) AS first FROM {STAGE}) d "
                "WHERE line <> first",
            )
        if not self.name_headers:
            return
        names = self._valid_names()
        self._problems(
            report,
            "SELECT line, 'name'::text AS col, format('name %L also given to pgc %s on line %s', name, prev_pgc, prev_line) AS message "
            "FROM (SELECT n.line, n.name, n.pgc, lag(n.pgc) OVER w AS prev_pgc, lag(n.line) OVER w AS prev_line "
            f'      FROM {names} WINDOW w AS (PARTITION BY n.normalised COLLATE "C" ORDER BY n.line)) x '
            "WHERE prev_pgc IS NOT NULL AND prev_pgc <> pgc "
            "UNION ALL "
            "SELECT line, 'name', format('name %s already belongs to PGC %s', normalised, owner) FROM ("
            "  SELECT DISTINCT ON (n.normalised) n.line, n.normalised, g.galaxy_id AS owner "
            f"  FROM {names} JOIN {GalaxyName._meta.db_table} g ON g.normalised = n.normalised AND g.galaxy_id <> n.pgc "
            "  ORDER BY n.normalised, n.line DESC) t",
        )

    def _valid_names(self) -> str:
        """FROM clause of the staged names (n) of the valid rows: all of them unless some staged
        row is invalid."""
        return f"{STAGE_NAMES} n" + (f" JOIN {STAGE} s ON s.line = n.line AND s.valid" if self.invalid_staged else "")

    # -- the writes -------------------------------------------------------------------------------
    def valid_rows(self) -> int:
        """Rows to write (after check())."""
        return self.staged_valid

    def _value(self, f: str) -> str:
        """SQL of a staged column's value (NaN in a numeric column is NULL)."""
        qn = connection.ops.quote_name
        return f"NULLIF(s.{qn(f)}, 'NaN')" if f in self.numeric else f"s.{qn(f)}"

    def _assignments(self) -> tuple[list[str], list[str]]:
        """(columns, SQL of their values from the stage s) that the import writes: the staged
        columns, plus the sky index and derived coordinates when positions are staged."""
        cols = list(self.fields)
        values = [self._value(f) for f in cols]
        if self.has_position:
            for f in SKY_KEYS:
                if f in cols:
                    values[cols.index(f)] = f"COALESCE({values[cols.index(f)]}, NULLIF(s.sky_{f}, 'NaN'))"
            added = [k for k in SKY_KEYS if k not in cols]
            cols += ["healpix", *added]
            values += [f"NULLIF(s.sky_healpix, {NULL_HEALPIX})", *(f"NULLIF(s.sky_{k}, 'NaN')" for k in added)]
        return cols, values

    def upsert(self) -> tuple[int, int]:
        """Write the valid rows by pgc, only the staged columns (+ the sky index and derived
        coordinates when positions are staged); then the names; (created, updated).

        The galaxies' pgc range splits the stage. Rows inside it go through one MERGE: a galaxy
        that exists gets the staged columns (others keep their values), a new one is inserted
        with the defaults of the rest. Rows outside it are new for sure and go in by one INSERT
        with no lookup, so that a table that adds galaxies past the last pgc (the way a catalog
        grows) costs no join: for 1M new rows into 1M galaxies, the MERGE's hash join of the
        two took 1.9 of its 7.6 s. The MERGE and the sky-cell moves find the existing galaxies
        by a hash of those in the staged rows' pgc range where that range is dense (see _joins):
        for 200,000 staged among 1M, 0.32 s against 0.56 s for a lookup per row, each time.
        The staged rows' count and pgc range are counted as they are staged, so a stage wholly
        past the table's range is not read for them. The stage is read in pgc order (sorted unless it increases
        already), so that new keys fill the primary key's B-tree page by page. Against UPDATE
        ... FROM plus an INSERT of the rest (each new galaxy looked up twice, the updated keys
        recorded for the INSERT's anti-join), the MERGE costs 3.8 against 5.3 s for 250,000
        rows of which 200,000 exist in 1M galaxies. A write of at least a fifth of the galaxies
        (BULK_SHARE, BULK_MIN_ROWS rows or more) drops the galaxy table's secondary indexes and
        makes them again after (see _without_secondary_indexes)."""
        qn = connection.ops.quote_name
        now = timezone.now()
        galaxy, names = Galaxy._meta.db_table, GalaxyName._meta.db_table
        cols, values = self._assignments()
        sets = [f"{qn(c)} = {v}" for c, v in zip(cols, values) if c != "pgc"] + ['"updated" = %s']
        defaults = []
        for field in Galaxy._meta.concrete_fields:
            if field.column in cols or field.null:
                continue
            cols.append(field.column)
            values.append("%s")
            defaults.append(now if field.name in ("created", "updated") else field.get_default())
        columns, values = ", ".join(qn(c) for c in cols), ", ".join(values)
        rows = self.valid_rows()
        self.cur.execute(f"SELECT min(pgc), max(pgc) FROM {galaxy}")
        first, last = self.cur.fetchone()
        overlap = 0
        if first is not None and self.staged_first <= last and self.staged_last >= first:
            self.cur.execute(f"SELECT count(*), min(pgc), max(pgc) FROM {STAGE} WHERE valid AND pgc BETWEEN %s AND %s", [first, last])
            overlap, first, last = self.cur.fetchone()
        inside = f"pgc BETWEEN {int(first)} AND {int(last)}" if overlap else "FALSE"
        order = "" if self.increasing else " ORDER BY pgc"
        source = f"(SELECT * FROM {STAGE} WHERE valid{order}) s"
        within = f"(SELECT * FROM {STAGE} WHERE valid AND {inside}{order}) s"  # rows whose galaxy may exist
        match = f"g.pgc = s.pgc AND g.{inside}"
        # each is updated or added, and either way (an update cannot stay on its full page) gets
        # new entries in every index of the table
        bulk = _is_bulk(self.cur, galaxy, rows, BULK_SHARE)
        with _without_secondary_indexes(self.cur, galaxy, bulk):
            before = _written(self.cur, galaxy)
            # find the galaxies of the staged rows by hashing those of their pgc range, read in
            # key order, when there are at most about twice as many as staged rows, or the whole
            # table when it is no larger than the stage; else one lookup per staged row
            joins = nullcontext()
            if overlap:
                dense = last - first + 1 <= DENSE_RANGE * overlap or _rows_up_to(self.cur, galaxy, overlap) <= overlap
                joins = _joins(self.cur, "hash" if dense else "nested")
            moves = self._sky_cell_moves(within if overlap else None, match) if self.has_position else None
            with joins, _sky_cells_counted_here(self.cur, moves):
                merged = 0
                if overlap:
                    self.cur.execute(
                        f"MERGE INTO {galaxy} g USING {within} ON {match} "
                        f"WHEN MATCHED THEN UPDATE SET {', '.join(sets)} "
                        f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})",
                        [now, *defaults],
                    )
                    merged = self.cur.rowcount
                if overlap < rows:
                    beyond = f"(SELECT * FROM {STAGE} WHERE valid AND NOT {inside}{order}) s"
                    self.cur.execute(f"INSERT INTO {galaxy} ({columns}) SELECT {values} FROM {beyond}", defaults)
                    merged += self.cur.rowcount
            created, updated = (after - then for after, then in zip(_written(self.cur, galaxy), before))
            if created + updated != merged:  # statistics not counted (track_counts off)
                self.cur.execute(f"SELECT count(*) FROM {galaxy} g JOIN {source} ON g.pgc = s.pgc WHERE g.created = %s", [now])
                created = self.cur.fetchone()[0]
        if self.name_headers:
            # every name written belongs to a valid staged row, whose galaxy was just written and
            # cannot go (the table is locked): its foreign key needs no check, row by row or again
            bulk = _is_bulk(self.cur, names, self.staged_names, NAMES_BULK_SHARE)
            with (
                _foreign_key_checks_off(self.cur, names) as unchecked,
                _without_secondary_indexes(self.cur, names, bulk, unique=True, drop_foreign_keys=not unchecked),
            ):
                self.cur.execute(
                    f"INSERT INTO {names} (galaxy_id, name, normalised) "
                    f'SELECT DISTINCT ON (n.normalised COLLATE "C") n.pgc, n.name, n.normalised FROM {self._valid_names()} '
                    f"WHERE NOT EXISTS (SELECT 1 FROM {names} g WHERE g.normalised = n.normalised) "
                    'ORDER BY n.normalised COLLATE "C", n.line'
                )
        return created, merged - created

    def _sky_cell_moves(self, within: str | None, match: str) -> str:
        """SQL that adds to the sky cell counts (catalog.models.SkyCell) what the write of the
        valid staged rows, with positions staged, will change, run just before it: each written
        row's new cell (counted per cell as the rows were staged, less those the checks left
        out; none for a row without a position; COPYed into STAGE_CELLS here), less the old cell
        of each galaxy it overwrites, looked up for the rows of `within` only (None: no row can
        overwrite one). Counting the new cells from the stage instead took 1.6 s for 2M rows."""
        shift, cells, galaxy = SKY_CELL_SHIFT, SkyCell._meta.db_table, Galaxy._meta.db_table
        old = (
            f"  UNION ALL SELECT g.healpix >> {shift}, -1 FROM {galaxy} g JOIN {within} ON {match} WHERE g.healpix IS NOT NULL"
            if within
            else ""
        )
        new = np.flatnonzero(self.staged_cells)
        rows = np.empty(len(new), [("fields", ">i2"), ("cell:len", ">i4"), ("cell", ">i8"), ("d:len", ">i4"), ("d", ">i8")])
        rows["fields"], rows["cell:len"], rows["d:len"] = 2, 8, 8
        rows["cell"], rows["d"] = new, self.staged_cells[new]
        self.cur.execute(f"CREATE TEMP TABLE {STAGE_CELLS} (cell bigint, d bigint) ON COMMIT DROP")
        with self.cur.copy(f"COPY {STAGE_CELLS} FROM STDIN (FORMAT binary)") as copy:
            copy.write(_BINARY_HEADER + rows.tobytes() + _BINARY_TRAILER)
        return (
            f"INSERT INTO {cells} (cell, galaxies) SELECT cell, sum(d) FROM ("
            f"  SELECT cell, d FROM {STAGE_CELLS}{old}"
            ") moves GROUP BY cell HAVING sum(d) <> 0 ORDER BY cell "
            f"ON CONFLICT (cell) DO UPDATE SET galaxies = {cells}.galaxies + EXCLUDED.galaxies"
        )

    def drop(self) -> None:
        self.cur.execute(f"DROP TABLE IF EXISTS {STAGE}, {STAGE_NAMES}, {STAGE_CELLS}")


_worker: tuple[_Preparer, _Splitter] | None = None  # of a process that validates chunks for another (see _preparing)


def _use_worker(preparer: _Preparer, splitter: _Splitter, parent: int) -> None:
    """Initialiser of a validating process forked by the importing process `parent`. It ends with
    that process, killed or not (Linux: PR_SET_PDEATHSIG): its workers hold the write end of
    their own task queue, so they would wait on it for ever, with the memory of the import."""
    global _worker
    _worker = preparer, splitter
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # gone before that took hold
        os._exit(1)


def _prepare_piece(piece: Chunk | _Lines) -> tuple[ImportReport | None, _Prepared]:
    """A chunk prepared, or a block of lines split (with its reader's problems) and prepared."""
    preparer, splitter = _worker
    if not isinstance(piece, _Lines):
        return None, preparer.prepare(*piece)
    report = ImportReport(source="")
    places, columns, _ = splitter.split(piece.text, piece.bad, piece.first, report)
    return report, preparer.prepare(places, columns)


def _taken(report: ImportReport) -> ImportReport:
    """What a report holds so far (rows read, problems), moved into a new one; `report` is left empty."""
    out = ImportReport(source="", rows_read=report.rows_read, problems=report.problems, more_problems=report.more_problems)
    report.rows_read, report.problems, report.more_problems = 0, [], 0
    return out


def _prepare_processes(size: int) -> int:
    """How many processes validate the blocks of a text table of `size` bytes beside the one
    reading it: none for a file under PREPARE_MIN_BYTES, on one CPU, or in a daemonic process
    (a django-q worker, which may not have children); else one per CPU, at most PREPARE_PROCESSES."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if size < PREPARE_MIN_BYTES or cpus < 2 or multiprocessing.current_process().daemon:
        return 0
    return min(PREPARE_PROCESSES, cpus)


@contextmanager
def _preparing(preparer: _Preparer, chunks: Iterator[Chunk], report: ImportReport, processes: int) -> Iterator[Iterator[_Prepared]]:
    """The chunks of a table prepared, in order: here, or (processes > 0, a text table) in that
    many processes forked from this one, which split and validate its blocks of lines while
    this one reads the next (their problems, and the reader's, reported here in the order
    of the lines, so that the problems kept are those kept without the processes); at most two blocks
    per process ahead of the reader, so memory stays that of a few blocks. Splitting and
    validating are most of the client's work and hold the GIL, so that the COPY thread waited
    for them too: the staging of 1M rows of 9 columns with names took 12-15 s where reading and
    validating alone took 8.4 s and the COPYs alone 5.4 s; with two processes, 6.4-6.8 s. The
    processes are forked at the first block, before this import starts its COPY thread (a job's
    heartbeat thread, which may run, holds nothing they use), and only split and validate; one
    that dies fails the import (BrokenProcessPool), which rolls back."""
    table = getattr(chunks, "table", None)
    if not processes or table is None:
        yield (preparer.prepare(places, cells) for places, cells in chunks)
        return
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_use_worker, initargs=(preparer, table.splitter, os.getpid()))

    def prepared() -> Iterator[_Prepared]:
        pending = deque()  # (what the reader reported while reading a piece, the piece's future)
        reader = ImportReport(source="")  # what the reader reports (bad lines of the csv module), until its piece is due
        pieces = table.chunks(reader, as_lines=True)
        while True:
            piece = next(pieces, None)
            if piece is not None:
                pending.append((_taken(reader), pool.submit(_prepare_piece, piece)))
                if len(pending) <= 2 * processes:
                    continue
            if not pending:
                report.merge(reader)  # the reader's last lines
                return
            said, future = pending.popleft()
            read, chunk = future.result()
            report.merge(said)
            if read is not None:
                report.merge(read)
            yield chunk

    # the objects there now are left out of every collection, so that the children's (forked at
    # the first block) do not copy the pages they share
    gc.freeze()
    try:
        yield prepared()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()


def _rows_up_to(cursor, table: str, most: int) -> int:
    """Rows of a table, counted up to most + 1 (enough to tell whether it holds more than most)."""
    cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %s) t", [most + 1])
    return cursor.fetchone()[0]


def _written(cursor, table: str) -> tuple[int, int]:
    """(rows inserted, rows updated) into a table by this transaction so far, from PostgreSQL's
    statistics (zero when track_counts is off)."""
    cursor.execute("SELECT pg_stat_get_xact_tuples_inserted(%s::regclass), pg_stat_get_xact_tuples_updated(%s::regclass)", [table, table])
    return cursor.fetchone()


@contextmanager
def _sky_cells_counted_here(cursor, moves: str | None) -> Iterator[None]:
    """Run a write of the galaxy table with the triggers that keep the sky cell counts turned
    off, its changes to them counted set-wise by `moves` (SQL, run first; None: the write
    moves no galaxy, as when no position is staged), then turn them on again. Here, capturing
    the transition tables of a MERGE cost about 2.5 us per inserted and 12 us per updated
    galaxy (old and new rows of 143 columns); `moves` counted from the stage cost 0.9 s for 1M
    new galaxies, where counting every cell again after the write cost 1.35 s, and that grows
    with the table, not with the file. The import holds the table locked against other
    writers (SHARE ROW EXCLUSIVE, as ALTER TABLE ... DISABLE TRIGGER needs), so no other write
    can slip by uncounted; a role that may not alter the table leaves the triggers to count.

    Where the role may (a superuser), the triggers of the foreign keys that refer to the galaxy
    table are off meanwhile too. They act only when a galaxy's pgc changes or it is deleted,
    which an import never does, yet for each updated galaxy PostgreSQL fetched its old row and
    compared the keys for each of them (16 here): 2.0 of 5.9 s for 200,000 galaxies updated in 1M."""
    galaxy = Galaxy._meta.db_table
    keys = _foreign_key_triggers(cursor, galaxy, referencing=False)
    # not the table's owner: no trigger may be switched; not a superuser: not the keys'
    tried = ([*SkyCell.TRIGGERS, *keys], list(SkyCell.TRIGGERS)) if keys else (list(SkyCell.TRIGGERS),)
    off = next((names for names in tried if _triggers_off(cursor, galaxy, names)), None)
    if not off:
        yield
        return
    if moves:
        cursor.execute(moves)
    yield
    _switch_triggers(cursor, galaxy, "ENABLE", off)


def _foreign_key_triggers(cursor, table: str, *, referencing: bool) -> list[str]:
    """Quoted names of the enabled foreign-key triggers on `table`: those that check its own
    keys (referencing=True), or those that act for the keys of other tables that refer to it."""
    side = "c.conrelid = t.tgrelid" if referencing else "c.confrelid = t.tgrelid AND c.conrelid <> t.tgrelid"
    cursor.execute(
        "SELECT quote_ident(t.tgname) FROM pg_trigger t JOIN pg_constraint c ON c.oid = t.tgconstraint "
        f"WHERE t.tgrelid = %s::regclass AND c.contype = 'f' AND {side} AND t.tgenabled <> 'D'",
        [table],
    )
    return [name for (name,) in cursor.fetchall()]


def _switch_triggers(cursor, table: str, action: str, names: list[str]) -> None:
    """ENABLE or DISABLE (action) the named triggers of a table in one statement."""
    cursor.execute(f"ALTER TABLE {table} " + ", ".join(f"{action} TRIGGER {name}" for name in names))


def _triggers_off(cursor, table: str, names: list[str]) -> bool:
    """Turn the named triggers of a table off, in a savepoint; whether the role may."""
    try:
        with transaction.atomic():
            _switch_triggers(cursor, table, "DISABLE", names)
    except DatabaseError:
        return False
    return True


@contextmanager
def _joins(cursor, method: str) -> Iterator[None]:
    """Plan the joins of the statements run inside by one method ("hash": hash joins, "nested":
    nested loops), then restore the planner's settings. The stage has no statistics (an ANALYZE
    of 250,000 staged rows took 0.68 s here, more than the choice saves), so the planner takes
    it for a few hundred rows."""
    off = {"hash": ("nestloop", "mergejoin"), "nested": ("hashjoin", "mergejoin")}[method]
    settings = [f"enable_{name}" for name in off]
    cursor.execute("SELECT " + ", ".join(f"current_setting('{name}')" for name in settings))
    was = cursor.fetchone()
    cursor.execute("SELECT " + ", ".join(f"set_config('{name}', 'off', true)" for name in settings))
    yield
    cursor.execute("SELECT " + ", ".join(f"set_config('{name}', %s, true)" for name in settings), list(was))


def _is_bulk(cursor, table: str, rows: int, share: float) -> bool:
    """Whether a write of `rows` rows into `table` is a bulk write: at least BULK_MIN_ROWS and
    at least `share` of the rows the table holds."""
    most = int(rows / share)
    return rows >= BULK_MIN_ROWS and _rows_up_to(cursor, table, most) <= most


@contextmanager
def _foreign_key_checks_off(cursor, table: str) -> Iterator[bool]:
    """Run a write into `table` without the triggers that check its foreign keys, then turn them
    on again; yields whether they are off (a superuser's: other roles may not alter system
    triggers). Only for a write whose rows refer, by construction, to rows that exist and stay.
    For 2M new names into 1M, checking them by adding the key again took 5.1 of 48 s, and one
    by one 3.5 us per name."""
    checks = _foreign_key_triggers(cursor, table, referencing=True)
    if not checks:
        yield True
        return
    if not _triggers_off(cursor, table, checks):  # not a superuser
        yield False
        return
    yield True
    _switch_triggers(cursor, table, "ENABLE", checks)


@contextmanager
def _without_secondary_indexes(cursor, table: str, bulk: bool, *, unique: bool = False, drop_foreign_keys: bool = True) -> Iterator[None]:
    """Run a write that adds entries for its rows to each index of `table` (new rows, and
    updated ones that move off their full page) without the table's secondary (non-unique)
    indexes and its foreign keys (those unless drop_foreign_keys=False: their checks are off,
    see _foreign_key_checks_off) when it is a bulk write (_is_bulk). Inserting into a B-tree
    in random key order (the HEALPix index, names by galaxy) costs more per entry than sorting
    all the keys once: at 1M galaxies, 3.6 us
    per updated galaxy against 0.35 us (parallel build) to 0.55 us (one process) per galaxy
    there is for the rebuild, so it pays from a tenth to a sixth of the table on, and at a
    fifth (BULK_SHARE) the whole write costs 0.4 s less for 250,000 rows. A foreign key checks (and
    share-locks) each new row's target one by one, where adding the constraint again checks
    them all in one join: 3.5 us per new name against 0.9 us per name there is, and a re-import
    stages mostly names that exist, hence only a write that at least doubles the names
    (NAMES_BULK_SHARE). Indexes and constraints are made again from their own definitions in
    the same transaction.

    The price: dropping an index locks the table ACCESS EXCLUSIVE until the import commits, so
    readers (pages, cones, the foreign-key checks of votes) wait for the rest of the import,
    about 2 s for a quarter of a million rows into a million galaxies. Only writes of at least
    a fifth of the catalog pay it; smaller ones leave readers alone. Primary keys and unique
    constraints are kept (the MERGE's lookups, and the write's own lookups may need them)
    unless `unique` says that the write keeps them unique itself, and no foreign key refers to
    them: the names' INSERT (new ids from their sequence, each name once), whose unique index
    on the lookup key cost 4.2 of 8.0 s for 1M new names among 2M, where building it again
    over all 3M took 3.4 s; its primary key, 3.0-4.8 s of 7.7-9.4 s for 2M new names among
    1M, where building it again took 1.4-1.8 s."""
    if not bulk:
        yield
        return
    cursor.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = %s::regclass AND NOT indisunique AND NOT indisprimary",
        [table],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f' AND %s",
        [table, drop_foreign_keys],
    )
    foreign_keys = cursor.fetchall()
    uniques = []
    if unique:
        cursor.execute(
            "SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint c WHERE conrelid = %s::regclass "
            "AND contype IN ('p', 'u') AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)",
            [table],
        )
        uniques = cursor.fetchall()
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # a constraint is not dropped with checks pending
    for name, _ in foreign_keys + uniques:
        cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for name, _ in indexes:
        cursor.execute(f"DROP INDEX {name}")
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED
    yield
    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # an index is not built over pending (deferred) foreign-key checks
    for name, definition in uniques:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    for _, definition in indexes:
        cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# The import
# ---------------------------------------------------------------------------------------------
def open_table(path: Path, fmt: str, report: ImportReport) -> tuple[list[str], dict[str, Column], list[str], Iterator[Chunk]]:
    """(header, header -> registry column, name columns, chunks) of a table; TableReadError when
    unreadable."""
    reader = READERS.get(fmt)
    if reader is None:
        raise TableReadError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    header, chunks = reader(path, report)
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
    return header, columns, name_headers, chunks


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
            header, columns, name_headers, chunks = open_table(path, fmt, report)
            preparer = _Preparer(header, columns, name_headers, zero_is_null=fmt == "edd")
            stage = _Stage(cur, preparer)
            fraction = getattr(chunks, "fraction", None)
            # one thread COPYs a chunk while this one reads the next and, for a big file, other
            # processes validate those after it; the connection is used by one at a time
            with (
                _preparing(preparer, chunks, report, _prepare_processes(size)) as prepared,
                ThreadPoolExecutor(1, thread_name_prefix="import-copy") as writer,
            ):
                copying = None
                for chunk in prepared:
                    copies = stage.add(chunk, report)
                    if copying is not None:
                        copying.result()
                    if progress:  # may write the job's row: not while a COPY runs
                        done = report.rows_read
                        progress(done, max(done, int(done / fraction())) if fraction and fraction() > 0 else done)
                    copying = writer.submit(stage.write, copies)
                if copying is not None:
                    copying.result()
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
