"""FITS binary-table export, streamed in constant memory.

FITS needs the row count and each string column's width before the first row, so one query
counts rows and measures strings, then a server-side cursor streams rows in chunks that numpy
packs as big-endian records; both run in one REPEATABLE READ transaction so they see the same
rows. Each column carries TUNIT, TUCD and TCOMM (description) from the registry; provenance
is in the primary header. Missing values: NaN for floats, TNULL for integers, 0 for logicals.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from django.db import connection, transaction

from catalog.columns import Column
from catalog.exports.common import provenance_items, select_sql

BLOCK = 2880
FETCH_ROWS = 5000
INT_NULL = -(2**63)


def _card_header(cards: list[tuple[str, object, str]]) -> bytes:
    from astropy.io import fits

    header = fits.Header()
    for key, value, comment in cards:
        if key in ("COMMENT", "HISTORY"):
            header.add_comment(str(value)) if key == "COMMENT" else header.add_history(str(value))
        else:
            header.append((key, value, comment), end=True)
    return header.tostring().encode("ascii")


def _ascii(value: str) -> str:
    return value.encode("ascii", "replace").decode("ascii")


def _dtype(col: Column, width: int) -> tuple[str, str]:
    if col.kind == "float":
        return ">f8", "D"
    if col.kind == "int":
        return ">i8", "K"
    if col.kind in ("bool", "flag"):
        return "S1", "L"
    return f"S{width}", f"{width}A"


def stream_fits(source, columns: list[Column], provenance: dict | None) -> Iterator[bytes]:
    str_cols = [c for c in columns if c.kind == "str"]
    measures = ["count(*)"] + [f"coalesce(max(octet_length({source.expr(c)})), 0)" for c in str_cols]
    outer = connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cur:
            if not outer:  # inside a caller's transaction the caller chose the isolation
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute(f"SELECT {', '.join(measures)} FROM ({source.unordered_sql}) AS t", source.unordered_params)
            found = cur.fetchone()
        nrows = int(found[0])
        widths = {c.name: max(1, int(w)) for c, w in zip(str_cols, found[1:], strict=True)}
        dtypes = [_dtype(c, widths.get(c.name, 1)) for c in columns]
        record = np.dtype([(f"f{j}", d[0]) for j, d in enumerate(dtypes)])

        primary = [("SIMPLE", True, "conforms to FITS standard"), ("BITPIX", 8, ""), ("NAXIS", 0, ""), ("EXTEND", True, "")]
        for key, value in provenance_items(provenance, nrows):
            primary.append(("COMMENT", _ascii(f"{key}: {value}"), ""))
        yield _card_header(primary)

        cards = [
            ("XTENSION", "BINTABLE", "binary table extension"),
            ("BITPIX", 8, ""),
            ("NAXIS", 2, ""),
            ("NAXIS1", record.itemsize, "bytes per row"),
            ("NAXIS2", nrows, "rows"),
            ("PCOUNT", 0, ""),
            ("GCOUNT", 1, ""),
            ("TFIELDS", len(columns), ""),
            ("EXTNAME", "GALAXIES", ""),
        ]
        for j, (c, (_, tform)) in enumerate(zip(columns, dtypes, strict=True), start=1):
            cards.append((f"TTYPE{j}", c.name, ""))
            cards.append((f"TFORM{j}", tform, ""))
            if c.kind == "int":
                cards.append((f"TNULL{j}", INT_NULL, "missing value"))
            if c.unit:
                cards.append((f"TUNIT{j}", c.unit, ""))
            cards.append((f"TUCD{j}", c.ucd, ""))
            cards.append((f"TCOMM{j}", _ascii(c.description)[:68], ""))
        yield _card_header(cards)

        sent = 0
        cursor = connection.chunked_cursor()
        try:
            cursor.execute(select_sql(source, [source.expr(c) for c in columns]), source.params)
            while sent < nrows:
                rows = cursor.fetchmany(FETCH_ROWS)
                if not rows:
                    break
                rows = rows[: nrows - sent]
                yield _pack(rows, columns, record).tobytes()
                sent += len(rows)
        finally:
            cursor.close()
        if sent < nrows:  # cannot happen in one snapshot; keep the file valid regardless
            yield _pack([(None,) * len(columns)] * (nrows - sent), columns, record).tobytes()
        tail = (nrows * record.itemsize) % BLOCK
        if tail:
            yield b"\0" * (BLOCK - tail)


def _pack(rows: list[tuple], columns: list[Column], record: np.dtype) -> np.ndarray:
    out = np.zeros(len(rows), dtype=record)
    for j, c in enumerate(columns):
        values = [r[j] for r in rows]
        key = f"f{j}"
        if c.kind == "float":
            out[key] = np.array(values, dtype=np.float64)
        elif c.kind == "int":
            out[key] = np.array([INT_NULL if v is None else v for v in values], dtype=np.int64)
        elif c.kind in ("bool", "flag"):
            out[key] = np.array([b"\0" if v is None else (b"T" if v else b"F") for v in values], dtype="S1")
        else:
            out[key] = np.array([(v or "").encode() for v in values], dtype=record[key])
    return out
