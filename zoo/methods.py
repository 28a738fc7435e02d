"""Consensus methods of the Galaxy Inclination Zoo: pure numpy, no Django.

A `VoteTable` of flat arrays goes in; `ConsensusMethod.compute(table, known)` returns per-galaxy
`ConsensusArrays`. `MedianConsensus` is the naive baseline; `CalibratedConsensus` calibrates every
volunteer with a linear map i' = a*i + b fitted against calibration galaxies of known inclination
and, iteratively, against the running consensus of the other volunteers, shrunk towards the
identity for volunteers with few votes; it then combines the calibrated votes with a weighted mean
after median/MAD outlier rejection. `split_half` and `calibration_cv` score a method, and
`format_report` prints their numbers. Everything runs on arrays (e.g. in a notebook) and is
deterministic: same votes, same numbers. zoo.consensus reads the votes from the catalog and stores
the results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Vote categories: a measurement (A), a face-on vote (F), a rejection (J).
CAT_A, CAT_F, CAT_J = 0, 1, 2
FLAG_LETTERS = ("A", "F", "J")
# When categories tie in weight, the more cautious flag wins: J over F over A.
TIE_ORDER = (CAT_J, CAT_F, CAT_A)
MAD_TO_SIGMA = 1.4826  # sigma of a normal distribution per median absolute deviation


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
# How good is a method? Split-half agreement and cross-validated calibration error
# ---------------------------------------------------------------------------------------------
def rms(d: np.ndarray) -> float:
    """Root mean square of the differences d [N] (deg); nan when there are none."""
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


def format_report(rep: dict) -> str:
    """The report as the consensus_report command prints it.

    rep: the dict of zoo.consensus.consensus_report (counts, and per method label the split_half
    and calibration_cv results in deg); returns plain text, one line per row of the table."""
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
