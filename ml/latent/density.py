"""Outlier score from reconstruction error and latent density (pure numpy; no Django).

The density is a Gaussian mixture (full covariances, EM) on the first principal components of
the L2-normalised embeddings, in the spirit of the isolation forest on the first 10 PCs of Stein
et al. (2021, arXiv:2110.13151); a mixture's state is a few arrays, so it ships as JSON and a
refit on the catalog's embeddings can be stored in the database. Each part (the log
reconstruction error and the negative log density) is turned into a robust z-score against the
set it was fitted on (median and MAD); the outlier score is their weighted sum plus, when the
state carries one, the artefact part of ml.latent.artefacts (features of the display values before
the percentile scale, fitted once on the training distribution and kept by refits): higher is more
unusual.
"""

from __future__ import annotations

import numpy as np

#: Principal components the mixture sees (Stein et al. 2021 use the first 10).
DENSITY_PCS = 10
#: Mixture components.
MIXTURE_K = 8
#: Ridge added to each component's covariance (units of PC variance).
COV_RIDGE = 1e-4
#: Floor of a robust scale (avoids division by zero on degenerate fitting sets).
MIN_SCALE = 1e-6
#: Weights of the two parts in the score.
DEFAULT_WEIGHTS = {"recon": 1.0, "density": 1.0}


def pca_fit(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean [D], the first k principal axes [k, D] and their variances [k] of x [N, D]."""
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(k, vt.shape[0])
    return mean, vt[:k], (s[:k] ** 2) / max(len(x) - 1, 1)


def robust_center_scale(v: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 x MAD of v."""
    med = float(np.median(v))
    return med, max(float(np.median(np.abs(v - med)) * 1.4826), MIN_SCALE)


def _logpdf_components(y: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """log(w_k N(y | m_k, C_k)) [N, K] for y [N, d]."""
    n, d = y.shape
    out = np.empty((n, len(weights)))
    for k in range(len(weights)):
        chol = np.linalg.cholesky(covs[k])
        sol = np.linalg.solve(chol, (y - means[k]).T)
        maha = (sol * sol).sum(0)
        logdet = 2.0 * np.log(np.diag(chol)).sum()
        out[:, k] = np.log(weights[k] + 1e-300) - 0.5 * (maha + logdet + d * np.log(2 * np.pi))
    return out


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(1, keepdims=True)))[:, 0]


def gmm_fit(y: np.ndarray, k: int = MIXTURE_K, iters: int = 200, seed: int = 0, tol: float = 1e-6) -> dict:
    """EM fit of a full-covariance Gaussian mixture to y [N, d]; deterministic (k-means++ start
    from ``seed``). Returns dict(weights [K], means [K, d], covs [K, d, d])."""
    n, d = y.shape
    k = max(1, min(k, n // (2 * d + 2)))
    rng = np.random.default_rng(seed)
    centres = [y[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((y[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(y[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else y[rng.integers(n)])
    means = np.array(centres)
    var = y.var(0).mean() + COV_RIDGE
    covs = np.repeat((np.eye(d) * var)[None], k, 0)
    weights = np.full(k, 1.0 / k)
    prev = -np.inf
    for _ in range(iters):
        lp = _logpdf_components(y, weights, means, covs)
        ll = _logsumexp(lp)
        resp = np.exp(lp - ll[:, None])
        nk = resp.sum(0) + 1e-10
        weights = nk / n
        means = (resp.T @ y) / nk[:, None]
        for j in range(k):
            r = y - means[j]
            covs[j] = (resp[:, j, None] * r).T @ r / nk[j] + np.eye(d) * COV_RIDGE
        cur = float(ll.mean())
        if cur - prev < tol:
            break
        prev = cur
    return {"weights": weights, "means": means, "covs": covs}


class LatentDensity:
    """PCA + Gaussian mixture + robust scales: score(emb, recon_error) -> outlier score [N]."""

    def __init__(self, state: dict):
        self.state = state
        self._arr = {
            k: np.asarray(state[k], dtype=np.float64) for k in ("pca_mean", "pca_components", "gmm_weights", "gmm_means", "gmm_covs")
        }

    @classmethod
    def fit(
        cls,
        emb: np.ndarray,
        recon_error: np.ndarray,
        pcs: int = DENSITY_PCS,
        k: int = MIXTURE_K,
        weights: dict | None = None,
        note: str = "",
        artefacts: dict | None = None,
    ) -> LatentDensity:
        """Fit on embeddings [N, D] and reconstruction errors [N] of a normal set; ``artefacts``
        (the artefact part's state, ml.latent.artefacts) is carried into the new state."""
        emb = np.asarray(emb, dtype=np.float64)
        rec = np.asarray(recon_error, dtype=np.float64)
        if len(emb) < 4 * pcs:
            raise ValueError(f"need at least {4 * pcs} embeddings to fit the density, got {len(emb)}")
        mean, comps, var = pca_fit(emb, pcs)
        y = (emb - mean) @ comps.T / np.sqrt(var + 1e-12)
        comps = comps / np.sqrt(var + 1e-12)[:, None]  # whitened axes
        g = gmm_fit(y, k)
        state = {
            "pca_mean": mean.tolist(),
            "pca_components": comps.tolist(),
            "gmm_weights": g["weights"].tolist(),
            "gmm_means": g["means"].tolist(),
            "gmm_covs": g["covs"].tolist(),
            "weights": dict(weights or DEFAULT_WEIGHTS),
            "n_fit": int(len(emb)),
            "note": note,
            **({"artefacts": artefacts} if artefacts else {}),
        }
        dens = cls({**state, "recon_center": 0.0, "recon_scale": 1.0, "density_center": 0.0, "density_scale": 1.0})
        rc, rs = robust_center_scale(np.log(rec + 1e-12))
        dc, ds = robust_center_scale(dens.neg_log_density(emb))
        dens.state.update(recon_center=rc, recon_scale=rs, density_center=dc, density_scale=ds)
        return dens

    def neg_log_density(self, emb: np.ndarray) -> np.ndarray:
        """-log p(PCs of emb) under the mixture [N]."""
        a = self._arr
        y = (np.asarray(emb, dtype=np.float64) - a["pca_mean"]) @ a["pca_components"].T
        return -_logsumexp(_logpdf_components(y, a["gmm_weights"], a["gmm_means"], a["gmm_covs"]))

    def parts(self, emb: np.ndarray, recon_error: np.ndarray) -> dict[str, np.ndarray]:
        """Robust z-scores of the two latent parts: recon (log error) and density (-log p)."""
        s = self.state
        zr = (np.log(np.asarray(recon_error, dtype=np.float64) + 1e-12) - s["recon_center"]) / s["recon_scale"]
        zd = (self.neg_log_density(emb) - s["density_center"]) / s["density_scale"]
        return {"recon": zr, "density": zd}

    def latent_score(self, emb: np.ndarray, recon_error: np.ndarray) -> np.ndarray:
        """The weighted sum of the two latent parts [N] float64 (refits change it)."""
        p = self.parts(emb, recon_error)
        w = self.state["weights"]
        return w["recon"] * p["recon"] + w["density"] * p["density"]

    def artefact_part(self, features: np.ndarray) -> np.ndarray:
        """The artefact part [N] float64 of features [N, F]; zeros when the state has none."""
        a = self.state.get("artefacts")
        if not a:
            return np.zeros(len(features))
        from ml.latent.artefacts import artefact_part

        return artefact_part(features, a)

    def score(self, emb: np.ndarray, recon_error: np.ndarray, artefact: np.ndarray | None = None) -> np.ndarray:
        """Outlier score [N] float32: the latent parts' weighted sum plus the artefact part
        [N] (artefact_part of the image's features; none: 0). Higher = more unusual."""
        s = self.latent_score(emb, recon_error)
        return (s if artefact is None else s + np.asarray(artefact, dtype=np.float64)).astype(np.float32)


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of score for the boolean labels ``positive`` (ties count half)."""
    score = np.asarray(score, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)  # ties get their average rank
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
