"""A Bayes reference for the Sérsic network: each galaxy's posterior under the network's own
training prior, by importance sampling with the fitting engine's renderer.

The Cramér-Rao bound (:mod:`ml.morph.crb`) is that of an unbiased estimator whose parameters are
free over the whole real line. A network trained on a bounded prior (Sérsic index 0.5-6, axis
ratio 0.2-1, signal-to-noise 10-200, ...) approximates the posterior of that prior, and beats the
bound wherever the data alone leave a parameter loose against the prior's width. How far it is
from the best that any estimator with the same prior can do is read here against the posterior
itself, computed with the exact likelihood of the image:

- coordinates v = (x0, y0, ln flux, ln re, n, s1, s2), s = sqrt(e) (cos 2 theta, sin 2 theta)
  with the distortion e = (1 - q^2) / (1 + q^2), in which the prior's density is finite (a uniform
  q has a density growing as 1 / e towards round galaxies in the distortion plane itself);
- the prior of the training renderer (:class:`SersicPrior`, from the weights' model card): centre
  uniform within the offset, ln re and n and q uniform, theta uniform, and the flux log-uniform
  between the signal-to-noise bounds of the unit-flux model of each sample's shape;
- the likelihood Gaussian in the data's sigma map with the sky known, as the fitter and the bound
  take them;
- two rounds of proposals, each a multivariate Student t: the first from the moments (in v) of
  the network's own posterior samples, widened; the second from the first round's weighted
  moments. The weighted median of the second round's samples is the reference estimate.

Pure PyTorch and NumPy: no Django.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fitting.engine.fit import physical_to_m
from fitting.engine.model import Renderer, model_spec
from fitting.engine.profiles import q_to_e
from ml.morph.crb import fisher
from ml.morph.render import MorphConfig

#: Proposal samples per galaxy of the two rounds.
DRAWS = (768, 1536)
#: Degrees of freedom of the Student-t proposals (an integer: the chi-square is a sum of squares).
DF = 10.0
#: Widening (in standard deviations) of the first round's proposal over the network's posterior,
#: and of the second round's over the first round's weighted moments.
WIDEN = (1.2, 1.15)
#: Effective sample size below which a round's weighted moments are not trusted for the next.
MIN_ESS = 20.0
#: Samples rendered at a time.
BLOCK = 128


@dataclass(frozen=True)
class SersicPrior:
    """The training renderer's prior (:func:`ml.morph.render._draw_chunk`) at one cutout side."""

    centre: float
    offset: float
    ln_re: tuple[float, float]
    n: tuple[float, float]
    q: tuple[float, float]
    ln_snr: tuple[float, float]

    @classmethod
    def of(cls, cfg: MorphConfig) -> SersicPrior:
        re_hi = min(cfg.re_range[1], cfg.re_max_fraction * cfg.size)
        return cls(
            centre=(cfg.size - 1) / 2.0,
            offset=cfg.offset,
            ln_re=(math.log(cfg.re_range[0]), math.log(re_hi)),
            n=tuple(cfg.n_range),
            q=tuple(cfg.q_range),
            ln_snr=(math.log(cfg.snr_range[0]), math.log(cfg.snr_range[1])),
        )


def training_prior(card: dict, kind: str, size: int) -> MorphConfig:
    """The renderer configuration a network of ``kind`` was trained on, at cutout side ``size``,
    from the weights' model card (a network kept from an earlier run carries its own under
    ``made_by``)."""
    entry = next((m for m in card.get("members", []) if m.get("kind") == kind), None)
    if entry is None:
        raise ValueError(f"the model card has no {kind} network")
    td = (entry.get("made_by") or {}).get("training_data") or card.get("training_data")
    if not td or "render" not in td:
        raise ValueError(f"the model card does not say how the {kind} network's training images were drawn")
    fields = set(MorphConfig.__dataclass_fields__)
    render = {k: tuple(v) if isinstance(v, list) else v for k, v in td["render"].items() if k in fields}
    return MorphConfig(**{**render, "kind": kind, "size": size})


def to_v(p: Tensor) -> Tensor:
    """Physical columns (x, y, flux, re, n, q, theta) [..., 7] to the sampling coordinates v."""
    x, y, f, re, n, q, th = p.unbind(-1)
    r = torch.sqrt(q_to_e(q.clamp(1e-3, 1.0)))
    return torch.stack(
        [x, y, torch.log(f.clamp_min(1e-30)), torch.log(re.clamp_min(1e-6)), n, r * torch.cos(2 * th), r * torch.sin(2 * th)], -1
    )


def from_v(v: Tensor) -> Tensor:
    """Sampling coordinates v [..., 7] to physical columns (x, y, flux, re, n, q, theta)."""
    x, y, lf, lr, n, s1, s2 = v.unbind(-1)
    e = (s1 * s1 + s2 * s2).clamp(max=1.0 - 1e-9)
    q = torch.sqrt((1.0 - e) / (1.0 + e))
    return torch.stack([x, y, torch.exp(lf), torch.exp(lr), n, q, 0.5 * torch.atan2(s2, s1)], -1)


def log_prior(v: Tensor, prior: SersicPrior, ln_snr: Tensor) -> Tensor:
    """Log prior density [S] of samples v [S, 7]; ln_snr [S]: each sample's ln signal-to-noise
    (ln flux + ln ||unit-flux model|| - ln sky sigma), whose log-uniform prior sets the flux's."""
    x, y, _, lr, n, s1, s2 = v.unbind(-1)
    e = s1 * s1 + s2 * s2
    q = torch.sqrt(((1.0 - e) / (1.0 + e)).clamp_min(1e-12))
    inside = (
        ((x - prior.centre).abs() <= prior.offset)
        & ((y - prior.centre).abs() <= prior.offset)
        & (lr >= prior.ln_re[0])
        & (lr <= prior.ln_re[1])
        & (n >= prior.n[0])
        & (n <= prior.n[1])
        & (e < 1.0)
        & (q >= prior.q[0])
        & (q <= prior.q[1])
        & (ln_snr >= prior.ln_snr[0])
        & (ln_snr <= prior.ln_snr[1])
    )
    const = -2.0 * math.log(2.0 * prior.offset) - math.log(prior.ln_re[1] - prior.ln_re[0]) - math.log(prior.n[1] - prior.n[0])
    const += -math.log(prior.q[1] - prior.q[0]) - math.log(math.pi) - math.log(prior.ln_snr[1] - prior.ln_snr[0])
    # p(s) = p(q) |dq/de| / pi with |dq/de| = 1 / (q (1 + e)^2)
    lp = const - torch.log(q) - 2.0 * torch.log1p(e.clamp(max=1.0))
    return torch.where(inside, lp, torch.full_like(lp, -math.inf))


class _Mixture:
    """Equal-weight mixture of multivariate Student-t components (mean [7], Cholesky factor [7, 7])."""

    def __init__(self, parts: list[tuple[Tensor, Tensor]]) -> None:
        self.parts = parts

    def sample(self, count: int, gen: torch.Generator) -> Tensor:
        out = []
        for k, (mean, chol) in enumerate(self.parts):
            c = count // len(self.parts) + (1 if k < count % len(self.parts) else 0)
            z = torch.randn(c, len(mean), generator=gen, dtype=mean.dtype) @ chol.T
            # chi-square with DF (an integer) degrees of freedom, from the seeded generator
            u = torch.randn(c, int(DF), generator=gen, dtype=mean.dtype).square().sum(1) / DF
            out.append(mean + z / torch.sqrt(u)[:, None])
        return torch.cat(out)

    def log_pdf(self, v: Tensor) -> Tensor:
        d = v.shape[1]
        terms = []
        for mean, chol in self.parts:
            sol = torch.linalg.solve_triangular(chol, (v - mean).T, upper=False).T
            m2 = (sol * sol).sum(1)
            norm = (
                math.lgamma((DF + d) / 2) - math.lgamma(DF / 2) - 0.5 * d * math.log(DF * math.pi) - torch.log(torch.diagonal(chol)).sum()
            )
            terms.append(norm - 0.5 * (DF + d) * torch.log1p(m2 / DF))
        return torch.logsumexp(torch.stack(terms), 0) - math.log(len(self.parts))


def _chol(cov: Tensor, widen: float) -> Tensor:
    cov = 0.5 * (cov + cov.T) * widen**2
    jitter = 1e-9 * torch.diagonal(cov).clamp_min(1e-12).mean()
    for _ in range(8):
        try:
            return torch.linalg.cholesky(cov + jitter * torch.eye(len(cov), dtype=cov.dtype))
        except torch.linalg.LinAlgError:
            jitter *= 100.0
    return torch.diag(torch.sqrt(torch.diagonal(cov).clamp_min(1e-12)))


def _weighted_moments(v: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    w = w / w.sum()
    mean = (w[:, None] * v).sum(0)
    d = v - mean
    return mean, (w[:, None] * d).T @ d


def _prior_widths(prior: SersicPrior) -> Tensor:
    """One standard deviation per coordinate of v as wide as the prior, to keep the curvature's
    inverse finite where the data say nothing (a round galaxy's s, say)."""
    return torch.tensor(
        [prior.offset, prior.offset, prior.ln_snr[1] - prior.ln_snr[0], prior.ln_re[1] - prior.ln_re[0], prior.n[1] - prior.n[0], 1.0, 1.0],
        dtype=torch.float64,
    )


def _curvature_cov(r: Renderer, v: Tensor, sigma: Tensor, prior: SersicPrior) -> Tensor:
    """Inverse of the likelihood's Fisher matrix in v at the point v [7] (the engine's Jacobian,
    with d(e1, e2)/d(s1, s2) = |s| I + s s^T / |s|), regularised by the prior's widths."""
    m = physical_to_m(_engine_phys(from_v(v[None]), prior, flux=True), r.spec)
    f_m = fisher(r, m, sigma[None])[0]
    a = torch.eye(7, dtype=torch.float64)
    sv = v[5:7]
    rad = float(torch.linalg.norm(sv).clamp_min(1e-6))
    a[5:7, 5:7] = rad * torch.eye(2, dtype=torch.float64) + torch.outer(sv, sv) / rad
    f_v = a.T @ f_m @ a + torch.diag(1.0 / _prior_widths(prior) ** 2)
    return torch.linalg.inv(f_v)


def _log_weights(
    r: Renderer, v: Tensor, image: Tensor, inv_sigma: Tensor, prior: SersicPrior, ln_sky_sigma: float, proposal: _Mixture
) -> Tensor:
    """log(likelihood x prior / proposal) [S] of samples v [S, 7] of one galaxy; image and
    inv_sigma [H, W] in the renderer's dtype (the chi-square is summed in float64)."""
    out = torch.empty(len(v), dtype=torch.float64)
    for a in range(0, len(v), BLOCK):
        vb = v[a : a + BLOCK]
        p = from_v(vb)
        # render at unit flux inside the prior's box (samples outside it get a zero prior anyway)
        unit, _ = r.render(physical_to_m(_engine_phys(p, prior), r.spec).to(r.dtype), need_grad=False)
        norm = torch.sqrt(torch.square(unit).sum((1, 2), dtype=torch.float64))
        res = (image - unit * p[:, 2, None, None].to(r.dtype)) * inv_sigma
        chi2 = torch.square(res).sum((1, 2), dtype=torch.float64)
        ln_snr = vb[:, 2] + torch.log(norm.clamp_min(1e-300)) - ln_sky_sigma
        out[a : a + BLOCK] = -0.5 * chi2 + log_prior(vb, prior, ln_snr) - proposal.log_pdf(vb)
    return out


def _engine_phys(p: Tensor, prior: SersicPrior, flux: bool = False) -> Tensor:
    """Engine physical parameters [S, 8] (sky 0; unit flux unless ``flux``) of physical columns
    p [S, 7], clamped into the prior's box so that every sample renders."""
    lo, hi = prior.centre - prior.offset, prior.centre + prior.offset
    x, y = p[:, 0].clamp(lo, hi), p[:, 1].clamp(lo, hi)
    re = p[:, 3].clamp(math.exp(prior.ln_re[0]), math.exp(prior.ln_re[1]))
    f = p[:, 2] if flux else torch.ones_like(x)
    return torch.stack([x, y, torch.zeros_like(x), f, re, p[:, 4].clamp(*prior.n), p[:, 5].clamp(prior.q[0], 1.0), p[:, 6]], 1)


def _weighted_median(x: Tensor, w: Tensor) -> float:
    order = torch.argsort(x)
    cw = torch.cumsum(w[order], 0)
    k = int(torch.searchsorted(cw, 0.5 * cw[-1]))
    return float(x[order][min(k, len(x) - 1)])


def summarise(v: Tensor, w: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Weighted median and standard deviation [7] of the physical columns of samples v [S, 7];
    theta about the weighted circular mean of 2 theta."""
    p = from_v(v)
    w = w / w.sum()
    th = p[:, 6]
    centre = 0.5 * math.atan2(float((w * torch.sin(2 * th)).sum()), float((w * torch.cos(2 * th)).sum()))
    p[:, 6] = centre + torch.remainder(th - centre + math.pi / 2, math.pi) - math.pi / 2
    med = np.array([_weighted_median(p[:, j], w) for j in range(p.shape[1])])
    mean = (w[:, None] * p).sum(0)
    std = torch.sqrt((w[:, None] * (p - mean) ** 2).sum(0))
    return med, std.numpy()


def reference_posterior(
    images: np.ndarray,
    sigma: np.ndarray,
    psf: np.ndarray,
    sky_sigma: np.ndarray,
    net_samples: np.ndarray,
    start: np.ndarray,
    prior: SersicPrior,
    *,
    draws: tuple[int, int] = DRAWS,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """The reference posterior of N Sérsic galaxies that share one PSF.

    images, sigma: [N, H, W] (sky-subtracted data and its noise); psf: [h, w]; sky_sigma: [N] the
    sky noise (counts) the flux prior is set against; net_samples: [N, S, 7] the network's
    posterior samples and start [N, 7] a likelihood peak (the fitter started from the network),
    both in physical columns (x, y, flux, re, n, q, theta). Each round's proposal is a mixture of
    two Student-t components: the first round's of the network's moments and of the likelihood's
    curvature at ``start``; the second's of the first round's weighted moments and the same
    curvature. Returns median and std [N, 7] (physical columns) and ess [N, 2] (effective sample
    size of each round)."""
    n_gal, h, w = images.shape
    spec = model_spec("sersic", fit_sky=False)
    r = Renderer(spec, h, w, torch.as_tensor(psf, dtype=torch.float64), dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    med, std, ess = np.full((n_gal, 7), np.nan), np.full((n_gal, 7), np.nan), np.zeros((n_gal, 2))
    for i in range(n_gal):
        img = torch.as_tensor(images[i], dtype=dtype)
        sig = torch.as_tensor(sigma[i], dtype=torch.float64)
        ln_sky = math.log(float(sky_sigma[i]))
        v_net = to_v(torch.as_tensor(net_samples[i], dtype=torch.float64))
        v_fit = to_v(torch.as_tensor(start[i], dtype=torch.float64)[None])[0]
        if not torch.isfinite(v_fit).all():
            v_fit = v_net.median(0).values
        curv = _chol(_curvature_cov(r, v_fit, sig, prior), WIDEN[0])
        parts = [(v_net.mean(0), _chol(torch.cov(v_net.T), WIDEN[0])), (v_fit, curv)]
        for k, count in enumerate(draws):
            proposal = _Mixture(parts)
            v = proposal.sample(count, gen)
            lw = _log_weights(r, v, img, (1.0 / sig).to(dtype), prior, ln_sky, proposal)
            top = lw.max()
            wts = torch.exp(lw - top) if torch.isfinite(top) else torch.zeros_like(lw)
            ess[i, k] = float(wts.sum() ** 2 / (wts * wts).sum()) if wts.sum() > 0 else 0.0
            if ess[i, k] >= MIN_ESS:
                mean, cov = _weighted_moments(v, wts)
                parts = [(mean, _chol(cov, WIDEN[1])), (v_fit, curv)]
        if wts.sum() > 0:
            med[i], std[i] = summarise(v, wts)
    return {"median": med, "std": std, "ess": ess}
