"""Test data makers for the fitting engine: Gaussian PSF, renders with the engine's own renderer."""

from __future__ import annotations

import torch

from fitting.engine.fit import physical_to_m
from fitting.engine.model import Renderer, model_spec


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
