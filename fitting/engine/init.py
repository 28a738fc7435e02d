"""Initial values and masks: sky and noise from the border, segmentation, image moments.

All functions take batches [B, H, W] and work on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .model import FLUX, N_GLOBAL, SKY

#: Width of the border (pixels) used for the sky level and the noise.
BORDER = 4
#: MAD to Gaussian sigma (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.482602218505602
#: Detection threshold on the 3 x 3 smoothed image, in units of the smoothed noise.
DETECT_NSIGMA = 2.0
#: Neighbour masks are grown by this many pixels.
MASK_GROW = 2
#: A detected component other than the target is masked as a neighbour only when its smoothed peak
#: reaches this many smoothed-noise sigmas and it covers NEIGHBOUR_MIN_AREA pixels. The 2-sigma
#: detection alone lets through a few per cent of noise pixels, and masking those positive noise
#: clumps biases the fit low (measured on GalSim renders: flux, re and n all ~0.6 sigma low).
NEIGHBOUR_NSIGMA = 5.0
NEIGHBOUR_MIN_AREA = 5


def border_sky(images: Tensor, valid: Tensor, width: int = BORDER) -> tuple[Tensor, Tensor]:
    """Sky level (median) and noise (1.4826 MAD) of the valid border pixels.

    images: [B, H, W]; valid: [B, H, W] bool. Returns (sky [B], noise [B]); NaN where no border
    pixel is valid.
    """
    b, h, w = images.shape
    border = torch.ones(h, w, dtype=torch.bool, device=images.device)
    border[width : h - width, width : w - width] = False
    vals = torch.where(valid & border, images, torch.full_like(images, float("nan"))).reshape(b, -1)
    sky = torch.nanmedian(vals, dim=1).values
    mad = torch.nanmedian((vals - sky[:, None]).abs(), dim=1).values
    return sky, MAD_TO_SIGMA * mad


def connected_components(mask: Tensor, max_iter: int | None = None) -> Tensor:
    """8-connected component labels of a boolean batch [B, H, W] by max-label propagation.

    Returns int64 labels [B, H, W]: 0 for background, and for each component the largest
    (flat index + 1) of its pixels. Runs on GPU as well as CPU.
    """
    b, h, w = mask.shape
    if mask.device.type == "cpu":
        return _label_scipy(mask)
    idx = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).reshape(1, h, w)
    m = mask.float()
    lab = idx * m
    steps = max_iter or (h + w) * 2
    for i in range(steps):
        new = _max3x3(lab) * m
        if i % 8 == 7 and torch.equal(new, lab):
            break
        lab = new
    return lab.long()


def _label_scipy(mask: Tensor) -> Tensor:
    """CPU path of :func:`connected_components` (same labelling rule): one scipy.ndimage.label call
    over the whole batch, with a structure that does not connect neighbouring images."""
    from scipy import ndimage

    b, h, w = mask.shape
    structure = [[[0] * 3] * 3, [[1] * 3] * 3, [[0] * 3] * 3]
    lab, nlab = ndimage.label(mask.numpy(), structure=structure)
    if nlab == 0:
        return torch.zeros(b, h, w, dtype=torch.int64)
    lab_t = torch.from_numpy(lab.reshape(b, -1)).long()
    flat = torch.arange(1, h * w + 1, dtype=torch.int64).expand(b, -1)
    top = torch.zeros(nlab + 1, dtype=torch.int64).scatter_reduce(0, lab_t.reshape(-1), flat.reshape(-1), "amax")
    top[0] = 0
    return top[lab_t].reshape(b, h, w)


def _mean3x3(x: Tensor) -> Tensor:
    """Mean over each pixel's 3 x 3 neighbourhood within the image, [B, H, W] -> [B, H, W]
    (separable shifted sums: much faster on a CPU than a pooling kernel on one channel)."""

    def box(t: Tensor) -> Tensor:
        r = t.clone()
        r[:, :, 1:] += t[:, :, :-1]
        r[:, :, :-1] += t[:, :, 1:]
        c = r.clone()
        c[:, 1:] += r[:, :-1]
        c[:, :-1] += r[:, 1:]
        return c

    return box(x) / box(torch.ones_like(x[:1]))


def _max3x3(x: Tensor) -> Tensor:
    """Maximum over each pixel's 3 x 3 neighbourhood (zero outside), [B, H, W] -> [B, H, W]."""
    r = x.clone()
    r[:, :, 1:] = torch.maximum(r[:, :, 1:], x[:, :, :-1])
    r[:, :, :-1] = torch.maximum(r[:, :, :-1], x[:, :, 1:])
    c = r.clone()
    c[:, 1:] = torch.maximum(c[:, 1:], r[:, :-1])
    c[:, :-1] = torch.maximum(c[:, :-1], r[:, 1:])
    return c


def segment(images: Tensor, sky: Tensor, noise: Tensor, valid: Tensor, nsigma: float = DETECT_NSIGMA) -> tuple[Tensor, Tensor, Tensor]:
    """Detect sources and pick the target nearest the image centre.

    images: [B, H, W]; sky: [B]; noise: [B, H, W] or [B] per-pixel noise; valid: [B, H, W] bool.
    Returns (target [B, H, W] bool, neighbours [B, H, W] bool (grown by MASK_GROW), found [B]
    bool: whether any source was detected near the centre).
    """
    b, h, w = images.shape
    x = torch.where(valid, images - sky[:, None, None], torch.zeros_like(images))
    sm = _mean3x3(x)
    nz = noise if noise.dim() == 3 else noise[:, None, None].expand(b, h, w)
    det = (sm > nsigma * nz / 3.0) & valid
    lab = connected_components(det)
    # target: the detected component holding the brightest smoothed pixel of the central region
    yy = torch.arange(h, device=images.device)[:, None]
    xx = torch.arange(w, device=images.device)[None, :]
    central = ((yy - (h - 1) / 2).abs() <= h / 4) & ((xx - (w - 1) / 2).abs() <= w / 4)
    score = torch.where(det & central, sm, torch.full_like(sm, -float("inf"))).reshape(b, -1)
    best = score.argmax(dim=1)
    tlab = lab.reshape(b, -1).gather(1, best[:, None])[:, 0]
    found = torch.isfinite(score.max(dim=1).values) & (tlab > 0)
    target = (lab == tlab[:, None, None]) & found[:, None, None]
    # per-component peak significance and area; real neighbours only
    flat = lab.reshape(b, -1)
    signif = torch.where(det, sm / (nz / 3.0).clamp_min(1e-30), torch.zeros_like(sm)).reshape(b, -1)
    peak = torch.zeros(b, h * w + 1, device=images.device, dtype=sm.dtype).scatter_reduce(1, flat, signif, "amax")
    area = torch.zeros(b, h * w + 1, device=images.device, dtype=sm.dtype).scatter_add(1, flat, det.reshape(b, -1).to(sm.dtype))
    real = (peak.gather(1, flat) >= NEIGHBOUR_NSIGMA) & (area.gather(1, flat) >= NEIGHBOUR_MIN_AREA)
    others = (lab > 0) & ~target & real.reshape(b, h, w)
    grown = others.to(torch.uint8)
    for _ in range(MASK_GROW):  # a (2 MASK_GROW + 1)^2 square, as repeated 3 x 3 maxima
        grown = _max3x3(grown)
    grown = grown > 0
    return target, grown & ~target, found


def moments_init(images: Tensor, sky: Tensor, target: Tensor, found: Tensor) -> Tensor:
    """Sérsic start values from the first and second moments of the target's pixels.

    images: [B, H, W]; sky: [B]; target: [B, H, W] bool; found: [B] bool.
    Returns p [B, 8] = (x0, y0, sky, flux, re, n, q, theta), float64. Galaxies without a
    detection start at the image centre with a size of an eighth of the image.
    """
    b, h, w = images.shape
    dev = images.device
    # image-sized arithmetic in the images' precision, sums accumulated in float64
    x = images - sky[:, None, None].to(images.dtype)
    wgt = torch.where(target, x.clamp_min(0.0), torch.zeros_like(x))
    f64 = torch.float64
    tot = wgt.sum(dim=(1, 2), dtype=f64).clamp_min(1e-30)
    ys = torch.arange(h, device=dev, dtype=images.dtype)[None, :, None]
    xs = torch.arange(w, device=dev, dtype=images.dtype)[None, None, :]
    wx = wgt * xs
    wy = wgt * ys
    x0 = wx.sum(dim=(1, 2), dtype=f64) / tot
    y0 = wy.sum(dim=(1, 2), dtype=f64) / tot
    sxx = (wx * xs).sum(dim=(1, 2), dtype=f64) / tot
    syy = (wy * ys).sum(dim=(1, 2), dtype=f64) / tot
    sxy = (wx * ys).sum(dim=(1, 2), dtype=f64) / tot
    mxx = sxx - x0 * x0
    myy = syy - y0 * y0
    mxy = sxy - x0 * y0
    half = 0.5 * (mxx + myy)
    rad = torch.sqrt((0.5 * (mxx - myy)) ** 2 + mxy**2)
    l1 = (half + rad).clamp_min(0.25)
    l2 = (half - rad).clamp_min(0.25 * 0.01)
    q = torch.sqrt(l2 / l1).clamp(0.1, 0.95)
    theta = 0.5 * torch.atan2(2.0 * mxy, mxx - myy)
    # for an exponential disk the major-axis rms radius is ~1.03 re; thresholding cuts the wings
    re = (1.2 * torch.sqrt(l1)).clamp(0.5, 0.5 * max(h, w))
    flux = 1.2 * tot
    n = torch.full_like(x0, 1.5)
    p = torch.stack([x0, y0, sky.double(), flux, re, n, q, theta], dim=1)
    default = torch.tensor([(w - 1) / 2, (h - 1) / 2, 0.0, 1.0, max(h, w) / 8, 1.5, 0.8, 0.0], dtype=torch.float64, device=dev)
    default = default.expand(b, -1).clone()
    default[:, SKY] = torch.nan_to_num(sky.double())
    default[:, N_GLOBAL + FLUX] = torch.nan_to_num(x.clamp_min(0).sum(dim=(1, 2)), nan=1.0).clamp_min(1e-6)
    ok = found & torch.isfinite(p).all(dim=1) & (tot > 1e-30)
    return torch.where(ok[:, None], p, default)


def bulge_disk_from_sersic(p: Tensor) -> Tensor:
    """Bulge+disk start values [B, 13] = (x0, y0, sky, bulge flux, re, n, q, theta, disk flux, re,
    n = 1, q, theta) from a single-Sérsic start [B, 8]: 30 % of the light in a rounder n = 4 bulge of
    half the size."""
    x0, y0, sky, flux, re, _, q, theta = p.unbind(1)
    one = torch.ones_like(x0)
    bulge = [0.3 * flux, 0.5 * re, 4.0 * one, torch.sqrt(q).clamp(max=0.95), theta]
    disk = [0.7 * flux, re, one, q, theta]
    return torch.stack([x0, y0, sky, *bulge, *disk], dim=1)
