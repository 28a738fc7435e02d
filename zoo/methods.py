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
    served [N] (optional) the name of the input table each vote's target was served from
    (ordinary target, calibration, tutorial): volunteers see them differently.
    """

    user: np.ndarray
    galaxy: np.ndarray
    inc: np.ndarray
    cat: np.ndarray
    users: np.ndarray
    pgcs: np.ndarray
    served: np.ndarray | None = None

    @classmethod
    def from_records(cls, records: list[tuple[int, int, float | None, int]], served: list[str] | None = None) -> VoteTable:
        """Build from (user_id, pgc, inc or None, cat) tuples (already one per user and galaxy),
        with the input table of each record in served when known."""
        if not records:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, np.zeros(0), empty, empty, empty, None if served is None else np.zeros(0, dtype=object))
        uid = np.array([r[0] for r in records], dtype=np.int64)
        pgc = np.array([r[1] for r in records], dtype=np.int64)
        inc = np.array([np.nan if r[2] is None else r[2] for r in records], dtype=np.float64)
        cat = np.array([r[3] for r in records], dtype=np.int64)
        users, u = np.unique(uid, return_inverse=True)
        pgcs, g = np.unique(pgc, return_inverse=True)
        inc = np.where(cat == CAT_A, inc, np.nan)
        return cls(u, g, inc, cat, users, pgcs, None if served is None else np.array(served, dtype=object))

    def subset(self, mask: np.ndarray) -> VoteTable:
        """The votes where mask [N] is true (indices into users/pgcs keep their meaning)."""
        served = None if self.served is None else self.served[mask]
        return VoteTable(self.user[mask], self.galaxy[mask], self.inc[mask], self.cat[mask], self.users, self.pgcs, served)

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

    def compute(
        self, table: VoteTable, known: dict[int, float] | None = None, known_flags: dict[int, int] | None = None
    ) -> ConsensusArrays:
        """known: {galaxy index: known inclination (deg)} of calibration galaxies and standards;
        known_flags: {galaxy index: CAT_*} of those whose category is known (methods may ignore it)."""
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

    def compute(
        self, table: VoteTable, known: dict[int, float] | None = None, known_flags: dict[int, int] | None = None
    ) -> ConsensusArrays:
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

    def compute(
        self, table: VoteTable, known: dict[int, float] | None = None, known_flags: dict[int, int] | None = None
    ) -> ConsensusArrays:
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


class MeanConsensus(ConsensusMethod):
    """Baseline: the plain mean of the raw votes, flags by simple majority."""

    name = "mean"
    version = "1"

    def compute(
        self, table: VoteTable, known: dict[int, float] | None = None, known_flags: dict[int, int] | None = None
    ) -> ConsensusArrays:
        G = table.n_galaxies
        meas = np.isfinite(table.inc)
        g, x = table.galaxy[meas], table.inc[meas]
        n = np.bincount(g, minlength=G)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(g, weights=x, minlength=G) / n
            sd = np.sqrt(np.bincount(g, weights=(x - mean[g]) ** 2, minlength=G) / np.maximum(n - 1, 1))
            err = sd / np.sqrt(n)
        return self._finish(table, mean, err, n, n, np.ones(len(table.user)))


class JointConsensus(ConsensusMethod):
    """Every volunteer modelled across every galaxy they measured, jointly with the galaxy values.

    Model: volunteer v votes x = t + c0_v + c1_v (t - PIVOT) + e on a galaxy of inclination t, e
    drawn from a Student-t of NU degrees of freedom and scale sigma_v (gross errors get small
    weights instead of a hard cut). Expectation-maximisation with the galaxy values as latent
    variables: the E-step gives each galaxy a Gaussian posterior (mean m, variance V) from the
    votes' precisions (beta_v^2 / sigma_v^2 times each vote's robust weight), a population prior
    N(mu, tau^2) of the measured galaxies (mu and tau re-estimated every step: with a fixed or flat
    prior, stretching every galaxy value while shrinking every volunteer's scale would raise the
    likelihood, and the scale would drift) and, for calibration galaxies and standards, their
    known value with sd KNOWN_SD; the M-step fits each volunteer's
    (c0, c1) by ridge least squares using E[t] and E[t^2] (so noise in the galaxy values does not
    flatten the slope) with priors of PRIOR_VOTES votes, c0 ~ 0 and c1 ~ the mean volunteer's,
    and sigma_v from the
    expected squared residuals shrunk towards SIGMA0. The known values fix the zero point and
    the scale, which the votes alone leave free. A fixed number of iterations from a fixed start:
    same votes, same numbers.

    The published value of a galaxy is the votes-only posterior mean (its known value, if any,
    is left out, so calibration galaxies can be scored), with the posterior sd as error.

    Flags come from a Dawid-Skene model (Dawid & Skene 1979, Appl. Stat. 28, 20): each volunteer
    has a confusion matrix P(vote category | true category A/F/J), smoothed towards the pooled
    matrix with FLAG_PRIOR pseudo-votes, fitted by EM together with each galaxy's category
    probabilities; the accepted and rejected standards and calibration galaxies enter with their
    known category. A volunteer who flags everything thus counts less than one who rarely does.
    """

    name = "joint"
    version = "1.0"
    PIVOT = 67.5  # deg: middle of the 45-90 range the voting page spans
    N_ITER = 200
    PRIOR_VOTES = 20.0  # strength of the priors on c0 and c1 (about the mean volunteer), in votes
    SLOPE_SPREAD = 10.0  # deg: spread of (t - PIVOT) the slope prior assumes
    SIGMA0 = 4.0  # deg: prior scatter of one vote
    SIGMA_PRIOR_VOTES = 10.0
    SIGMA_FLOOR = 1.0  # deg
    SCALE_RANGE = (0.6, 1.4)  # allowed 1 + c1
    KNOWN_SD = 1.5  # deg: uncertainty given to a known inclination
    NU = 4.0  # degrees of freedom of the vote errors
    FLAG_ITER = 20
    FLAG_PRIOR = 4.0  # pseudo-votes pulling each volunteer's confusion matrix to the pooled one

    def compute(
        self, table: VoteTable, known: dict[int, float] | None = None, known_flags: dict[int, int] | None = None
    ) -> ConsensusArrays:
        G, U = table.n_galaxies, table.n_users
        meas = np.isfinite(table.inc)
        u, g = table.user[meas], table.galaxy[meas]
        xp = table.inc[meas] - self.PIVOT
        known_val = np.full(G, np.nan)
        for gi, val in (known or {}).items():
            known_val[gi] = val - self.PIVOT
        has_known = np.isfinite(known_val)
        known_prec = np.where(has_known, 1.0 / self.KNOWN_SD**2, 0.0)
        known_term = np.where(has_known, np.nan_to_num(known_val) * known_prec, 0.0)

        alpha, beta = np.zeros(U), np.ones(U)
        sigma = np.full(U, self.SIGMA0)
        w = np.ones(len(u))
        voted = np.bincount(g, minlength=G) > 0
        mu, tau = 0.0, self.SLOPE_SPREAD
        for _ in range(self.N_ITER):
            m, V = self._galaxy_posterior(u, g, xp, w, alpha, beta, sigma, G, known_prec, known_term, mu, tau)
            mu = float(m[voted].mean())
            tau = float(np.sqrt(np.mean((m[voted] - mu) ** 2 + V[voted])))
            w = self._robust_weights(u, g, xp, alpha, beta, sigma, m, V)
            alpha, beta, sigma = self._volunteers(u, g, xp, w, m, V, U, beta)
        m, V = self._galaxy_posterior(u, g, xp, w, alpha, beta, sigma, G, known_prec, known_term, mu, tau)
        w = self._robust_weights(u, g, xp, alpha, beta, sigma, m, V)
        # Published values from the votes alone, without the population prior (which would pull
        # every value towards the middle of the range).
        m0, V0 = self._galaxy_posterior(u, g, xp, w, alpha, beta, sigma, G, np.zeros(G), np.zeros(G), 0.0, np.inf)
        inc = np.clip(m0 + self.PIVOT, 0.0, 90.0)
        n_meas = np.bincount(g, minlength=G)
        n_used = np.bincount(g, weights=(w >= 0.5).astype(float), minlength=G).astype(int)
        post = self.flag_posterior(table, known_flags or {})
        out = self._finish_posterior(table, inc, np.sqrt(V0), n_meas, n_used, post)
        # As a calibration i' = a*i + b: the inverse of x = t + c0 + c1 (t - PIVOT).
        out.a = 1.0 / beta
        out.b = self.PIVOT - (alpha + self.PIVOT) / beta
        out.sigma = sigma
        out.extra["downweighted_votes"] = int((w < 0.5).sum())
        out.extra["flag_posterior"] = post
        return out

    def _galaxy_posterior(self, u, g, xp, w, alpha, beta, sigma, G, known_prec, known_term, mu, tau):
        """Posterior mean m [G] and variance V [G] of each galaxy's (t - PIVOT), prior N(mu, tau^2)."""
        prec_v = w * beta[u] ** 2 / sigma[u] ** 2
        est = (xp - alpha[u]) / beta[u]
        with np.errstate(invalid="ignore", divide="ignore"):
            P = np.bincount(g, weights=prec_v, minlength=G) + known_prec + 1.0 / tau**2
            S = np.bincount(g, weights=prec_v * est, minlength=G) + known_term + mu / tau**2
            return S / P, 1.0 / P

    def _robust_weights(self, u, g, xp, alpha, beta, sigma, m, V):
        """Student-t weights (NU + 1) / (NU + r^2 / s^2) of each vote [M]."""
        r = xp - alpha[u] - beta[u] * m[g]
        s2 = sigma[u] ** 2 + beta[u] ** 2 * V[g]
        return (self.NU + 1.0) / (self.NU + r * r / s2)

    def _volunteers(self, u, g, xp, w, m, V, U, prev):
        """M-step: ridge fit of x - PIVOT = alpha + beta (t - PIVOT) per volunteer with E[t], E[t^2];
        prev: beta [U] of the last step, whose mean is the centre of the scale prior."""
        z, Ez2 = m[g], m[g] ** 2 + V[g]
        lam0 = self.PRIOR_VOTES
        lam1 = self.PRIOR_VOTES * self.SLOPE_SPREAD**2
        s00 = np.bincount(u, weights=w, minlength=U) + lam0
        s01 = np.bincount(u, weights=w * z, minlength=U)
        s11 = np.bincount(u, weights=w * Ez2, minlength=U) + lam1
        # The zero point's prior is at 0; the scale's is centred on the vote-weighted mean
        # volunteer, not on beta = 1, which would act on every volunteer at once and fight the
        # anchors over the scale (a common 20 % compression came back as 14 %).
        n = np.bincount(u, minlength=U)
        b_bar = float(np.sum(n * prev) / max(n.sum(), 1))
        r0 = np.bincount(u, weights=w * xp, minlength=U)
        r1 = np.bincount(u, weights=w * xp * z, minlength=U) + lam1 * b_bar
        det = s00 * s11 - s01 * s01
        alpha = (s11 * r0 - s01 * r1) / det
        beta = np.clip((s00 * r1 - s01 * r0) / det, *self.SCALE_RANGE)
        alpha = (r0 - beta * s01) / s00  # the zero point that goes with a clipped scale
        resid2 = (xp - alpha[u] - beta[u] * z) ** 2 + beta[u] ** 2 * V[g]
        ss = np.bincount(u, weights=w * resid2, minlength=U)
        sigma = np.sqrt((ss + self.SIGMA_PRIOR_VOTES * self.SIGMA0**2) / (n + self.SIGMA_PRIOR_VOTES))
        return alpha, beta, np.maximum(sigma, self.SIGMA_FLOOR)

    def flag_posterior(self, table: VoteTable, known_flags: dict[int, int]) -> np.ndarray:
        """Dawid-Skene EM: P(true category | votes) [G, 3], known categories fixed."""
        G, U = table.n_galaxies, table.n_users
        u, g, c = table.user, table.galaxy, table.cat
        onehot = np.eye(3)[c]  # [N, 3]
        fixed = np.full(G, -1)
        for gi, k in known_flags.items():
            fixed[gi] = k
        # Start from the simple majority.
        T = np.zeros((G, 3))
        np.add.at(T, g, onehot)
        T = (T + 1e-3) / (T + 1e-3).sum(1, keepdims=True)
        T[fixed >= 0] = np.eye(3)[fixed[fixed >= 0]]
        for _ in range(self.FLAG_ITER):
            tv = T[g]  # [N, 3] true-category probabilities of each vote's galaxy
            counts = np.zeros((U, 3, 3))  # [U, true, voted]
            np.add.at(counts, u, tv[:, :, None] * onehot[:, None, :])
            pooled = counts.sum(0) + 1.0
            pooled /= pooled.sum(1, keepdims=True)
            conf = counts + self.FLAG_PRIOR * pooled[None]
            conf /= conf.sum(2, keepdims=True)
            prior = T.mean(0) + 1e-6
            logp = np.zeros((G, 3)) + np.log(prior)[None]
            np.add.at(logp, g, np.log(conf[u][np.arange(len(u)), :, c]))
            logp -= logp.max(1, keepdims=True)
            T = np.exp(logp)
            T /= T.sum(1, keepdims=True)
            T[fixed >= 0] = np.eye(3)[fixed[fixed >= 0]]
        return T

    def _finish_posterior(self, table, inc, err, n_meas, n_used, post) -> ConsensusArrays:
        """As ConsensusMethod._finish, with the flag the most probable category (ties: TIE_ORDER)."""
        G = table.n_galaxies
        best = np.full(G, TIE_ORDER[0])
        best_p = post[:, TIE_ORDER[0]].copy()
        for k in TIE_ORDER[1:]:
            better = post[:, k] > best_p + 1e-9
            best[better] = k
            best_p[better] = post[better, k]
        n_all = np.bincount(table.galaxy, minlength=G)
        enough = n_all >= self.min_votes
        accepted = (best == CAT_A) & (n_meas >= self.min_votes)
        flag = np.where(enough & ((best != CAT_A) | accepted), best, -1)
        return ConsensusArrays(
            inc=np.where(flag == CAT_A, inc, np.nan),
            inc_e=np.where(flag == CAT_A, err, np.nan),
            n=np.where(flag == CAT_A, n_used, n_all),
            flag=flag,
        )


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


# ---------------------------------------------------------------------------------------------
# Against a table of known inclinations the user supplies (held out from the method)
# ---------------------------------------------------------------------------------------------
TRUTH_BINS = ((0.0, 45.0), (45.0, 55.0), (55.0, 65.0), (65.0, 75.0), (75.0, 85.0), (85.0, 90.01))


def error_stats(pred: np.ndarray, true: np.ndarray) -> dict:
    """n, rms, bias (mean of pred - true), median |pred - true| in deg over finite pairs."""
    ok = np.isfinite(pred) & np.isfinite(true)
    d = pred[ok] - true[ok]
    if not d.size:
        return {"n": 0, "rms": float("nan"), "bias": float("nan"), "mad": float("nan")}
    return {"n": int(d.size), "rms": rms(d), "bias": float(d.mean()), "mad": float(np.median(np.abs(d)))}


def bin_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{min(hi, 90.0):g}"


def truth_scores(results: dict[str, ConsensusArrays], galaxies: np.ndarray, true: np.ndarray, groups: np.ndarray) -> dict:
    """Score every method's values on the same galaxies: those to which all of them give a value.

    results {label: ConsensusArrays}; galaxies [T] galaxy indices with known inclinations true [T]
    (deg); groups [T] a label per galaxy (e.g. the input table it was served from). Returns
    {"n_truth", "n_common", "methods": {label: {"all", "bins", "groups", "no_value"}}}."""
    values = {k: r.inc[galaxies] for k, r in results.items()}
    common = np.logical_and.reduce([np.isfinite(v) for v in values.values()]) if values else np.zeros(len(galaxies), bool)
    out: dict = {"n_truth": int(len(galaxies)), "n_common": int(common.sum()), "methods": {}}
    for k, v in values.items():
        p, t, gr = v[common], true[common], groups[common]
        entry = {
            "all": error_stats(p, t),
            "bins": {bin_label(lo, hi): error_stats(p[(t >= lo) & (t < hi)], t[(t >= lo) & (t < hi)]) for lo, hi in TRUTH_BINS},
            "groups": {str(name): error_stats(p[gr == name], t[gr == name]) for name in sorted(set(gr.tolist()))},
            "no_value": int((~np.isfinite(v)).sum()),
        }
        out["methods"][k] = entry
    return out


def main_kind(table: VoteTable, vote_kind: np.ndarray | None) -> np.ndarray:
    """Per galaxy [G]: the input table most of its votes came from (ties: the first name in sort
    order); "unknown" for every galaxy when vote_kind is None."""
    if vote_kind is None:
        return np.full(table.n_galaxies, "unknown", dtype=object)
    names = sorted(set(vote_kind.tolist()))
    counts = np.stack([np.bincount(table.galaxy[vote_kind == n], minlength=table.n_galaxies) for n in names]) if names else np.zeros((0, 0))
    out = np.array([names[i] for i in counts.argmax(0)], dtype=object) if names else np.zeros(0, dtype=object)
    return out


def linear_map(x: np.ndarray, ref: np.ndarray, u: np.ndarray, U: int, prior_votes: float = 10.0, spread: float = 10.0, pivot: float = 67.5):
    """Per-volunteer ridge fit x - ref = c0 + c1 (ref - pivot) on the pairs (x [M] vote, ref [M]
    known value, u [M] volunteer) with priors c0 ~ 0, c1 ~ 0 of prior_votes votes. Returns a
    function that maps votes (x, u) to calibrated values."""
    z, d = ref - pivot, x - ref
    s00 = np.bincount(u, minlength=U) + prior_votes
    s01 = np.bincount(u, weights=z, minlength=U)
    s11 = np.bincount(u, weights=z * z, minlength=U) + prior_votes * spread**2
    r0 = np.bincount(u, weights=d, minlength=U)
    r1 = np.bincount(u, weights=d * z, minlength=U)
    det = s00 * s11 - s01 * s01
    c0 = (s11 * r0 - s01 * r1) / det
    c1 = (s00 * r1 - s01 * r0) / det
    scale = np.clip(1.0 + c1, 0.6, 1.4)

    def apply(xv: np.ndarray, uv: np.ndarray) -> np.ndarray:
        return pivot + (xv - pivot - c0[uv]) / scale[uv]

    return apply


def compare_kinds(
    table: VoteTable, vote_kind: np.ndarray | None, known: dict[int, float], kinds: tuple[str, str] = ("calibration", "target")
) -> dict:
    """How the galaxies served from two input tables differ, and whether a calibration transfers.

    For each kind: galaxies (by the table most of their votes came from), votes per galaxy,
    volunteers, the share of votes of the three busiest volunteers, and the distribution of
    inclinations (known values where known, else the plain mean of the votes) in TRUTH_BINS.
    Transfer: each volunteer's linear calibration is fitted on their votes of one kind on
    galaxies of known inclination and applied to their votes of the other kind on such galaxies
    (and, as the reference, to the other half of the same kind's galaxies); single-vote RMS
    against the known values, raw and calibrated."""
    G, U = table.n_galaxies, table.n_users
    if vote_kind is None:
        return {"kinds": {}, "transfer": {}}
    meas = np.isfinite(table.inc)
    gk = main_kind(table, vote_kind)
    n_meas = np.bincount(table.galaxy[meas], minlength=G)
    with np.errstate(invalid="ignore", divide="ignore"):
        vote_mean = np.bincount(table.galaxy[meas], weights=table.inc[meas], minlength=G) / n_meas
    known_val = np.full(G, np.nan)
    for gi, v in known.items():
        known_val[gi] = v
    out: dict = {"kinds": {}, "transfer": {}}
    for kind in kinds:
        sel = (gk == kind) & (np.bincount(table.galaxy, minlength=G) > 0)
        sv = vote_kind == kind
        per_user = np.bincount(table.user[sv], minlength=U)
        top3 = float(np.sort(per_user)[-3:].sum() / max(per_user.sum(), 1))
        inc = np.where(np.isfinite(known_val), known_val, vote_mean)[sel]
        inc = inc[np.isfinite(inc)]
        hist = {bin_label(lo, hi): float(np.mean((inc >= lo) & (inc < hi))) if inc.size else float("nan") for lo, hi in TRUTH_BINS}
        nv = np.bincount(table.galaxy[sv], minlength=G)[sel]
        out["kinds"][kind] = {
            "galaxies": int(sel.sum()),
            "with_known_inc": int(np.isfinite(known_val[sel]).sum()),
            "votes": int(sv.sum()),
            "votes_per_galaxy": float(nv.mean()) if nv.size else float("nan"),
            "share_3plus": float(np.mean(n_meas[sel] >= 3)) if sel.any() else float("nan"),
            "volunteers": int((per_user > 0).sum()),
            "top3_share": top3,
            "inc_hist": hist,
            "inc_mean": float(inc.mean()) if inc.size else float("nan"),
        }
    on_known = meas & np.isfinite(known_val[table.galaxy])
    x, ref, u, g = table.inc, known_val[table.galaxy], table.user, table.galaxy
    half = (np.arange(G) % 2) == 0  # a fixed split of the galaxies
    for a, b in (kinds, kinds[::-1]):
        fit = on_known & (vote_kind == a)
        test = on_known & (vote_kind == b)
        same_fit = fit & half[g]
        same_test = fit & ~half[g]
        f_other = linear_map(x[fit], ref[fit], u[fit], U)
        f_same = linear_map(x[same_fit], ref[same_fit], u[same_fit], U)
        out["transfer"][f"{a} -> {b}"] = {
            "votes": int(test.sum()),
            "raw": error_stats(x[test], ref[test]),
            "calibrated": error_stats(f_other(x[test], u[test]), ref[test]),
        }
        out["transfer"][f"{a} -> {a} (other half)"] = {
            "votes": int(same_test.sum()),
            "raw": error_stats(x[same_test], ref[same_test]),
            "calibrated": error_stats(f_same(x[same_test], u[same_test]), ref[same_test]),
        }
    return out


def format_truth_report(rep: dict) -> str:
    """The report of zoo.consensus.truth_report as consensus_report --truth prints it: methods side
    by side (RMS / bias / N in deg), overall, by inclination bin and by input table; split-half
    agreement; how calibration galaxies and ordinary targets differ and what a calibration transfers."""
    names = list(rep["methods"])
    width = 24

    def cell(s: dict) -> str:
        return f"{s['rms']:5.2f} {s['bias']:+5.2f} {s['n']:>4}" if s["n"] else "-"

    def row(title: str, cells: list[str]) -> str:
        return f"{title:28s}" + "".join(f"{c:>{width}s}" for c in cells)

    lines = [
        f"Truth table: {rep['truth_rows']} galaxies, {rep['truth_in_votes']} with votes; scored: {rep['n_common']} with >= "
        f"{rep['min_votes']} measurements and a value from every method. The truth galaxies are left out of the "
        f"{rep['anchors']} known inclinations the methods calibrate on.",
        "",
        "Against the truth table: RMS, bias (method - truth) and N, deg",
        row("", names),
        row("all", [cell(rep["methods"][n]["all"]) for n in names]),
        row("median |error|", [f"{rep['methods'][n]['all']['mad']:5.2f}" for n in names]),
    ]
    bins = list(next(iter(rep["methods"].values()))["bins"]) if names else []
    lines.append("by inclination (truth)")
    for b in bins:
        lines.append(row(f"  {b} deg", [cell(rep["methods"][n]["bins"][b]) for n in names]))
    groups = sorted({k for n in names for k in rep["methods"][n]["groups"]})
    lines.append("by input table (most of the galaxy's votes)")
    for gname in groups:
        lines.append(row(f"  {gname}", [cell(rep["methods"][n]["groups"].get(gname, {"n": 0})) for n in names]))
    lines.append(row("truth galaxies without value", [str(rep["methods"][n]["no_value"]) for n in names]))
    lines.append("")
    lines.append(
        f"Split-half: RMS between the consensus of two random halves of the volunteers, >= 2 votes in each half ({rep['splits']} splits)"
    )
    lines.append(row("", names))
    sh = rep["split_half"]
    lines.append(
        row("  RMS +- std (galaxies)", [f"{sh[n]['rms_mean']:.2f}+-{sh[n]['rms_std']:.2f} ({sh[n]['galaxies_mean']:.0f})" for n in names])
    )
    kinds = rep["kinds"]["kinds"]
    if kinds:
        kn = list(kinds)
        lines.append("")
        lines.append("Calibration galaxies and ordinary targets (galaxies by the input table most of their votes came from)")
        lines.append(f"{'':28s}" + "".join(f"{k:>16s}" for k in kn))
        for key, title, fmt in (
            ("galaxies", "galaxies", "{:d}"),
            ("with_known_inc", "  with known inclination", "{:d}"),
            ("votes", "votes", "{:d}"),
            ("votes_per_galaxy", "votes per galaxy", "{:.2f}"),
            ("share_3plus", "share with >= 3 measurements", "{:.1%}"),
            ("volunteers", "volunteers", "{:d}"),
            ("top3_share", "votes by the 3 busiest", "{:.1%}"),
            ("inc_mean", "mean inclination", "{:.1f}"),
        ):
            lines.append(f"{title:28s}" + "".join(f"{fmt.format(kinds[k][key]):>16s}" for k in kn))
        for b in next(iter(kinds.values()))["inc_hist"]:
            lines.append(f"{'  inc ' + b + ' deg':28s}" + "".join(f"{kinds[k]['inc_hist'][b]:>16.1%}" for k in kn))
        lines.append("  (inclination: the known value where known, else the plain mean of the votes)")
        lines.append("")
        lines.append("Does a per-volunteer linear calibration transfer? Single votes on galaxies of known inclination: RMS, bias, N")
        lines.append(f"{'fitted on -> applied to':40s}{'raw votes':>22s}{'calibrated':>22s}")
        for k, v in rep["kinds"]["transfer"].items():
            lines.append(f"{k:40s}{cell(v['raw']):>22s}{cell(v['calibrated']):>22s}")
    return "\n".join(lines)
