"""Light profiles: Sérsic (with the exponential disk as n = 1), shared-centre sums, flat sky.

Pure PyTorch, batch first. Conventions used everywhere in the engine:

- pixel [0, 0] has its centre at (x, y) = (0, 0); x runs along the second array axis;
- ``theta`` is the angle of the major axis, radians counter-clockwise from +x;
- ``re`` is the half-light radius measured along the major axis, ``q`` = b/a;
- the elliptical radius is r^2 = x'^2 + y'^2 / q^2 (x', y' along major, minor axis), so a
  profile I(r) holds the total flux 2 pi q int I(r) r dr.

The ellipse is carried internally as the distortion vector (e1, e2) = e (cos 2theta, sin 2theta)
with e = (1 - q^2) / (1 + q^2), which is smooth through q = 1 (round galaxies have no
position angle); then r^2 = (s - e1 d - e2 c) / (1 - e) with s = dx^2 + dy^2,
d = dx^2 - dy^2, c = 2 dx dy.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

#: Sérsic index range over which b_n is accurate to better than 1e-4 relative.
SERSIC_N_MIN = 0.2
SERSIC_N_MAX = 10.0

# Ciotti & Bertin 1999, A&A 352, 447, eq. 18: asymptotic series of b_n, good for n >= 0.36.
_CB99 = (2.0, -1.0 / 3.0, 4.0 / 405.0, 46.0 / 25515.0, 131.0 / 1148175.0, -2194697.0 / 30690717750.0)
# MacArthur, Courteau & Holtzman 2003, ApJ 582, 689, eq. A2: polynomial for n < 0.36.
_MCH03 = (0.01945, -0.8902, 10.95, -19.67, 13.43)


def _b_n_start(n: Tensor) -> Tensor:
    """Starting value of b_n: Ciotti & Bertin (1999) series, MacArthur et al. (2003) below 0.36."""
    series = _CB99[0] * n + _CB99[1]
    for k, c in enumerate(_CB99[2:]):
        series = series + c / n ** (k + 1)
    poly = sum(c * n**k for k, c in enumerate(_MCH03))
    return torch.where(n >= 0.36, series, poly).clamp_min(1e-3)


def sersic_b(n: Tensor, newton_steps: int = 4) -> Tensor:
    """b_n of the Sérsic profile, solving P(2n, b_n) = 1/2 (half the light inside r_e).

    P is the regularised lower incomplete gamma function. The Ciotti & Bertin (1999) series
    is refined by Newton steps in float64, giving ~1e-10 relative accuracy for 0.2 <= n <= 10.

    n: [...] any float tensor. Returns b_n with n's shape, dtype and device.
    """
    x = n.detach().to(torch.float64)
    a = 2.0 * x
    b = _b_n_start(x)
    lga = torch.lgamma(a)
    for _ in range(newton_steps):
        f = torch.special.gammainc(a, b) - 0.5
        # dP/db = b^(a-1) e^(-b) / Gamma(a)
        dfdb = torch.exp((a - 1.0) * torch.log(b) - b - lga)
        b = (b - f / dfdb).clamp_min(1e-6)
    return b.to(n.dtype)


def sersic_b_and_derivative(n: Tensor, h: float = 1e-5) -> tuple[Tensor, Tensor]:
    """b_n and db_n/dn (central difference of the Newton-refined b_n, float64 inside).

    n: [...]. Returns (b, db/dn), both with n's shape and dtype.
    """
    x = n.detach().to(torch.float64)
    b = sersic_b(x)
    db = (sersic_b(x + h) - sersic_b(x - h)) / (2.0 * h)
    return b.to(n.dtype), db.to(n.dtype)


def sersic_log_norm(n: Tensor, b: Tensor) -> Tensor:
    """log of A(n) = b^(2n) / (2 pi n Gamma(2n)), so that I(r) = F A / (q re^2) exp(-b (r/re)^(1/n))
    integrates to the total flux F. n, b: [...] same shape."""
    return 2.0 * n * torch.log(b) - math.log(2.0 * math.pi) - torch.log(n) - torch.lgamma(2.0 * n)


def sersic_dlog_norm_dn(n: Tensor, b: Tensor, db: Tensor) -> Tensor:
    """d log A / dn for :func:`sersic_log_norm`, with db = db_n/dn. Shapes [...]."""
    return 2.0 * torch.log(b) + 2.0 * n * db / b - 1.0 / n - 2.0 * torch.special.digamma(2.0 * n)


def q_to_e(q: Tensor) -> Tensor:
    """Distortion e = (1 - q^2) / (1 + q^2) from the axis ratio q = b/a."""
    q2 = q * q
    return (1.0 - q2) / (1.0 + q2)


def qtheta_to_e12(q: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """(q, theta) -> distortion components (e1, e2). Shapes [...]."""
    e = q_to_e(q)
    return e * torch.cos(2.0 * theta), e * torch.sin(2.0 * theta)


# Smallest squared radius used at the exact centre of a cusp (pixels^2); keeps
# (r/re)^(1/n) / r^2 finite. Far below the sub-pixel sampling scale.
_R2_FLOOR = 1e-10


def sersic_with_grad(
    dx: Tensor,
    dy: Tensor,
    log_flux: Tensor,
    log_re: Tensor,
    n: Tensor,
    e1: Tensor,
    e2: Tensor,
    b: Tensor,
    db: Tensor,
    need_grad: bool = True,
    centre: bool = True,
    free_n: bool = True,
    out: Tensor | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Sérsic surface brightness (flux per pixel^2) and its analytic derivatives.

    dx, dy: [B, ...] offsets of the sample points from the centre (pixels).
    log_flux, log_re, n, e1, e2, b, db: [B] per galaxy (b = b_n, db = db_n/dn).

    Returns (I, grads) with I [B, ...] and grads the list of dI/d(x0, y0, log_flux, log_re, n, e1, e2),
    each [B, ...] (dI/dlog_flux is I itself). grads is empty when need_grad is False, and starts at
    log_flux when centre is False (the renderer then takes the centre derivatives from the image),
    and leaves out n when free_n is False. With ``out`` [B, K, ...] (K the number of those
    channels) the channels are written into it instead (no stacking copy) and grads is empty.
    """
    shape = (-1,) + (1,) * (dx.dim() - 1)
    lf, lre, nn_, e1_, e2_, bb, dbb = (t.reshape(shape) for t in (log_flux, log_re, n, e1, e2, b, db))
    e = torch.sqrt(e1_ * e1_ + e2_ * e2_).clamp_max(0.9999)
    inv1me = 1.0 / (1.0 - e)
    dx2 = dx * dx
    dy2 = dy * dy
    dxy2 = 2.0 * dx * dy
    quad = (dx2 + dy2) - e1_ * (dx2 - dy2) - e2_ * dxy2
    r2 = (quad * inv1me).clamp_min(_R2_FLOOR)
    log_q = 0.5 * (torch.log1p(-e) - torch.log1p(e))
    log_norm = sersic_log_norm(nn_, bb)
    inv_n = 1.0 / nn_
    log_rr = 0.5 * torch.log(r2) - lre  # log(r / re)
    z = torch.exp(inv_n * log_rr)  # (r / re)^(1/n)
    bz = bb * z
    k0 = 2 if centre else 0
    if out is not None and need_grad:
        intensity = torch.exp(lf + log_norm - log_q - 2.0 * lre - bz, out=out[:, k0])
    else:
        intensity = torch.exp(lf + log_norm - log_q - 2.0 * lre - bz)
    if not need_grad:
        return intensity, []
    a = bz * inv_n  # b z / n
    # d log I / d r^2
    g_r2 = -0.5 * a / r2
    grads: list[Tensor] = []

    def put(k: int, x: Tensor, y: Tensor) -> None:  # channel k = x * y
        if out is None:
            grads.append(x * y)
        else:
            torch.mul(x, y, out=out[:, k])

    if centre:
        ig = intensity * g_r2 * inv1me
        # d r^2 / d x0 = -(2 dx - 2 e1 dx - 2 e2 dy) / (1 - e), same pattern for y0
        put(0, ig, -2.0 * (dx - e1_ * dx - e2_ * dy))
        put(1, ig, -2.0 * (dy + e1_ * dy - e2_ * dx))
    if out is None:
        grads.append(intensity)
    put(k0 + 1, intensity, a - 2.0)
    k = k0 + 2
    if free_n:
        dlogn = sersic_dlog_norm_dn(nn_, bb, dbb)
        put(k, intensity, dlogn - dbb * z + a * log_rr * inv_n)
        k += 1
    # d r^2 / d e_i = (-d_i + r^2 e_i / e) / (1 - e); d log q / d e_i = -(e_i / e) / (1 - e^2)
    e_safe = e.clamp_min(1e-12)
    u1 = e1_ / e_safe
    u2 = e2_ / e_safe
    dlogq_de = -1.0 / (1.0 - e * e)
    gi = g_r2 * inv1me
    put(k, intensity, gi * (r2 * u1 - (dx2 - dy2)) - dlogq_de * u1)
    put(k + 1, intensity, gi * (r2 * u2 - dxy2) - dlogq_de * u2)
    return intensity, grads


def sersic_channels(
    dx: Tensor,
    dy: Tensor,
    log_flux: Tensor,
    log_re: Tensor,
    n: Tensor,
    e1: Tensor,
    e2: Tensor,
    b: Tensor,
    db: Tensor,
    free_n: bool = True,
    centre: bool = True,
    stacked: bool = False,
) -> Tensor:
    """Stacked derivative channels [B, 7, ...] (or [B, 6, ...] without n) of :func:`sersic_with_grad`:
    d/d(x0, y0, log_flux, log_re[, n], e1, e2); channel 2 (d/dlog_flux) is the image itself.
    Without centre the x0, y0 channels are left out ([B, 5, ...] or [B, 4, ...]).

    Eagerly the channels are written in place into one tensor; ``stacked`` computes them as a list
    and stacks it, the functional form torch.compile fuses best (see :func:`compiled_sersic_channels`).
    """
    if stacked:
        _, grads = sersic_with_grad(dx, dy, log_flux, log_re, n, e1, e2, b, db, need_grad=True, centre=centre, free_n=free_n)
        return torch.stack(grads, dim=1)
    shape = torch.broadcast_shapes(dx.shape, dy.shape)
    nch = (2 if centre else 0) + (5 if free_n else 4)
    out = torch.empty((shape[0], nch) + tuple(shape[1:]), dtype=dx.dtype, device=dx.device)
    sersic_with_grad(dx, dy, log_flux, log_re, n, e1, e2, b, db, need_grad=True, centre=centre, free_n=free_n, out=out)
    return out


_COMPILED: dict[str, object] = {}


def compiled_sersic_channels():
    """torch.compile'd :func:`sersic_channels` (stacked form, dynamic shapes), built once per process.

    Fuses the elementwise operations (faster than the eager in-place form; figures in
    bench/README.md) at the price of a compilation the first time in a process (cached on disk
    by inductor afterwards).
    """
    if "channels" not in _COMPILED:
        _COMPILED["channels"] = torch.compile(functools.partial(sersic_channels, stacked=True), dynamic=True)
    return _COMPILED["channels"]


def sersic_image(
    x0: Tensor,
    y0: Tensor,
    flux: Tensor,
    re: Tensor,
    n: Tensor,
    q: Tensor,
    theta: Tensor,
    shape: tuple[int, int],
    oversample: int = 1,
) -> Tensor:
    """Reference renderer: Sérsic images [B, H, W] integrated over pixels by uniform oversampling.

    All parameters [B]. Slow for large ``oversample``; the fitter uses a central box instead
    (see :mod:`fitting.engine.model`). Used by tests and for quick synthetic data.
    """
    h, w = shape
    dev, dt = flux.device, flux.dtype
    k = oversample
    off = (torch.arange(k, device=dev, dtype=dt) + 0.5) / k - 0.5
    ys = (torch.arange(h, device=dev, dtype=dt)[:, None] + off[None, :]).reshape(-1)
    xs = (torch.arange(w, device=dev, dtype=dt)[:, None] + off[None, :]).reshape(-1)
    dx = xs[None, None, :] - x0[:, None, None]
    dy = ys[None, :, None] - y0[:, None, None]
    e1, e2 = qtheta_to_e12(q, theta)
    b, db = sersic_b_and_derivative(n)
    img, _ = sersic_with_grad(dx, dy, torch.log(flux), torch.log(re), n, e1, e2, b, db, need_grad=False)
    return img.reshape(-1, h, k, w, k).mean(dim=(2, 4))
