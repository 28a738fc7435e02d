"""Reader of OpenNGC (Mattia Verga et al., CC BY-SA 4.0): the NGC and IC objects with their
cross-identifiers, as the `pyongc` package ships them in a SQLite file (`pyongc/ongc.db`).

Only single galaxies (type 'G') that carry a PGC number are read. Each yields a table row like
the other readers' (header name -> raw cell): pgc, ra and dec [deg] (the file holds radians),
d25 [arcmin] (OpenNGC's major axis), b_a (minor / major axis), pa [deg], type (Hubble type),
vhel [km/s] (radial velocity), and `name`: every designation separated by ';' (NGC 4565,
M 31, UGC 7772, MCG +04-30-006, 2MASX J..., IRAS ..., and common names such as "Needle Galaxy").

OpenNGC lists some galaxies twice (an NGC and an IC number for one object, the second marked as a
duplicate, or two rows with one PGC number): the names are merged into the one row; a designation that OpenNGC gives to two different PGC
numbers is dropped from both, so no alias ever points at the wrong galaxy.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from catalog.importers.report import ImportReport
from catalog.importers.tables import TableReadError
from catalog.names import normalise_name

HEADER = ["pgc", "ra", "dec", "d25", "b_a", "pa", "type", "vhel", "name"]
CREDIT = "OpenNGC (Mattia Verga et al., https://github.com/mattiaverga/OpenNGC), CC BY-SA 4.0"
_NGC_IC = re.compile(r"^(NGC|IC)0*(\d+)\s*([A-Z]?)$")
_PGC = re.compile(r"^PGC\s*0*(\d+)$")
_SELECT = (
    "SELECT id, name, ra, dec, majax, minax, pa, hubble, radvel, messier, identifiers, commonnames "
    "FROM objects WHERE type = 'G' ORDER BY id"
)
# Entries that OpenNGC marks as duplicates of another NGC/IC number: their name is an alias of it.
_DUPLICATES = "SELECT name, ngc, ic FROM objects WHERE type = 'Dup'"


def bundled_path() -> Path:
    """The OpenNGC database shipped inside the installed pyongc package."""
    import pyongc

    return Path(pyongc.__file__).with_name("ongc.db")


def _designation(name: str) -> str:
    """'NGC4565' -> 'NGC 4565', 'IC0010' -> 'IC 10', 'NGC5194A' -> 'NGC 5194A'."""
    m = _NGC_IC.match(name.strip())
    return f"{m.group(1)} {int(m.group(2))}{m.group(3)}" if m else name.strip()


def _names(row: sqlite3.Row) -> tuple[int | None, list[str]]:
    """(PGC number, designations) of one OpenNGC row."""
    pgc = None
    names = [_designation(row["name"])]
    if row["messier"]:
        names.append(f"M {int(row['messier'])}")
    for ident in (row["identifiers"] or "").split(","):
        ident = " ".join(ident.split())
        if not ident:
            continue
        m = _PGC.match(ident)
        if m:
            pgc = pgc or int(m.group(1))
            continue
        names.append(_designation(ident))
    names += [n.strip() for n in (row["commonnames"] or "").split(",") if n.strip()]
    return pgc, names


def _cell(value, fmt: str = "{:.7g}") -> str:
    return "" if value is None or value == "" else fmt.format(value)


def read_openngc(path: Path, report: ImportReport) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    """(header, rows) of the galaxies of an OpenNGC database; `place` is the object's row id."""
    path = Path(path)
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            con.row_factory = sqlite3.Row
            records = con.execute(_SELECT).fetchall()
            duplicates = con.execute(_DUPLICATES).fetchall()
    except sqlite3.Error as exc:
        raise TableReadError(f"cannot read {path.name} as an OpenNGC SQLite database: {exc}") from None

    merged: dict[int, tuple[sqlite3.Row, list[str]]] = {}
    owners: dict[str, set[int]] = {}
    for rec in records:
        pgc, names = _names(rec)
        if pgc is None:
            continue
        if pgc in merged:
            merged[pgc][1].extend(names)
        else:
            merged[pgc] = (rec, names)
        for n in names:
            owners.setdefault(normalise_name(n), set()).add(pgc)
    by_designation = {normalise_name(_designation(rec["name"])): pgc for pgc, (rec, _) in merged.items()}
    for dup in duplicates:
        target = f"NGC{dup['ngc']}" if dup["ngc"] else (f"IC{dup['ic']}" if dup["ic"] else "")
        pgc = by_designation.get(normalise_name(_designation(target))) if target else None
        if pgc is not None:
            name = _designation(dup["name"])
            merged[pgc][1].append(name)
            owners.setdefault(normalise_name(name), set()).add(pgc)
    shared = {key for key, pgcs in owners.items() if len(pgcs) > 1}
    if shared:
        report.warnings.append(f"{len(shared)} designation(s) given to more than one PGC number in OpenNGC were left out")

    def rows() -> Iterator[tuple[int, dict]]:
        for pgc, (rec, names) in merged.items():
            kept, seen = [], set()
            for n in names:
                key = normalise_name(n)
                if key not in shared and key not in seen:
                    seen.add(key)
                    kept.append(n.replace(";", ","))
            major, minor = rec["majax"], rec["minax"]
            b_a = minor / major if major and minor and minor <= major else None
            ra = math.degrees(rec["ra"]) % 360.0 if rec["ra"] is not None else None
            dec = math.degrees(rec["dec"]) if rec["dec"] is not None else None
            yield (
                rec["id"],
                {
                    "pgc": str(pgc),
                    "ra": _cell(ra, "{:.7f}"),
                    "dec": _cell(dec, "{:.7f}"),
                    "d25": _cell(major),
                    "b_a": _cell(b_a, "{:.3f}"),
                    "pa": _cell(rec["pa"]),
                    "type": rec["hubble"] or "",
                    "vhel": _cell(rec["radvel"]),
                    "name": ";".join(kept),
                },
            )

    return list(HEADER), rows()
