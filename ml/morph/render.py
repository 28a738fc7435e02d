"""Training and test images for the morphology network, rendered by the fitting engine itself.

Every galaxy is a model of :mod:`fitting.engine` (Sérsic, or a free-n bulge plus an exponential
disk) drawn by :class:`fitting.engine.model.Renderer` with its PSF, plus sky, Poisson noise on
source and sky (sky-subtracted afterwards, as the fitter sees it), and with probability
``neighbour_prob`` one neighbouring Sérsic galaxy elsewhere in the cutout. The PSF is a Moffat or
a Gaussian of FWHM ``fwhm_range`` (px), one PSF per chunk of ``chunk`` galaxies (the renderer is
built per PSF); its FWHM goes to the network with the noise level.

Deterministic from the seed: the parameters and noise of chunk k come from
``numpy.random.default_rng([seed, k])``, so a chunk renders the same alone or in a set, and sets
of different seeds share no galaxy.

Fluxes are set by the optimal signal-to-noise ratio SNR = sqrt(sum_i I_i^2 / sigma_sky^2) of the
noiseless galaxy (the definition GalSim's ``addNoiseSNR`` uses), drawn log-uniform in
``snr_range``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from fitting.engine.fit import physical_to_m
from fitting.engine.lm import physical_names
from fitting.engine.model import Renderer, model_spec

KINDS = ("sersic", "bulge_disk")
#: FWHM of a Gaussian in units of its sigma: 2 sqrt(2 ln 2).
GAUSS_FWHM_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class MorphConfig:
    """What a rendered set contains (all lengths in pixels)."""

    kind: str = "sersic"
    size: int = 64
    n: int = 1024
    seed: int = 1
    chunk: int = 64
    re_range: tuple[float, float] = (1.0, 25.0)  # log-uniform; at most re_max_fraction * size
    re_max_fraction: float = 0.2
    snr_range: tuple[float, float] = (10.0, 200.0)  # log-uniform
    fwhm_range: tuple[float, float] = (1.5, 5.0)
    moffat_fraction: float = 0.5
    moffat_beta: tuple[float, float] = (2.5, 4.5)
    n_range: tuple[float, float] = (0.5, 6.0)  # Sérsic n (bulge n: bulge_n_range)
    bulge_n_range: tuple[float, float] = (1.5, 5.0)
    q_range: tuple[float, float] = (0.2, 1.0)
    bulge_q_range: tuple[float, float] = (0.6, 1.0)
    bt_range: tuple[float, float] = (0.05, 0.95)
    bulge_re_ratio: tuple[float, float] = (0.1, 0.6)  # bulge re / disk re
    offset: float = 3.0  # centre uniform within +-offset of the cutout centre
    sky_sigma_range: tuple[float, float] = (3.0, 30.0)  # sky noise (counts); sky = sigma^2
    neighbour_prob: float = 0.5
    keep_sigma: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def psf_image(kind: str, fwhm: float, beta: float, size: int | None = None) -> np.ndarray:
    """Moffat or Gaussian PSF [s, s] (odd), sampled at pixel centres, summing to 1."""
    if size is None:
        size = 2 * math.ceil(2.5 * fwhm) + 1
    c = np.arange(size) - size // 2
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    if kind == "moffat":
        alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        img = (1.0 + r2 / alpha**2) ** (-beta)
    elif kind == "gaussian":
        s = fwhm / GAUSS_FWHM_SIGMA
        img = np.exp(-0.5 * r2 / s**2)
    else:
        raise ValueError(f"unknown PSF kind {kind!r}")
    return img / img.sum()


def psf_fwhm(psf: np.ndarray) -> float:
    """FWHM (px) of a sampled PSF image from the area above half its peak: 2 sqrt(A / pi), with
    the fractional pixel at the threshold interpolated. Used at inference for PSFs given as images."""
    p = np.asarray(psf, dtype=np.float64)
    p = p / p.max()
    area = float(np.clip((p - 0.5) / 0.5 + 0.5, 0.0, 1.0).sum())
    return 2.0 * math.sqrt(max(area, 0.25) / math.pi)


def psf_shape(psf: np.ndarray) -> float:
    """The shape of a sampled PSF the network is told besides its FWHM: the light-weighted mean
    distance from the central pixel over the FWHM (:func:`psf_fwhm`). Nearly independent of the
    FWHM at 1.5-5 px: 0.49-0.52 for a Gaussian, 0.62 / 0.67 / 0.76 for Moffat beta 4.5 / 3.5 / 2.5
    (the more light in the wings, the larger)."""
    p = np.asarray(psf, dtype=np.float64)
    c = np.arange(p.shape[0]) - p.shape[0] // 2, np.arange(p.shape[1]) - p.shape[1] // 2
    r = np.hypot(c[0][:, None], c[1][None, :])
    return float((p * r).sum() / p.sum() / psf_fwhm(p))


def noise_level(sigma: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-image noise level [B] the network is given: the median of the sigma map [B, H, W]."""
    s = torch.as_tensor(sigma).reshape(len(sigma), -1)
    return s.median(dim=1).values.double().numpy()


def _loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def _draw_chunk(cfg: MorphConfig, rng: np.random.Generator, b: int) -> dict:
    """Physical parameters of one chunk (engine order) and the chunk's PSF and sky."""
    size = cfg.size
    centre = (size - 1) / 2.0
    re_hi = min(cfg.re_range[1], cfg.re_max_fraction * size)
    out: dict = {}
    out["psf_kind"] = "moffat" if rng.uniform() < cfg.moffat_fraction else "gaussian"
    out["fwhm"] = float(rng.uniform(*cfg.fwhm_range))
    out["beta"] = float(rng.uniform(*cfg.moffat_beta)) if out["psf_kind"] == "moffat" else 0.0
    x0 = centre + rng.uniform(-cfg.offset, cfg.offset, b)
    y0 = centre + rng.uniform(-cfg.offset, cfg.offset, b)
    theta = rng.uniform(-math.pi / 2, math.pi / 2, b)
    q = rng.uniform(*cfg.q_range, b)
    if cfg.kind == "sersic":
        re = _loguniform(rng, cfg.re_range[0], re_hi, b)
        n = rng.uniform(*cfg.n_range, b)
        p = np.stack([x0, y0, np.zeros(b), np.ones(b), re, n, q, theta], 1)
        out["truth"] = {"x": x0, "y": y0, "re": re, "n": n, "q": q, "theta": theta}
    elif cfg.kind == "bulge_disk":
        re_d = _loguniform(rng, max(cfg.re_range[0], 1.5), re_hi, b)
        re_b = np.maximum(re_d * rng.uniform(*cfg.bulge_re_ratio, b), 0.5)
        n_b = rng.uniform(*cfg.bulge_n_range, b)
        q_b = rng.uniform(*cfg.bulge_q_range, b)
        th_b = theta + rng.normal(0.0, 0.2, b)
        bt = rng.uniform(*cfg.bt_range, b)
        p = np.stack([x0, y0, np.zeros(b), bt, re_b, n_b, q_b, th_b, 1.0 - bt, re_d, np.ones(b), q, theta], 1)
        out["truth"] = {"x": x0, "y": y0, "bt": bt, "re_disk": re_d, "re_bulge": re_b, "q_disk": q, "theta": theta, "n_bulge": n_b}
    else:
        raise ValueError(f"unknown kind {cfg.kind!r}; expected one of {', '.join(KINDS)}")
    out["p_unit"] = p  # unit total flux
    out["snr"] = _loguniform(rng, *cfg.snr_range, b)
    out["sky_sigma"] = rng.uniform(*cfg.sky_sigma_range, b)
    # one neighbour: a Sérsic galaxy away from the centre
    has = rng.uniform(size=b) < cfg.neighbour_prob
    ang = rng.uniform(0, 2 * math.pi, b)
    dist = rng.uniform(0.3, 0.48, b) * size
    nb = np.stack(
        [
            centre + dist * np.cos(ang),
            centre + dist * np.sin(ang),
            np.zeros(b),
            rng.uniform(0.1, 1.0, b) * has,  # flux relative to the target's
            _loguniform(rng, 1.0, max(1.5, 0.06 * size), b),
            rng.uniform(0.5, 4.0, b),
            rng.uniform(0.3, 1.0, b),
            rng.uniform(-math.pi / 2, math.pi / 2, b),
        ],
        1,
    )
    out["neighbour"] = nb
    return out


def render_chunk(cfg: MorphConfig, k: int) -> dict:
    """Chunk k of the set (galaxies k*chunk ...): arrays as in :func:`render_set`."""
    first = k * cfg.chunk
    b = min(cfg.chunk, cfg.n - first)
    rng = np.random.default_rng([cfg.seed, k])
    d = _draw_chunk(cfg, rng, b)
    psf = psf_image(d["psf_kind"], d["fwhm"], d["beta"])
    spec = model_spec(cfg.kind, fit_sky=False)
    size = cfg.size
    r = Renderer(spec, size, size, torch.from_numpy(psf), dtype=torch.float64)
    m_unit = physical_to_m(torch.from_numpy(d["p_unit"]), spec)
    unit, _ = r.render(m_unit, need_grad=False)
    unit = unit.numpy()  # [b, H, W] at total flux 1
    sky_sigma = d["sky_sigma"]
    # SNR = sqrt(sum I^2) / sigma_sky  ->  flux
    flux = d["snr"] * sky_sigma / np.sqrt((unit**2).sum(axis=(1, 2)))
    model = unit * flux[:, None, None]
    nspec = model_spec("sersic", fit_sky=False)
    rn = Renderer(nspec, size, size, torch.from_numpy(psf), dtype=torch.float64)
    pn = d["neighbour"].copy()
    has = pn[:, 3] > 0
    pn[:, 3] = np.where(has, pn[:, 3] * flux, 1.0)
    neigh = rn.render(physical_to_m(torch.from_numpy(pn), nspec), need_grad=False)[0].numpy() * has[:, None, None]
    sky = (sky_sigma**2)[:, None, None]
    rate = np.clip(model + neigh, 0.0, None) + sky
    counts = rng.poisson(rate).astype(np.float64)
    images = (counts - sky).astype(np.float32)
    p_true = d["p_unit"].copy()
    names = physical_names(spec)
    for i, name in enumerate(names):
        if name.endswith("flux"):
            p_true[:, i] *= flux
    out = {
        "images": images,
        "noise": np.sqrt(np.median(rate, axis=(1, 2))),
        "fwhm": np.full(b, d["fwhm"]),
        "psf_shape": np.full(b, psf_shape(psf)),
        "psf_index": np.full(b, k),
        "snr": d["snr"],
        "sky_sigma": sky_sigma,
        "flux": flux,
        "p_true": p_true,  # [b, P] engine physical parameters (sky 0)
        "has_neighbour": has,
        "truth": {**d["truth"], "flux": flux},
        "psf": psf,
    }
    if cfg.keep_sigma:
        out["sigma"] = np.sqrt(rate).astype(np.float32)
    return out


def render_set(cfg: MorphConfig, chunks: list[int] | None = None) -> dict:
    """Render a set (or only the listed chunks): images [N, S, S] float32, noise, fwhm, psf_shape, snr [N],
    p_true [N, P] (engine physical order), truth {name: [N]}, psfs (one per chunk: list), psf_index
    [N] (position in psfs), sigma [N, S, S] when cfg.keep_sigma."""
    nchunks = math.ceil(cfg.n / cfg.chunk)
    parts = [render_chunk(cfg, k) for k in (range(nchunks) if chunks is None else chunks)]
    out: dict = {"psfs": [p["psf"] for p in parts], "config": cfg.as_dict()}
    for key in parts[0]:
        if key in ("psf",):
            continue
        if key == "truth":
            out["truth"] = {t: np.concatenate([p["truth"][t] for p in parts]) for t in parts[0]["truth"]}
        else:
            out[key] = np.concatenate([p[key] for p in parts])
    out["psf_index"] = np.concatenate([np.full(len(p["snr"]), j) for j, p in enumerate(parts)])
    return out
