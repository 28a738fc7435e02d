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
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

import numpy as np
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from catalog.models import Galaxy
from zoo.columns import refresh_consensus_summary
from zoo.conf import conf
from zoo.methods import (
    CAT_A,
    CAT_F,
    CAT_J,
    FLAG_LETTERS,
    CalibratedConsensus,
    ConsensusMethod,
    JointConsensus,
    MeanConsensus,
    MedianConsensus,
    VoteTable,
    calibration_cv,
    compare_kinds,
    main_kind,
    split_half,
    truth_scores,
)
from zoo.models import (
    CalibrationGalaxy,
    ConsensusInclination,
    ConsensusOverride,
    InclinationVote,
    ReferenceFlag,
    Standard,
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
    or of the given pgcs, with the input table each was served from (InclinationVote.kind:
    target, calibration, tutorial_good, tutorial_bad) in VoteTable.served."""
    qs = InclinationVote.objects.all()
    if pgcs is not None:
        qs = qs.filter(galaxy_id__in=list(pgcs))
    rows = (
        qs.order_by("user_id", "galaxy_id", "-round", "-created", "-id")
        .distinct("user_id", "galaxy_id")
        .values_list("user_id", "galaxy_id", "inc", "rejected", "face_on", "kind")
    )
    records, served = [], []
    for uid, pgc, inc, rej, fo, kind in rows.iterator(chunk_size=5000):
        records.append((uid, pgc, inc, vote_category(rej, fo, inc)))
        served.append(kind)
    return VoteTable.from_records(records, served)


def _reference_rows() -> list[tuple[int, float | None, str]]:
    """(pgc, inc, flag) of the standards, then of the calibration galaxies (a calibration
    galaxy's value wins where a galaxy is both)."""
    std = list(Standard.objects.exclude(galaxy_id=None).values_list("galaxy_id", "inc", "flag"))
    cal = list(CalibrationGalaxy.objects.values_list("galaxy_id", "inc", "flag"))
    return std + cal


def known_inclinations(table: VoteTable, *, exclude: Iterable[int] = ()) -> dict[int, float]:
    """{galaxy index: inc} of the accepted calibration galaxies and standards among the table's
    galaxies, leaving out the pgcs in exclude (galaxies held out for scoring)."""
    index = {int(p): i for i, p in enumerate(table.pgcs.tolist())}
    skip = set(exclude)
    out = {}
    for pgc, inc, flag in _reference_rows():
        if flag == ReferenceFlag.ACCEPTED and inc is not None and pgc in index and pgc not in skip:
            out[index[pgc]] = float(inc)
    return out


def known_flags(table: VoteTable, *, exclude: Iterable[int] = ()) -> dict[int, int]:
    """{galaxy index: CAT_*} of the calibration galaxies and standards whose flag is known."""
    index = {int(p): i for i, p in enumerate(table.pgcs.tolist())}
    skip = set(exclude)
    cat = {FLAG_LETTERS[k]: k for k in (CAT_A, CAT_F, CAT_J)}
    return {index[pgc]: cat[flag] for pgc, _, flag in _reference_rows() if pgc in index and pgc not in skip and flag in cat}


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
    res = method.compute(table, known_inclinations(table), known_flags(table))
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
        before = set(ConsensusInclination.objects.filter(method=method.name).values_list("galaxy_id", flat=True))
        ConsensusInclination.objects.filter(method=method.name).delete()
        ConsensusInclination.objects.bulk_create(objs, batch_size=2000)
        refresh_consensus_summary(before | {o.galaxy_id for o in objs})
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


# ---------------------------------------------------------------------------------------------
# Scoring against a table of known inclinations (consensus_report --truth FILE.csv)
# ---------------------------------------------------------------------------------------------
class TruthTableError(ValueError):
    """A truth table that cannot be read; the message names the line and column."""


def read_truth_table(path: str | Path) -> dict[int, float]:
    """{pgc: inc} from a CSV file with columns pgc and inc (deg, 0-90); other columns are ignored."""
    truth: dict[int, float] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"pgc", "inc"} - set(reader.fieldnames or ())
        if missing:
            raise TruthTableError(f"{path}: line 1: missing column(s) {', '.join(sorted(missing))} (need pgc, inc)")
        for line, row in enumerate(reader, start=2):
            try:
                pgc = int(row["pgc"])
            except (TypeError, ValueError):
                raise TruthTableError(f"{path}: line {line}, column pgc: expected an integer, got {row['pgc']!r}") from None
            try:
                inc = float(row["inc"])
            except (TypeError, ValueError):
                raise TruthTableError(f"{path}: line {line}, column inc: expected degrees, got {row['inc']!r}") from None
            if not np.isfinite(inc) or not 0.0 <= inc <= 90.0:
                raise TruthTableError(f"{path}: line {line}, column inc: {row['inc']} outside [0, 90] deg")
            if pgc in truth:
                raise TruthTableError(f"{path}: line {line}, column pgc: PGC {pgc} given twice")
            truth[pgc] = inc
    if not truth:
        raise TruthTableError(f"{path}: no rows")
    return truth


def published_inclinations() -> dict[int, tuple[float, str]]:
    """{pgc: (inc, source)} of every galaxy with an accepted published inclination the catalog
    holds: the EDD table's inc column (inc_flg 0), the accepted standards and the accepted
    calibration galaxies (in that order; a later source wins where a galaxy is in several)."""
    out: dict[int, tuple[float, str]] = {}
    for pgc, inc in Galaxy.objects.filter(inc__isnull=False, inc_flg=0).values_list("pgc", "inc"):
        out[pgc] = (float(inc), "catalog")
    for pgc, inc in (
        Standard.objects.filter(flag=ReferenceFlag.ACCEPTED, inc__isnull=False).exclude(galaxy_id=None).values_list("galaxy_id", "inc")
    ):
        out[pgc] = (float(inc), "standard")
    for pgc, inc in CalibrationGalaxy.objects.filter(flag=ReferenceFlag.ACCEPTED, inc__isnull=False).values_list("galaxy_id", "inc"):
        out[pgc] = (float(inc), "calibration")
    return out


def write_truth_table(out: IO[str], *, seed: int = 1, fraction: float = 0.5, min_votes: int = 3) -> dict:
    """Write a held-out truth table (pgc, inc, source): a seeded random `fraction` of the galaxies
    with a published inclination and at least `min_votes` measurements. Scoring with it
    (truth_report) removes these galaxies from the anchors of every method, so the remaining
    published values calibrate and the chosen ones only judge. Same catalog and seed, same file."""
    published = published_inclinations()
    table = load_vote_table(pgcs=published)
    n_meas = np.bincount(table.galaxy[np.isfinite(table.inc)], minlength=table.n_galaxies)
    eligible = sorted(int(p) for p, n in zip(table.pgcs.tolist(), n_meas.tolist()) if n >= min_votes)
    rng = np.random.default_rng(seed)
    chosen = sorted(np.array(eligible, dtype=np.int64)[rng.random(len(eligible)) < fraction].tolist())
    w = csv.writer(out)
    w.writerow(["pgc", "inc", "source"])
    for pgc in chosen:
        inc, source = published[pgc]
        w.writerow([pgc, f"{inc:g}", source])
    return {"published": len(published), "eligible": len(eligible), "written": len(chosen), "seed": seed, "fraction": fraction}


def default_truth_methods() -> list[ConsensusMethod]:
    """Plain mean and median of the votes beside the calibrated, the joint and the configured method."""
    methods: list[ConsensusMethod] = [MeanConsensus(), MedianConsensus(), CalibratedConsensus(), JointConsensus()]
    configured = get_method()
    if configured.label not in {m.label for m in methods}:
        methods.append(configured)
    return methods


def truth_report(
    truth: dict[int, float], methods: list[ConsensusMethod] | None = None, *, min_votes: int = 3, splits: int = 20, seed: int = 1
) -> dict:
    """Every method against known inclinations {pgc: inc} held out from all of them.

    The truth galaxies are removed from the known inclinations and flags each method calibrates
    on; scores run over the truth galaxies with at least min_votes measurements to which every
    method gives a value, overall, by inclination bin and by the input table most of a galaxy's
    votes came from. Also: split-half agreement (>= 2 votes in each half) with the same anchors,
    and how calibration galaxies differ from ordinary targets (zoo.methods.compare_kinds)."""
    methods = methods or default_truth_methods()
    table = load_vote_table()
    index = {int(p): i for i, p in enumerate(table.pgcs.tolist())}
    known = known_inclinations(table, exclude=truth)
    flags = known_flags(table, exclude=truth)
    n_meas = np.bincount(table.galaxy[np.isfinite(table.inc)], minlength=table.n_galaxies)
    gi = np.array(sorted(index[p] for p in truth if p in index and n_meas[index[p]] >= min_votes), dtype=np.int64)
    true = np.array([truth[int(table.pgcs[i])] for i in gi.tolist()], dtype=np.float64)
    kinds = main_kind(table, table.served)
    results = {m.label: m.compute(table, known, flags) for m in methods}
    rep = truth_scores(results, gi, true, kinds[gi] if len(gi) else np.zeros(0, dtype=object))
    rep.update(
        {
            "truth_rows": len(truth),
            "truth_in_votes": sum(1 for p in truth if p in index),
            "min_votes": min_votes,
            "anchors": len(known),
            "splits": splits,
            "split_half": {m.label: split_half(m, table, known, splits=splits, seed=seed, min_votes=2) for m in methods},
            "kinds": compare_kinds(table, table.served, known),
        }
    )
    return rep


def truth_scores_record(rep: dict, methods: list[ConsensusMethod], truth_file: str, command: str) -> dict:
    """What the galaxy page and /compare/ show of a truth report: per method RMS, bias and N
    against the held-out published inclinations, with where the figures came from."""
    default = get_method().label
    return {
        "truth_file": str(truth_file),
        "command": command,
        "measured": timezone.now().isoformat(timespec="seconds"),
        "truth_rows": rep["truth_rows"],
        "n_common": rep["n_common"],
        "min_votes": rep["min_votes"],
        "methods": [
            {"method": m.name, "version": m.version, "label": m.label, "default": m.label == default, **rep["methods"][m.label]["all"]}
            for m in methods
            if m.label in rep["methods"]
        ],
    }


def save_truth_scores(record: dict, path: str | Path | None = None) -> Path:
    """Write a truth_scores_record to path (default: settings.GALCAT_CONSENSUS_SCORES), atomically."""
    path = Path(path or conf.CONSENSUS_SCORES)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=float) + "\n")
    os.replace(tmp, path)
    return path


def load_truth_scores(path: str | Path | None = None) -> dict | None:
    """The saved truth scores (settings.GALCAT_CONSENSUS_SCORES), None when none were saved."""
    path = Path(path or conf.CONSENSUS_SCORES)
    if not path.exists():
        return None
    return json.loads(path.read_text())
