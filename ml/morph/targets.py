"""Targets of the morphology network: transformed (unbounded) parameters and their inverse.

Sérsic (7): dx, dy (px from the cutout centre), ln(flux / noise), ln re, ln n, g1, g2.
Bulge+disk (8): dx, dy, ln(flux / noise) of the total, logit B/T, ln re_disk, ln re_bulge, g1, g2
of the disk. (g1, g2) = atanh(e) (cos 2 theta, sin 2 theta) with e = (1 - q) / (1 + q), so the
ellipse lives in an unbounded plane where a round galaxy is the origin and theta needs no wrap.

Physical columns (what the network reports, mapped back by sampling):
Sérsic x, y, flux, re, n, q, theta (the engine bench's columns); bulge+disk x, y, flux, bt,
re_disk, re_bulge, q_disk, theta.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TARGETS = {
    "sersic": ("dx", "dy", "ln_flux", "ln_re", "ln_n", "g1", "g2"),
    "bulge_disk": ("dx", "dy", "ln_flux", "logit_bt", "ln_re_disk", "ln_re_bulge", "g1", "g2"),
}
PHYSICAL = {
    "sersic": ("x", "y", "flux", "re", "n", "q", "theta"),
    "bulge_disk": ("x", "y", "flux", "bt", "re_disk", "re_bulge", "q_disk", "theta"),
}
#: Physical ranges of the bounded columns (samples moved by the interval calibration are clipped to them).
BOUNDS = {"flux": (0.0, None), "re": (0.0, None), "n": (0.0, None), "q": (0.0, 1.0), "bt": (0.0, 1.0)}
BOUNDS |= {"re_disk": BOUNDS["re"], "re_bulge": BOUNDS["re"], "q_disk": BOUNDS["q"]}
#: Offset subtracted from ln(flux / noise) so the target is near 0 (SNR 10-200 at re 1-25 px).
LN_FLUX_OFFSET = 6.0
#: Largest |g| the inverse accepts (q >= 1e-3).
G_MAX = 7.0


def _g(q: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    e = (1.0 - q) / (1.0 + q)
    a = torch.atanh(e.clamp(0.0, 1.0 - 1e-6))
    return a * torch.cos(2 * theta), a * torch.sin(2 * theta)


def _qtheta(g1: Tensor, g2: Tensor) -> tuple[Tensor, Tensor]:
    a = torch.sqrt(g1 * g1 + g2 * g2).clamp(max=G_MAX)
    e = torch.tanh(a)
    return (1.0 - e) / (1.0 + e), 0.5 * torch.atan2(g2, g1)


def to_targets(kind: str, truth: dict, size: Tensor, noise: Tensor) -> Tensor:
    """Targets [N, K] from physical truth {name: [N]} (x, y in px with pixel [0, 0] at 0);
    size: [N] cutout side, noise: [N] noise level."""
    t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in truth.items()}
    size, noise = torch.as_tensor(size, dtype=torch.float64), torch.as_tensor(noise, dtype=torch.float64)
    centre = (size - 1) / 2.0
    cols = [t["x"] - centre, t["y"] - centre, torch.log(t["flux"] / noise) - LN_FLUX_OFFSET]
    if kind == "sersic":
        g1, g2 = _g(t["q"], t["theta"])
        cols += [torch.log(t["re"]), torch.log(t["n"]), g1, g2]
    else:
        g1, g2 = _g(t["q_disk"], t["theta"])
        bt = t["bt"].clamp(1e-4, 1 - 1e-4)
        cols += [torch.log(bt) - torch.log1p(-bt), torch.log(t["re_disk"]), torch.log(t["re_bulge"]), g1, g2]
    return torch.stack(cols, 1)


def to_physical(kind: str, targets: Tensor, size: Tensor, noise: Tensor) -> Tensor:
    """Physical columns [..., K'] (PHYSICAL[kind] order) from targets [..., K]; size and noise
    broadcast against targets[..., 0]."""
    t = targets
    centre = (size - 1) / 2.0
    x, y = t[..., 0] + centre, t[..., 1] + centre
    flux = torch.exp(t[..., 2] + LN_FLUX_OFFSET) * noise
    if kind == "sersic":
        q, th = _qtheta(t[..., 5], t[..., 6])
        cols = [x, y, flux, torch.exp(t[..., 3]), torch.exp(t[..., 4]), q, th]
    else:
        q, th = _qtheta(t[..., 6], t[..., 7])
        cols = [x, y, flux, torch.sigmoid(t[..., 3]), torch.exp(t[..., 4]), torch.exp(t[..., 5]), q, th]
    return torch.stack(cols, -1)


def theta_column(kind: str) -> int:
    """Index of theta (defined modulo pi) among the physical columns."""
    return PHYSICAL[kind].index("theta")


def wrap_theta(d: Tensor) -> Tensor:
    """Angle differences folded into [-pi/2, pi/2)."""
    return torch.remainder(d + math.pi / 2, math.pi) - math.pi / 2
