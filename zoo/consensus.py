"""Consensus inclinations in the catalog (Galaxy Inclination Zoo).

The numbers come from zoo.methods (pure numpy); this module is the catalog layer around them:
`load_vote_table` reads the votes (each volunteer's latest vote per galaxy) into a VoteTable,
`known_inclinations` the accepted calibration galaxies, `compute_all` runs the method and applies
curator overrides (they win), `store_consensus` writes ConsensusInclination and
VolunteerCalibration rows, `consensus_report` scores methods on the stored votes.

The method is chosen by the dotted path in GALCAT_CONSENSUS_METHOD.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import IO

import numpy as np
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from zoo.conf import conf
from zoo.methods import (
    CAT_A,
    CAT_F,
    CAT_J,
    FLAG_LETTERS,
    ConsensusMethod,
    MedianConsensus,
    VoteTable,
    calibration_cv,
    split_half,
)
from zoo.models import (
    CalibrationGalaxy,
    ConsensusInclination,
    ConsensusOverride,
    InclinationVote,
    ReferenceFlag,
    VolunteerCalibration,
)


@lru_cache(maxsize=8)
def _method_class(path: str) -> type[ConsensusMethod]:
    cls = import_string(path)
    if not (isinstance(cls, type) and issubclass(cls, ConsensusMethod)):
        raise TypeError(f"{path} is not a ConsensusMethod")
    return cls


def get_method(path: str | None = None) -> ConsensusMethod:
    """The configured consensus method (GALCAT_CONSENSUS_METHOD), or the one at `path`."""
    return _method_class(path or conf.CONSENSUS_METHOD)()


def vote_category(rejected: bool, face_on: bool, inc: float | None) -> int:
    """The CAT_* category of a stored vote: face-on wins, then a rejection or a missing value."""
    if face_on:
        return CAT_F
    if rejected or inc is None:
        return CAT_J
    return CAT_A


def load_vote_table(*, pgcs: Iterable[int] | None = None) -> VoteTable:
    """Each volunteer's latest vote per galaxy (highest round, then latest stored), of all galaxies
    or of the given pgcs."""
    qs = InclinationVote.objects.all()
    if pgcs is not None:
        qs = qs.filter(galaxy_id__in=list(pgcs))
    rows = (
        qs.order_by("user_id", "galaxy_id", "-round", "-created", "-id")
        .distinct("user_id", "galaxy_id")
        .values_list("user_id", "galaxy_id", "inc", "rejected", "face_on")
    )
    records = [(uid, pgc, inc, vote_category(rej, fo, inc)) for uid, pgc, inc, rej, fo in rows.iterator(chunk_size=5000)]
    return VoteTable.from_records(records)


def known_inclinations(table: VoteTable) -> dict[int, float]:
    """{galaxy index: inc} of the accepted calibration galaxies among the table's galaxies."""
    index = {int(p): i for i, p in enumerate(table.pgcs.tolist())}
    out = {}
    for pgc, inc in CalibrationGalaxy.objects.filter(flag=ReferenceFlag.ACCEPTED, inc__isnull=False).values_list("galaxy_id", "inc"):
        if pgc in index:
            out[index[pgc]] = float(inc)
    return out


@dataclass
class ConsensusRow:
    """One galaxy's consensus as stored: inc, inc_e in deg (None unless flag is "A"), inc_n
    volunteers, flag "A"/"F"/"J", the method's name and version, the curator of an override."""

    pgc: int
    inc: float | None
    inc_e: float | None
    inc_n: int
    flag: str
    method: str
    version: str
    overridden_by: int | None = None


@dataclass
class CalibrationRow:
    """One volunteer's calibration i' = a*i + b (b in deg), vote scatter sigma (deg), measurements."""

    user_id: int
    a: float
    b: float
    sigma: float
    n_votes: int


def compute_consensus(method: ConsensusMethod | None = None) -> list[ConsensusRow]:
    """Consensus rows of every galaxy with enough votes, curator overrides applied (they win)."""
    return compute_all(method)[0]


def compute_all(method: ConsensusMethod | None = None) -> tuple[list[ConsensusRow], list[CalibrationRow]]:
    """Consensus rows (overrides applied) and, for methods that calibrate, each volunteer's calibration."""
    method = method or get_method()
    table = load_vote_table()
    res = method.compute(table, known_inclinations(table))
    calibration = []
    if res.a is not None:
        n_votes = np.bincount(table.user[np.isfinite(table.inc)], minlength=table.n_users)
        for i, uid in enumerate(table.users.tolist()):
            calibration.append(
                CalibrationRow(uid, round(float(res.a[i]), 4), round(float(res.b[i]), 3), round(float(res.sigma[i]), 3), int(n_votes[i]))
            )
    rows: dict[int, ConsensusRow] = {}
    for i, pgc in enumerate(table.pgcs.tolist()):
        f = int(res.flag[i])
        if f < 0:
            continue
        inc = float(round(res.inc[i], 2)) if f == CAT_A else None
        err = float(round(res.inc_e[i], 2)) if f == CAT_A else None
        rows[pgc] = ConsensusRow(pgc, inc, err, int(res.n[i]), FLAG_LETTERS[f], method.name, method.version)
    overrides = ConsensusOverride.objects.order_by("galaxy_id", "-created", "-id").distinct("galaxy_id")
    for o in overrides:
        old = rows.get(o.galaxy_id)
        rows[o.galaxy_id] = ConsensusRow(
            o.galaxy_id,
            o.inc if o.flag == "A" else None,
            o.inc_e if o.flag == "A" else None,
            old.inc_n if old else 0,
            o.flag,
            method.name,
            method.version,
            overridden_by=o.curator_id,
        )
    return [rows[k] for k in sorted(rows)], calibration


def store_consensus(rows: list[ConsensusRow], method: ConsensusMethod, calibration: list[CalibrationRow] | None = None) -> int:
    """Replace the stored consensus (and volunteer calibrations) of `method`, in one transaction.
    Returns the number of consensus rows."""
    now = timezone.now()
    objs = [
        ConsensusInclination(
            galaxy_id=r.pgc,
            inc=r.inc,
            inc_e=r.inc_e,
            inc_n=r.inc_n,
            flag=r.flag,
            method=r.method,
            version=r.version,
            overridden_by_id=r.overridden_by,
            computed=now,
        )
        for r in rows
    ]
    cal = [
        VolunteerCalibration(
            user_id=c.user_id, a=c.a, b=c.b, sigma=c.sigma, n_votes=c.n_votes, method=method.name, version=method.version, computed=now
        )
        for c in calibration or []
    ]
    with transaction.atomic():
        ConsensusInclination.objects.filter(method=method.name).delete()
        ConsensusInclination.objects.bulk_create(objs, batch_size=2000)
        if calibration is not None:
            VolunteerCalibration.objects.filter(method=method.name).delete()
            VolunteerCalibration.objects.bulk_create(cal, batch_size=2000)
    return len(objs)


CSV_COLUMNS = ("pgc", "inc", "inc_e", "inc_n", "flag", "method")


def write_csv(rows: list[ConsensusRow], out: IO[str]) -> None:
    """Columns pgc, inc, inc_e, inc_n, flag, method ('name version', or 'override' by a curator)."""
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        method = "curator override" if r.overridden_by else f"{r.method} {r.version}"
        w.writerow([r.pgc, "" if r.inc is None else f"{r.inc:.2f}", "" if r.inc_e is None else f"{r.inc_e:.2f}", r.inc_n, r.flag, method])


def recompute(method_path: str | None = None, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Compute and store the consensus; the task and the command both call this."""
    method = get_method(method_path)
    rows, calibration = compute_all(method)
    n = store_consensus(rows, method, calibration)
    flags = {f: sum(1 for r in rows if r.flag == f) for f in FLAG_LETTERS}
    return {"method": method.name, "version": method.version, "galaxies": n, **flags}


def run_consensus_task(galaxy_ids: Iterable[int] | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Worker entry point (GALCAT_CONSENSUS_TASK): called with the ids of galaxies that
    got votes, or with none by the nightly run. The consensus couples galaxies through the
    volunteers' calibration, so it is always recomputed whole."""
    out = recompute()
    if progress:
        progress(1, 1)
    return out


def consensus_for(galaxy_id: int) -> ConsensusInclination | None:
    """The stored consensus of the configured method for one galaxy, or None."""
    return ConsensusInclination.objects.filter(galaxy_id=galaxy_id, method=get_method().name).first()


def consensus_report(
    methods: list[ConsensusMethod] | None = None, *, splits: int = 20, seed: int = 1, min_votes_half: tuple[int, ...] = (1, 2, 3)
) -> dict:
    """Split-half agreement and cross-validated RMS against calibration galaxies, per method."""
    methods = methods or [MedianConsensus(), get_method()]
    table = load_vote_table()
    known = known_inclinations(table)
    out = {
        "votes": int(len(table.user)),
        "volunteers": int(table.n_users),
        "galaxies": int(table.n_galaxies),
        "calibration_galaxies": len(known),
        "splits": splits,
        "methods": {},
    }
    if not len(table.user):
        return out
    for m in methods:
        entry = {"split_half": {}, "calibration_cv": calibration_cv(m, table, known, splits=splits, seed=seed + 1)}
        for k in min_votes_half:
            entry["split_half"][k] = split_half(m, table, known, splits=splits, seed=seed, min_votes=k)
        res = m.compute(table, known)
        entry["accepted"] = int(res.accepted().sum())
        out["methods"][m.label] = entry
    return out
