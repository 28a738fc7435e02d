"""Test data makers for the fitting engine: Gaussian PSF, renders with the engine's own renderer,
and an independent brute-force render of a PSF-convolved Sérsic."""

from __future__ import annotations

import math

import torch

from fitting.engine.fit import physical_to_m
from fitting.engine.model import Renderer, model_spec
from fitting.engine.profiles import qtheta_to_e12, sersic_b_and_derivative, sersic_with_grad


def gaussian_psf(size: int = 9, fwhm: float = 2.5, dtype=torch.float64) -> torch.Tensor:
    """Odd-sized, centred, normalised circular Gaussian [size, size]."""
    sig = fwhm / 2.3548200450309493
    ax = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-0.5 * (ax[:, None] ** 2 + ax[None, :] ** 2) / sig**2)
    return g / g.sum()


def render(params: torch.Tensor, shape=(32, 32), psf=None, kind: str = "sersic") -> torch.Tensor:
    """Noiseless images [B, H, W] (float64) from physical parameters [B, P] (physical_names order)."""
    spec = model_spec(kind)
    r = Renderer(spec, shape[0], shape[1], psf, dtype=torch.float64)
    img, _ = r.render(physical_to_m(params.double(), spec), need_grad=False)
    return img


def brute_force_psf_render(params: torch.Tensor, shape=(32, 32), sigma_psf: float = 1.5, cell: int = 8, sub: int = 8) -> torch.Tensor:
    """Independent reference of a single Sérsic convolved with a continuous circular Gaussian PSF
    and the pixel: the galaxy is integrated on cells of 1/cell pixel (sub x sub points each) and
    every cell's flux is spread by the exact pixel-integrated Gaussian (erf differences, separable).
    params [1, 8] physical (x0, y0, sky, flux, re, n, q, theta); returns [H, W] float64."""
    h, w = shape
    k = cell * sub
    p = params.double()
    dt = torch.float64
    off = (torch.arange(k, dtype=dt) + 0.5) / k - 0.5
    ys = (torch.arange(h, dtype=dt)[:, None] + off[None, :]).reshape(-1)
    xs = (torch.arange(w, dtype=dt)[:, None] + off[None, :]).reshape(-1)
    e1, e2 = qtheta_to_e12(p[:, 6], p[:, 7])
    b, db = sersic_b_and_derivative(p[:, 5])
    pts, _ = sersic_with_grad(
        xs[None, None, :] - p[:, 0, None, None],
        ys[None, :, None] - p[:, 1, None, None],
        torch.log(p[:, 3]),
        torch.log(p[:, 4]),
        p[:, 5],
        e1,
        e2,
        b,
        db,
        need_grad=False,
    )
    cells = pts[0].reshape(h * cell, sub, w * cell, sub).mean(dim=(1, 3)) / cell**2  # flux per cell
    centres = (torch.arange(h * cell, dtype=dt) + 0.5) / cell - 0.5

    def spread(n_out: int) -> torch.Tensor:  # [n_out, n_cells]: pixel-integrated 1-D Gaussian
        o = torch.arange(n_out, dtype=dt)[:, None] - centres[None, : n_out * cell]
        s = sigma_psf * math.sqrt(2.0)
        return 0.5 * (torch.erf((o + 0.5) / s) - torch.erf((o - 0.5) / s))

    return spread(h) @ cells @ spread(w).T


def sampled_gaussian_psf(size: int, sigma_psf: float) -> torch.Tensor:
    """The continuous Gaussian of :func:`brute_force_psf_render` sampled at pixel centres."""
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (ax[:, None] ** 2 + ax[None, :] ** 2) / sigma_psf**2)
    return g / g.sum()
