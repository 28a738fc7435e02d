"""Consensus inclinations from volunteers' votes (Galaxy Inclination Zoo).

Two layers:

- numeric core (numpy only): a `VoteTable` of flat arrays and `ConsensusMethod` classes whose
  `compute(table, known)` returns per-galaxy values. `MedianConsensus` is the naive baseline;
  `CalibratedConsensus` calibrates every volunteer with a linear map i' = a*i + b fitted against
  calibration galaxies of known inclination and, iteratively, against the running consensus of the
  other volunteers, shrunk towards the identity for volunteers with few votes; it then combines
  the calibrated votes with a weighted mean after median/MAD outlier rejection.
- catalog layer: `load_vote_table` reads the votes (each volunteer's latest vote per galaxy),
  `compute_consensus` / `store_consensus` write ConsensusInclination rows, curator overrides win.

The method is chosen by the dotted path in settings.GALCAT_CONSENSUS_METHOD. Everything is
deterministic: same votes, same numbers.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO

import numpy as np

# Vote categories: a measurement (A), a face-on vote (F), a rejection (J).
CAT_A, CAT_F, CAT_J = 0, 1, 2
FLAG_LETTERS = ("A", "F", "J")
# When categories tie in weight, the more cautious flag wins: J over F over A.
TIE_ORDER = (CAT_J, CAT_F, CAT_A)
MAD_TO_SIGMA = 1.4826  # sigma of a normal distribution per median absolute deviation


# ---------------------------------------------------------------------------------------------
# Numeric core
# ---------------------------------------------------------------------------------------------
@dataclass
class VoteTable:
    """Votes as flat arrays, one entry per (volunteer, galaxy): the volunteer's latest vote.

    user [N] int index into users; galaxy [N] int index into pgcs; inc [N] float degrees (nan for
    face-on / rejected); cat [N] CAT_A / CAT_F / CAT_J. users [U] user ids; pgcs [G] galaxy pgcs.
    """

    user: np.ndarray
    galaxy: np.ndarray
    inc: np.ndarray
    cat: np.ndarray
    users: np.ndarray
    pgcs: np.ndarray

    @classmethod
    def from_records(cls, records: list[tuple[int, int, float | None, int]]) -> VoteTable:
        """Build from (user_id, pgc, inc or None, cat) tuples (already one per user and galaxy)."""
        if not records:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, np.zeros(0), empty, empty, empty)
        uid = np.array([r[0] for r in records], dtype=np.int64)
        pgc = np.array([r[1] for r in records], dtype=np.int64)
        inc = np.array([np.nan if r[2] is None else r[2] for r in records], dtype=np.float64)
        cat = np.array([r[3] for r in records], dtype=np.int64)
        users, u = np.unique(uid, return_inverse=True)
        pgcs, g = np.unique(pgc, return_inverse=True)
        inc = np.where(cat == CAT_A, inc, np.nan)
        return cls(u, g, inc, cat, users, pgcs)

    def subset(self, mask: np.ndarray) -> VoteTable:
        """The votes where mask [N] is true (indices into users/pgcs keep their meaning)."""
        return VoteTable(self.user[mask], self.galaxy[mask], self.inc[mask], self.cat[mask], self.users, self.pgcs)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_galaxies(self) -> int:
        return len(self.pgcs)


@dataclass
class ConsensusArrays:
    """Per-galaxy results [G]: inc (nan unless accepted), inc_e, n (volunteers used), flag index
    (-1 where there are too few votes for a value), and per-volunteer calibration [U]."""

    inc: np.ndarray
    inc_e: np.ndarray
    n: np.ndarray
    flag: np.ndarray
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    sigma: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def accepted(self) -> np.ndarray:
        return (self.flag == CAT_A) & np.isfinite(self.inc)


def segment_median(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of values [N] within each group index [N] -> [n_groups] (nan for empty groups)."""
    out = np.full(n_groups, np.nan)
    if values.size == 0:
        return out
    order = np.lexsort((values, groups))
    v, gs = values[order], groups[order]
    counts = np.bincount(gs, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = 0.5 * (v[lo] + v[hi])
    return out


def majority_flags(table: VoteTable, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted majority of vote categories per galaxy.

    weights [N] per vote. Returns flag [G] (CAT_* index, ties broken by TIE_ORDER) and
    the number of votes [G]."""
    G = table.n_galaxies
    sums = np.zeros((3, G))
    for c in (CAT_A, CAT_F, CAT_J):
        sel = table.cat == c
        sums[c] = np.bincount(table.galaxy[sel], weights=weights[sel], minlength=G)
    best = np.full(G, TIE_ORDER[0])
    best_w = sums[TIE_ORDER[0]].copy()
    for c in TIE_ORDER[1:]:
        better = sums[c] > best_w + 1e-12
        best[better] = c
        best_w[better] = sums[c][better]
    n = np.bincount(table.galaxy, minlength=G)
    return best, n


def robust_combine(
    y: np.ndarray, g: np.ndarray, w: np.ndarray, n_groups: int, *, clip_k: float, floor_deg: float, min_for_clip: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean per group after rejecting votes far from the group median.

    y [M] values (deg), g [M] group index, w [M] weights. A vote is rejected when it lies more
    than max(clip_k * 1.4826 * MAD, floor_deg) from the median (only in groups of at least
    min_for_clip votes). Returns mean [G], error [G], kept [M] bool, weight sum W [G], kept count [G].
    """
    med = segment_median(y, g, n_groups)
    res = np.abs(y - med[g])
    mad = segment_median(res, g, n_groups) * MAD_TO_SIGMA
    count = np.bincount(g, minlength=n_groups)
    thr = np.maximum(clip_k * mad, floor_deg)
    kept = (res <= thr[g]) | (count[g] < min_for_clip)
    wk = w * kept
    W = np.bincount(g, weights=wk, minlength=n_groups)
    S = np.bincount(g, weights=wk * y, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = S / W
        var = np.bincount(g, weights=wk * (y - mean[g]) ** 2, minlength=n_groups) / W
        nk = np.bincount(g, weights=kept.astype(float), minlength=n_groups)
        sem = np.sqrt(var / np.maximum(nk - 1, 1))
        err = np.maximum(np.sqrt(1.0 / W), np.where(nk > 1, sem, 0.0))
    return mean, err, kept, W, nk


class ConsensusMethod:
    """A way to turn a VoteTable into consensus values. Subclasses set name and version."""

    name = "base"
    version = "0"
    min_votes = 3  # an accepted value needs at least this many measurements

    def compute(self, table: VoteTable, known: dict[int, float] | None = None) -> ConsensusArrays:
        """known: {galaxy index: known inclination (deg)} of calibration galaxies."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def _finish(
        self, table: VoteTable, inc: np.ndarray, err: np.ndarray, n_meas: np.ndarray, n_used: np.ndarray, flag_w: np.ndarray
    ) -> ConsensusArrays:
        """Flags by weighted majority; a value only for accepted galaxies with min_votes measurements.

        n_meas [G] measurements, n_used [G] measurements kept in the value, flag_w [N] vote weights."""
        flag, n_all = majority_flags(table, flag_w)
        enough = n_all >= self.min_votes
        accepted = (flag == CAT_A) & (n_meas >= self.min_votes)
        # A majority for "measure it" with too few measurements gives no value yet.
        flag = np.where(enough & ((flag != CAT_A) | accepted), flag, -1)
        inc = np.where(flag == CAT_A, inc, np.nan)
        err = np.where(flag == CAT_A, err, np.nan)
        n = np.where(flag == CAT_A, n_used, n_all)
        return ConsensusArrays(inc=inc, inc_e=err, n=n, flag=flag)


class MedianConsensus(ConsensusMethod):
    """Naive baseline: the median of the raw votes, flags by simple majority."""

    name = "median"
    version = "1"

    def compute(self, table: VoteTable, known: dict[int, float] | None = None) -> ConsensusArrays:
        G = table.n_galaxies
        meas = np.isfinite(table.inc)
        g = table.galaxy[meas]
        x = table.inc[meas]
        med = segment_median(x, g, G)
        n = np.bincount(g, minlength=G)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(g, weights=x, minlength=G) / n
            sd = np.sqrt(np.bincount(g, weights=(x - mean[g]) ** 2, minlength=G) / np.maximum(n - 1, 1))
            err = 1.2533 * sd / np.sqrt(n)  # standard error of a median of normal values
        return self._finish(table, med, err, n, n, np.ones(len(table.user)))


class CalibratedConsensus(ConsensusMethod):
    """Per-volunteer linear calibration, shrinkage, robust weighted mean, weighted-majority flags.

    Each volunteer is modelled as seeing a galaxy of reference inclination r at
    x = r + c0 + c1*(r - PIVOT) (plus noise), fitted by ridge least squares against reference
    values: known inclinations of calibration galaxies (weight KNOWN_WEIGHT) and the leave-one-out
    consensus of the other volunteers (weight 1); the inverse map is the calibration
    i' = a*x + b. The ridge pulls (c0, c1) towards (0, 0) with the strength of PRIOR_VOTES votes,
    so a volunteer with few votes is barely changed. Each volunteer's scatter about the references, shrunk the same way
    towards SIGMA0, sets their weight 1/sigma^2 in the combination and in the flag majority.
    """

    name = "calibrated"
    version = "1.0"
    PIVOT = 67.5  # deg: middle of the 45-90 range the voting page spans
    N_ITER = 6
    PRIOR_VOTES = 30.0  # strength of the shrinkage towards the identity, in votes
    SLOPE_SPREAD = 10.0  # deg: spread of (i - PIVOT) the slope prior assumes
    KNOWN_WEIGHT = 3.0  # a known inclination counts as much as this many peer votes
    SIGMA0 = 4.0  # deg: prior scatter of one vote
    SIGMA_FLOOR = 1.5  # deg
    A_RANGE = (0.6, 1.4)
    CLIP_K = 3.0
    # deg: never reject a vote closer than this to the median. With 3-5 votes a galaxy, a MAD
    # is noisy; only gross errors go (chosen by calibration_cv on the shared votes: floors of
    # 5/10/15 deg gave 2.44/2.30/2.21 deg RMS against held-out known inclinations).
    CLIP_FLOOR = 15.0

    def compute(self, table: VoteTable, known: dict[int, float] | None = None) -> ConsensusArrays:
        G, U = table.n_galaxies, table.n_users
        meas = np.isfinite(table.inc)
        u = table.user[meas]
        g = table.galaxy[meas]
        x = table.inc[meas]
        known_val = np.full(G, np.nan)
        for gi, val in (known or {}).items():
            known_val[gi] = val
        has_known = np.isfinite(known_val[g])
        a = np.ones(U)
        b = np.zeros(U)
        sigma = np.full(U, self.SIGMA0)
        for _ in range(self.N_ITER):
            y = np.clip(a[u] * x + b[u], 0.0, 90.0)
            w = 1.0 / sigma[u] ** 2
            mean, err, kept, W, nk = robust_combine(y, g, w, G, clip_k=self.CLIP_K, floor_deg=self.CLIP_FLOOR)
            # Leave-one-out consensus of the other volunteers at each vote.
            S = W * np.nan_to_num(mean)
            wk = w * kept
            W_other = W[g] - wk
            n_other = nk[g] - kept
            with np.errstate(invalid="ignore", divide="ignore"):
                ref_peer = (S[g] - wk * y) / W_other
            peer_ok = (n_other >= 2) & (W_other > 0)
            ref = np.where(has_known, known_val[g], np.where(peer_ok, ref_peer, np.nan))
            rw = np.where(has_known, self.KNOWN_WEIGHT, np.where(peer_ok, 1.0, 0.0))
            ref = np.nan_to_num(ref)
            a, b = self._fit(u, x, ref, rw, U)
            resid = ref - np.clip(a[u] * x + b[u], 0.0, 90.0)
            n_u = np.bincount(u, weights=rw, minlength=U)
            ss = np.bincount(u, weights=rw * resid**2, minlength=U)
            sigma = np.maximum(np.sqrt((ss + self.PRIOR_VOTES * self.SIGMA0**2) / (n_u + self.PRIOR_VOTES)), self.SIGMA_FLOOR)
        y = np.clip(a[u] * x + b[u], 0.0, 90.0)
        w = 1.0 / sigma[u] ** 2
        mean, err, kept, W, nk = robust_combine(y, g, w, G, clip_k=self.CLIP_K, floor_deg=self.CLIP_FLOOR)
        flag_w = np.clip(self.SIGMA0**2 / sigma[table.user] ** 2, 0.25, 4.0)
        n_meas = np.bincount(g, minlength=G)
        out = self._finish(table, mean, err, n_meas, nk.astype(int), flag_w)
        out.a, out.b, out.sigma = a, b, sigma
        out.extra["rejected_votes"] = int((~kept).sum())
        return out

    def _fit(self, u: np.ndarray, x: np.ndarray, ref: np.ndarray, rw: np.ndarray, U: int) -> tuple[np.ndarray, np.ndarray]:
        """Ridge fit per volunteer of how they see a reference: x - ref = c0 + c1 * (ref - PIVOT).

        The volunteer's vote is the noisy quantity, so it is regressed on the reference (fitting the
        reference on the vote would shrink every calibrated value towards the mean). Inverting
        x = (1 + c1) * ref + c0 - c1 * PIVOT gives i' = a * x + b. u, x, ref, rw [M]; returns a, b [U]."""
        z = ref - self.PIVOT
        t = x - ref
        s00 = np.bincount(u, weights=rw, minlength=U) + self.PRIOR_VOTES
        s01 = np.bincount(u, weights=rw * z, minlength=U)
        s11 = np.bincount(u, weights=rw * z * z, minlength=U) + self.PRIOR_VOTES * self.SLOPE_SPREAD**2
        r0 = np.bincount(u, weights=rw * t, minlength=U)
        r1 = np.bincount(u, weights=rw * t * z, minlength=U)
        det = s00 * s11 - s01 * s01
        c0 = (s11 * r0 - s01 * r1) / det
        c1 = (s00 * r1 - s01 * r0) / det
        scale = np.clip(1.0 + c1, 1.0 / self.A_RANGE[1], 1.0 / self.A_RANGE[0])
        c1 = scale - 1.0
        return 1.0 / scale, (c1 * self.PIVOT - c0) / scale


# ---------------------------------------------------------------------------------------------
# Catalog layer
# ---------------------------------------------------------------------------------------------
DEFAULT_METHOD = "catalog.consensus.CalibratedConsensus"


@lru_cache(maxsize=8)
def _method_class(path: str):
    from django.utils.module_loading import import_string

    cls = import_string(path)
    if not (isinstance(cls, type) and issubclass(cls, ConsensusMethod)):
        raise TypeError(f"{path} is not a ConsensusMethod")
    return cls


def get_method(path: str | None = None) -> ConsensusMethod:
    """The configured consensus method (settings.GALCAT_CONSENSUS_METHOD), or the one at `path`."""
    from django.conf import settings

    return _method_class(path or getattr(settings, "GALCAT_CONSENSUS_METHOD", DEFAULT_METHOD))()


def vote_category(rejected: bool, face_on: bool, inc: float | None) -> int:
    if face_on:
        return CAT_F
    if rejected or inc is None:
        return CAT_J
    return CAT_A


def load_vote_table(*, pgcs=None) -> VoteTable:
    """Each volunteer's latest vote per galaxy (highest round, then latest stored)."""
    from catalog.models import InclinationVote

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
    from catalog.models import CalibrationGalaxy, ReferenceFlag

    index = {int(p): i for i, p in enumerate(table.pgcs.tolist())}
    out = {}
    for pgc, inc in CalibrationGalaxy.objects.filter(flag=ReferenceFlag.ACCEPTED, inc__isnull=False).values_list("galaxy_id", "inc"):
        if pgc in index:
            out[index[pgc]] = float(inc)
    return out


@dataclass
class ConsensusRow:
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
    from catalog.models import ConsensusOverride

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
    from django.db import transaction
    from django.utils import timezone

    from catalog.models import ConsensusInclination, VolunteerCalibration

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


def recompute(method_path: str | None = None, *, progress=None) -> dict:
    """Compute and store the consensus; the task and the command both call this."""
    method = get_method(method_path)
    rows, calibration = compute_all(method)
    n = store_consensus(rows, method, calibration)
    flags = {f: sum(1 for r in rows if r.flag == f) for f in FLAG_LETTERS}
    return {"method": method.name, "version": method.version, "galaxies": n, **flags}


def run_consensus_task(galaxy_ids=None, progress=None) -> dict:
    """Worker entry point (settings.GALCAT_CONSENSUS_TASK): called with the ids of galaxies that
    got votes, or with none by the nightly run. The consensus couples galaxies through the
    volunteers' calibration, so it is always recomputed whole."""
    out = recompute()
    if progress:
        progress(1, 1)
    return out


def consensus_for(galaxy_id: int):
    """The stored consensus of the configured method for one galaxy, or None."""
    from catalog.models import ConsensusInclination

    return ConsensusInclination.objects.filter(galaxy_id=galaxy_id, method=get_method().name).first()


# ---------------------------------------------------------------------------------------------
# How good is a method? Split-half agreement and cross-validated calibration error
# ---------------------------------------------------------------------------------------------
def rms(d: np.ndarray) -> float:
    return float(np.sqrt(np.mean(d**2))) if d.size else float("nan")


def split_half(
    method: ConsensusMethod, table: VoteTable, known: dict[int, float], *, splits: int = 20, seed: int = 1, min_votes: int = 3
) -> dict:
    """RMS difference of the consensus from two random halves of the volunteers.

    Each split assigns every volunteer to one half at random (seeded); each half computes its own
    consensus (with the calibration galaxies' known values); the RMS runs over galaxies accepted
    by both halves with at least min_votes measurements each."""
    rng = np.random.default_rng(seed)
    values, counts = [], []
    m = type(method)()
    m.min_votes = min_votes
    for _ in range(splits):
        half = rng.permutation(table.n_users) < table.n_users // 2
        in_a = half[table.user]
        ra = m.compute(table.subset(in_a), known)
        rb = m.compute(table.subset(~in_a), known)
        both = ra.accepted() & rb.accepted()
        values.append(rms(ra.inc[both] - rb.inc[both]))
        counts.append(int(both.sum()))
    v = np.array(values)
    return {"rms_mean": float(v.mean()), "rms_std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "galaxies_mean": float(np.mean(counts))}


def calibration_cv(method: ConsensusMethod, table: VoteTable, known: dict[int, float], *, splits: int = 20, seed: int = 2) -> dict:
    """RMS of the consensus against known inclinations under 2-fold cross-validation.

    Each split halves the calibration galaxies at random; the method sees the known values of one
    half only and is scored on the accepted galaxies of the other half, then the halves swap."""
    rng = np.random.default_rng(seed)
    keys = np.array(sorted(known), dtype=np.int64)
    vals = np.array([known[k] for k in keys.tolist()], dtype=np.float64)
    values, counts = [], []
    for _ in range(splits):
        fold = rng.permutation(len(keys)) < len(keys) // 2
        diffs = []
        for train in (fold, ~fold):
            res = method.compute(table, {int(k): float(v) for k, v in zip(keys[train], vals[train])})
            test_k, test_v = keys[~train], vals[~train]
            ok = res.accepted()[test_k]
            diffs.append(res.inc[test_k][ok] - test_v[ok])
        d = np.concatenate(diffs)
        values.append(rms(d))
        counts.append(d.size)
    v = np.array(values)
    return {"rms_mean": float(v.mean()), "rms_std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "galaxies_mean": float(np.mean(counts))}


def consensus_report(methods: list[ConsensusMethod] | None = None, *, splits: int = 20, seed: int = 1, min_votes_half=(1, 2, 3)) -> dict:
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


def format_report(rep: dict) -> str:
    """The report as the consensus_report command prints it."""
    lines = [
        f"Votes: {rep['votes']} (each volunteer's latest per galaxy), volunteers: {rep['volunteers']}, "
        f"galaxies: {rep['galaxies']}, calibration galaxies with known inclination: {rep['calibration_galaxies']}",
        "",
        f"Split-half: RMS difference between the consensus of two random halves of the volunteers ({rep['splits']} splits, mean +- std)",
    ]
    names = list(rep["methods"])
    head = f"{'':36s}" + "".join(f"{n:>26s}" for n in names)
    lines.append(head)
    ks = list(next(iter(rep["methods"].values()))["split_half"]) if names else []
    for k in ks:
        cells = []
        for n in names:
            s = rep["methods"][n]["split_half"][k]
            cells.append(f"{s['rms_mean']:6.2f} +- {s['rms_std']:4.2f} deg (n={s['galaxies_mean']:.0f})")
        lines.append(f"{f'  >= {k} votes in each half':36s}" + "".join(f"{c:>26s}" for c in cells))
    lines.append("")
    lines.append(f"Against calibration galaxies, 2-fold cross-validation ({rep['splits']} splits: calibrate on one half, score the other)")
    cells = []
    for n in names:
        s = rep["methods"][n]["calibration_cv"]
        cells.append(f"{s['rms_mean']:6.2f} +- {s['rms_std']:4.2f} deg (n={s['galaxies_mean']:.0f})")
    lines.append(f"{'  RMS vs known inclination':36s}" + "".join(f"{c:>26s}" for c in cells))
    cells = [str(rep["methods"][n]["accepted"]) for n in names]
    lines.append(f"{'  accepted galaxies (all votes)':36s}" + "".join(f"{c:>26s}" for c in cells))
    lines.append("")
    lines.append("A method that does not use the known inclinations (the naive median) scores the same on every split (spread 0).")
    lines.append("Accepted values need at least 3 measurements; the '>= 1' and '>= 2' rows relax that inside each half.")
    return "\n".join(lines)
