"""Artefact features of the outlier score, measured on display values before the percentile
scale (pure numpy/scipy; no Django).

The latent model's input is divided by a high percentile of each image, so a bright star or a
cosmic-ray hit dims the rest of the image and lowers the reconstruction residual instead of
raising it. These features look at the display values themselves ([N, 128, 128], galaxy bright on
a dark sky, in [0, 1]; ml.preprocess.display_grey), where that scaling has not happened:

- ``saturated_blob``: log(1 + area x roundness) of the largest saturated region near the centre
  (centroid within CENTRAL_RADIUS of the side) that does not touch the frame's edge: a star on
  the galaxy has a large round clipped core; a galaxy's clipped core is smaller or elongated,
  field stars lie elsewhere and blank wedges of rotated frames touch the edge;
- ``cosmic_ray``: log(1 + the number of saturated pixels standing above the median of their
  3 x 3 neighbourhood by more than COSMIC_STEP and COSMIC_SIGMAS x the image's pixel noise),
  sharp hits narrower than any point-spread function (the noise term keeps heavily stretched
  noisy frames, whose noise peaks saturate, out);
- ``trail``: log(1 + the largest line integral of the white top-hat residual of the 2x2-binned
  image, over straight lines through the inscribed circle, above the median line of the same
  angle), a Radon transform: satellite trails.

Each feature becomes a one-sided z against the normal training distribution (its median and its
99th percentile there: z = 2.326 at the 99th percentile of a normal tail), and the artefact part
of the outlier score is weight x the largest over features of max(0, z - threshold): zero for almost
every normal image, large for the artefacts. Weight and threshold are chosen on a calibration set
of injected anomalies (a seed of its own, never the evaluation's).
"""

from __future__ import annotations

import functools

import numpy as np

FEATURES = ("saturated_blob", "cosmic_ray", "trail")
#: Display value at and above which a pixel counts as saturated (8-bit 254 and 255).
SATURATED = 253.5 / 255.0
#: Height above the 3 x 3 median (display units) of a sharp, saturated hit ...
COSMIC_STEP = 0.3
#: ... and in units of the image's pixel noise.
COSMIC_SIGMAS = 5.0
#: Floor of the pixel noise (display units: one 8-bit step).
MIN_NOISE = 1.0 / 255.0
#: Largest distance of a saturated region's centroid from the centre (fraction of the side).
CENTRAL_RADIUS = 0.2
#: Side (pixels of the 2x2-binned image) of the white top-hat's square that removes smooth light.
TOPHAT = 3
#: Angles of the Radon transform (degrees, 0 to 180 in this step).
RADON_STEP_DEG = 6.0
#: Normal-tail z at the 99th percentile (the one-sided z of a standard normal).
Z99 = 2.326
#: Floor of a feature's scale on the normal set.
MIN_SCALE = 1e-6
#: Weights and thresholds tried when the artefact part is fitted on a calibration set.
WEIGHT_GRID = (2.0, 4.0, 8.0, 16.0, 32.0)
THRESHOLD_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def _saturated_blob(sat: np.ndarray) -> float:
    """Area x roundness of the largest saturated region of one image [H, W] whose centroid lies
    within CENTRAL_RADIUS of the centre and that avoids the edge."""
    from scipy import ndimage

    lab, n = ndimage.label(sat)
    if n == 0:
        return 0.0
    h, w = sat.shape
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    yy, xx = np.nonzero(lab)
    cy = np.bincount(lab[yy, xx], weights=yy, minlength=n + 1) / np.maximum(sizes, 1)
    cx = np.bincount(lab[yy, xx], weights=xx, minlength=n + 1) / np.maximum(sizes, 1)
    sizes[np.hypot(cx - (w - 1) / 2, cy - (h - 1) / 2) > CENTRAL_RADIUS * min(h, w)] = 0
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    sizes[edge] = 0
    big = int(sizes.argmax())
    if sizes[big] < 3:
        return float(sizes[big])
    yy, xx = np.nonzero(lab == big)
    cov = np.cov(np.vstack([xx, yy]).astype(np.float64)) + np.eye(2) / 12.0  # a pixel's own extent
    ev = np.linalg.eigvalsh(cov)
    return float(sizes[big] * ev[0] / ev[1])


@functools.cache
def _radon_matrix(side: int) -> tuple:
    """Sparse [angles x bins, side^2] sums of the pixels of the inscribed circle along lines."""
    from scipy import sparse

    c = (side - 1) / 2.0
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    x, y = x.ravel() - c, y.ravel() - c
    inside = np.flatnonzero(np.hypot(x, y) <= side / 2.0)
    bins = side + 1
    angles = np.radians(np.arange(0.0, 180.0, RADON_STEP_DEG))
    rows, cols = [], []
    for j, a in enumerate(angles):
        t = np.rint(x[inside] * np.cos(a) + y[inside] * np.sin(a)).astype(int) + bins // 2
        rows.append(j * bins + t)
        cols.append(inside)
    r, cc = np.concatenate(rows), np.concatenate(cols)
    m = sparse.csr_matrix((np.ones(len(r)), (r, cc)), shape=(len(angles) * bins, side * side))
    return m, len(angles), bins


def artefact_features(g: np.ndarray) -> np.ndarray:
    """Display values [N, H, W] (H = W, even; ml.preprocess.display_grey) -> float64 [N, 3]
    features in the order of FEATURES."""
    from scipy import ndimage

    g = np.asarray(g, dtype=np.float32)
    n, h, w = g.shape
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    sat = g >= SATURATED
    # sharp hits: saturated pixels far above the median of their 3 x 3 neighbourhood (edge pixels
    # repeated), taken only where a pixel is saturated; noise from neighbouring-pixel differences
    noise = np.maximum(1.4826 * np.median(np.abs(np.diff(g, axis=2)).reshape(n, -1), axis=1) / np.sqrt(2.0), MIN_NOISE)
    step = np.maximum(COSMIC_STEP, COSMIC_SIGMAS * noise)
    k, yy, xx = np.nonzero(sat)
    pad = np.pad(g, ((0, 0), (1, 1), (1, 1)), mode="edge")
    near = np.stack([pad[k, yy + dy, xx + dx] for dy in range(3) for dx in range(3)], 1)
    hits = g[k, yy, xx] - np.partition(near, 4, axis=1)[:, 4] > step[k] if len(k) else np.zeros(0, bool)
    out[:, 1] = np.log1p(np.bincount(k[hits], minlength=n))
    for j in range(n):
        out[j, 0] = np.log1p(_saturated_blob(sat[j]))
    sky = np.median(g.reshape(n, -1), axis=1)[:, None, None]
    binned = (g - sky).reshape(n, h // 2, 2, w // 2, 2).mean((2, 4))
    top = (binned - ndimage.grey_opening(binned, size=(1, TOPHAT, TOPHAT))).reshape(n, -1).astype(np.float64)
    m, angles, bins = _radon_matrix(h // 2)
    proj = np.asarray(m @ top.T).T.reshape(n, angles, bins)
    line = (proj.max(2) - np.median(proj, axis=2)).max(1)
    out[:, 2] = np.log1p(np.clip(line, 0.0, None))
    return out


def fit_scales(features: np.ndarray) -> dict:
    """Centres (medians) and scales ((99th percentile - median) / Z99) of features [N, F] of a
    normal set."""
    q50, q99 = np.percentile(np.asarray(features, dtype=np.float64), [50.0, 99.0], axis=0)
    return {"features": list(FEATURES), "center": q50.tolist(), "scale": np.maximum((q99 - q50) / Z99, MIN_SCALE).tolist()}


def artefact_part(features: np.ndarray, state: dict) -> np.ndarray:
    """weight x the largest over features of max(0, z - threshold) [N], z the one-sided
    normal-tail z of each feature."""
    z = (np.asarray(features, dtype=np.float64) - np.asarray(state["center"])) / np.asarray(state["scale"])
    return float(state["weight"]) * np.clip(z - float(state["threshold"]), 0.0, None).max(1)


def expected_top(
    score: np.ndarray, kinds: list[str | None], shown: int = 10, size: int = 2000, prevalence: float = 0.02, reps: int = 200
) -> float:
    """Expected number of anomalies among the ``shown`` highest scores of a set of ``size``
    images at ``prevalence`` (anomaly kinds in turn, as ml.latent.anomalies.anomaly_set draws
    them), by resampling a calibration set: score [N], kinds [N] (None for a normal image)."""
    rng = np.random.default_rng(0)
    normal = np.flatnonzero([k is None for k in kinds])
    names = sorted({k for k in kinds if k is not None})
    by_kind = [np.flatnonzero([k == name for k in kinds]) for name in names]
    n_anom = max(len(names), int(round(prevalence * size)))
    counts = [n_anom // len(names) + (j < n_anom % len(names)) for j in range(len(names))]
    hits = 0.0
    for _ in range(reps):
        anom = np.concatenate([rng.choice(idx, c) for idx, c in zip(by_kind, counts)])
        pick = np.concatenate([rng.choice(normal, size - n_anom), anom])
        lab = np.r_[np.zeros(size - n_anom), np.ones(n_anom)]
        hits += lab[np.argsort(-score[pick], kind="stable")[:shown]].sum()
    return hits / reps


def fit_combination(features: np.ndarray, latent: np.ndarray, kinds: list[str | None], scales: dict, top_target: float = 8.0) -> dict:
    """Weight and threshold (WEIGHT_GRID x THRESHOLD_GRID) of the artefact part on a calibration
    set: features [N, F], the latent part of the score [N], the anomaly kind of each image (None:
    normal). Of the pairs whose latent + artefact part puts at least ``top_target`` anomalies among
    the first 10 (expected_top), the one of the highest AUROC; without such a pair, the one that
    puts the most there. Returns the scales with weight, threshold, that AUROC and expected top 10."""
    from ml.latent.density import auroc

    anomalous = np.array([k is not None for k in kinds])
    rows = []
    for w in WEIGHT_GRID:
        for t in THRESHOLD_GRID:
            state = {**scales, "weight": w, "threshold": t}
            s = latent + artefact_part(features, state)
            rows.append((auroc(s, anomalous), expected_top(s, kinds), state))
    ok = [r for r in rows if r[1] >= top_target]
    a, top, state = max(ok, key=lambda r: r[0]) if ok else max(rows, key=lambda r: (r[1], r[0]))
    return {**state, "calibration_auroc": a, "calibration_top10": top}
