"""The morphology posterior network: a crop head, a small CNN and a full-covariance head.

Design after GaMPEN (Ghosh et al. 2022, ApJ 935, 138): a spatial transformer in front picks one
zoom factor per image and resamples the cutout of any size to a VIEW x VIEW view (where the view
is coarser than the cutout, each view pixel averages all the input pixels it covers: bilinear
sampling would read only the four nearest and waste most of a large galaxy's signal); the CNN
behind it predicts, for K transformed parameters, the means, the log-variances D and the K(K-1)/2 entries
below the diagonal of a unit lower-triangular L, with Sigma = L D L^T; the loss is the Gaussian
negative log-likelihood 1/2 Delta^T Sigma^-1 Delta + 1/2 log det Sigma. Dropout before the last
layers gives Monte-Carlo samples at inference.

Unlike GaMPEN's zoom, learned only through the regression loss (ours then settled on one zoom for
every size), the zoom here comes from a coarse first pass that estimates the radius (see
:class:`CropHead`), and the head is told the view's pixel scale p (input pixels per view pixel) and
works in view units for the sizes: it predicts ln re - ln p and ln flux - 2 ln p (the view's
surface brightness times the pixel area), so a galaxy seen at another zoom needs no other answer.

Inputs: images [B, 1, H, W] already scaled by :func:`preprocess` (noise units, asinh stretch) and
extras [B, E] (ln PSF FWHM, ln cutout side, ln of the PSF's shape; see :func:`preprocess`).
Everything here is plain PyTorch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

#: Side of the view the crop head resamples every cutout to (px).
VIEW = 48
#: Side of the crop head's two looks at the cutout (whole, pooled; centre, full resolution).
LOC = 32
#: Half-width of the view: ZOOM_RE * re + ZOOM_FWHM * FWHM + ZOOM_PAD (px of the cutout).
ZOOM_RE, ZOOM_FWHM, ZOOM_PAD = 4.0, 1.5, 4.0
#: Largest zoom of CropHead (fraction of the cutout's side seen) unless the weights say otherwise: 1,
#: the whole cutout (beyond it the view reads zero, the sky).
ZOOM_MAX = 1.0
#: LearnedZoomCrop's zoom stays within [1 / ZOOM_RANGE, ZOOM_RANGE].
ZOOM_RANGE = 6.0
#: Softening of the asinh stretch of the input, in noise units.
ASINH_SOFT = 3.0
#: Extra inputs of the crop head: ln FWHM, ln side (both in input pixels). The covariance head of a
#: network made with ``psf_shape`` also reads a third, ln of the PSF's shape (see :func:`preprocess`).
N_EXTRAS = 2
#: The PSF's shape, the light-weighted mean radius over the FWHM (ml.morph.render.psf_shape), of a
#: Gaussian sampled at pixel centres (0.49-0.52 for FWHM 1.5-5 px; a continuous Gaussian's is
#: sqrt(pi / 2) / (2 sqrt(2 ln 2)) = 0.53; Moffat beta 4.5 / 2.5: 0.62 / 0.76). The network is told
#: this when no PSF image is given (catalog images carry only an assumed FWHM).
GAUSSIAN_PSF_SHAPE = 0.51
#: Smallest variance the head may predict (transformed units squared).
MIN_LOG_VAR = -14.0


def preprocess(images: Tensor, noise: Tensor, fwhm: Tensor, shape: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
    """The one preprocessing of training, evaluation and inference.

    images: [B, H, W] sky-subtracted counts; noise: [B] noise level (median of the sigma map);
    fwhm: [B] PSF FWHM in pixels; shape: [B] (or one value) the PSF's shape
    (ml.morph.render.psf_shape; None: a Gaussian's, GAUSSIAN_PSF_SHAPE). Returns
    (x [B, 1, H, W] float32, extras [B, 3]: ln FWHM, ln side / 64, ln shape).
    """
    img = torch.as_tensor(images, dtype=torch.float32)
    nz = torch.as_tensor(noise, dtype=torch.float32, device=img.device).reshape(-1, 1, 1)
    x = torch.asinh(img / (nz * ASINH_SOFT))
    side = float(max(img.shape[-2:]))
    fw = torch.as_tensor(fwhm, dtype=torch.float32, device=img.device).reshape(-1)
    sh = torch.as_tensor(GAUSSIAN_PSF_SHAPE if shape is None else shape, dtype=torch.float32, device=img.device)
    extras = torch.stack([torch.log(fw), torch.full_like(fw, math.log(side / 64.0)), torch.log(sh).expand_as(fw)], 1)
    return x[:, None], extras


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CropHead(nn.Module):
    """Spatial transformer with one zoom factor per image, set by a coarse first pass.

    A small localisation network looks at the cutout twice, pooled whole to LOC x LOC and its
    centre LOC x LOC at full resolution, and estimates ln re (px; trained by its own loss against
    the true radius, see :func:`zoom_loss`). The view then spans a half-width of
    ZOOM_RE * re + ZOOM_FWHM * FWHM + ZOOM_PAD px around the cutout centre, at most zoom_max
    times the cutout (beyond its edge the view reads zero) and at least VIEW / 2 px (a view pixel
    is never under half an input pixel): small galaxies are seen magnified, large ones whole.
    """

    def __init__(self, view: int = VIEW, zoom_max: float = ZOOM_MAX) -> None:
        super().__init__()
        self.view = view
        self.zoom_max = zoom_max
        self.loc = nn.Sequential(
            nn.Conv2d(2, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
        )
        self.fc = nn.Sequential(nn.Linear(32 * 16 + N_EXTRAS, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
        nn.init.zeros_(self.fc[-1].weight)  # every cutout starts seen at the zoom of re = 5 px
        nn.init.constant_(self.fc[-1].bias, math.log(5.0))

    def forward(self, x: Tensor, extras: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (view [B, 1, V, V], zoom s [B] = fraction of the side seen, ln re estimate [B])."""
        side = x.shape[-1]
        centre = _resample(x, torch.full((x.shape[0],), min(1.0, LOC / side), device=x.device), LOC)
        pooled = self.loc(torch.cat([F.adaptive_avg_pool2d(x, LOC), centre], 1)).flatten(1)
        ln_re = self.fc(torch.cat([pooled, extras[:, :N_EXTRAS]], 1))[:, 0]
        s = zoom_of(ln_re.detach(), torch.exp(extras[:, 0]), side, self.view, self.zoom_max)
        return _resample(x, s, self.view), s, ln_re


def zoom_of(ln_re: Tensor, fwhm: Tensor, side: int | Tensor, view: int = VIEW, zoom_max: float = ZOOM_MAX) -> Tensor:
    """Zoom s [B] (fraction of the side seen) for radii exp(ln_re) and PSF FWHM (px) in cutouts of
    ``side`` px: half-width ZOOM_RE re + ZOOM_FWHM FWHM + ZOOM_PAD, within [view / 2, zoom_max side] px."""
    side = torch.as_tensor(side, dtype=ln_re.dtype, device=ln_re.device)
    half = ZOOM_RE * torch.exp(torch.minimum(ln_re, torch.log(side * zoom_max))) + ZOOM_FWHM * fwhm + ZOOM_PAD
    return torch.maximum(torch.minimum(2.0 * half / side, torch.full_like(half, zoom_max)), (view / (2.0 * side)).clamp(max=1.0))


class LearnedZoomCrop(nn.Module):
    """GaMPEN's crop head, as the first shipped networks have it: one zoom s = ZOOM_RANGE ** tanh(a)
    per image, a from a small localisation network on the cutout pooled to 24 x 24, learnt through
    the regression loss alone and started at the identity (s = 1). Ours settled on one zoom for
    every size, hence :class:`CropHead`; this one is kept for those weights and for comparison."""

    def __init__(self, view: int = VIEW) -> None:
        super().__init__()
        self.view = view
        self.loc = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True)
        )
        self.fc = nn.Sequential(nn.Linear(16 * 6 * 6 + N_EXTRAS, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))
        nn.init.zeros_(self.fc[-1].weight)
        nn.init.zeros_(self.fc[-1].bias)

    def forward(self, x: Tensor, extras: Tensor) -> tuple[Tensor, Tensor, None]:
        """Returns (view [B, 1, V, V], zoom s [B], None: no radius estimate)."""
        a = self.fc(torch.cat([self.loc(F.adaptive_avg_pool2d(x, 24)).flatten(1), extras[:, :N_EXTRAS]], 1))[:, 0]
        s = torch.exp(math.log(ZOOM_RANGE) * torch.tanh(a))
        return _resample(x, s, self.view), s, None


#: The crop heads by the name the weights' metadata gives ("crop"; absent: "learned").
CROPS = {"radius": CropHead, "learned": LearnedZoomCrop}


def _footprints(s: Tensor, n: int, view: int) -> Tensor:
    """[B, view, n] weights of the n input pixels along one axis in each of the view pixels.

    View pixel i is centred at n / 2 + (i + 1/2 - view / 2) s n / view (input pixels, edges at
    integers, as grid_sample with align_corners=False places it); its footprint is the average of
    the input, taken as constant over each pixel, over a box max(1, s n / view) wide about that
    centre. For one view pixel per input pixel or more (a box of one pixel) these are the tent weights
    of bilinear interpolation; for fewer, the box covers every input pixel the view pixel stands
    for, so that a zoomed-out view is an average of all the pixels and not of the four nearest.
    Input pixels beyond the edge are zero.
    """
    step = s * (n / view)
    width = step.clamp(min=1.0)[:, None, None]
    i = torch.arange(view, dtype=s.dtype, device=s.device) + 0.5 - view / 2
    centre = (n / 2 + step[:, None] * i)[:, :, None]
    j = torch.arange(n, dtype=s.dtype, device=s.device)
    overlap = torch.minimum(centre + width / 2, j + 1) - torch.maximum(centre - width / 2, j)
    return overlap.clamp(min=0.0) / width


def _resample(x: Tensor, s: Tensor, view: int) -> Tensor:
    """The central fraction s [B] of each image [B, 1, H, W] resampled to [B, 1, view, view]: bilinear
    where the view is as fine as the input or finer, an average over each view pixel's footprint
    where it is coarser (see :func:`_footprints`)."""
    s = s.to(x.dtype)
    rows = _footprints(s, x.shape[-2], view)
    cols = rows if x.shape[-1] == x.shape[-2] else _footprints(s, x.shape[-1], view)
    return (rows @ x[:, 0] @ cols.transpose(1, 2))[:, None]


def zoom_loss(ln_re: Tensor, ln_re_true: Tensor) -> Tensor:
    """Per-galaxy loss of the crop head's radius estimate (Huber in ln re, 0.5 wide)."""
    return F.huber_loss(ln_re, ln_re_true, reduction="none", delta=0.5)


class MorphNet(nn.Module):
    """Crop head + CNN + covariance head for the targets ``names`` (ml.morph.targets.TARGETS).
    psf_shape: the covariance head also reads the PSF's shape (the third extra input); networks
    made before 2026-12-08 read only the FWHM, and at a given FWHM mistake a Moffat PSF's wings for
    the galaxy's own light (re, n and q biased by PSF family, EVALUATION.md)."""

    def __init__(
        self,
        names: tuple[str, ...],
        width: int = 16,
        dropout: float = 0.1,
        view: int = VIEW,
        crop: str = "radius",
        zoom_max: float = ZOOM_MAX,
        psf_shape: bool = False,
    ) -> None:
        super().__init__()
        self.names = tuple(names)
        self.psf_shape = psf_shape
        self.n_extras = N_EXTRAS + int(psf_shape)
        n_targets = self.k = len(self.names)
        #: per target, the power of the view's pixel scale added to it in log (ln re: 1, ln flux: 2)
        powers = [1.0 if n.startswith("ln_re") else 2.0 if n == "ln_flux" else 0.0 for n in self.names]
        self.register_buffer("pixel_power", torch.tensor(powers) * (crop == "radius"))
        #: the target the crop head's radius estimate learns (ln re, or ln re of the disk)
        self.size_target = next(i for i, n in enumerate(self.names) if n.startswith("ln_re"))
        self.crop = CropHead(view, zoom_max) if crop == "radius" else CROPS[crop](view)
        self.crop_kind = crop
        w = width
        self.features = nn.Sequential(
            _block(1, w, 1),
            _block(w, w, 2),
            _block(w, 2 * w, 1),
            _block(2 * w, 2 * w, 2),
            _block(2 * w, 4 * w, 1),
            _block(4 * w, 4 * w, 2),
            _block(4 * w, 4 * w, 1),
        )
        n_tri = n_targets * (n_targets - 1) // 2
        # extras + ln(view pixel in input pixels)
        self.head = nn.Sequential(
            nn.Linear(4 * w * 2 + self.n_extras + 1, 192),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(192, 192),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(192, 2 * n_targets + n_tri),
        )
        self.register_buffer("target_mean", torch.zeros(n_targets))
        self.register_buffer("target_std", torch.ones(n_targets))
        #: per-target scale of the predicted standard deviations, set on a validation set after training
        self.register_buffer("calibration", torch.ones(n_targets))

    def forward(self, x: Tensor, extras: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Returns (mean [B, K], log_var [B, K], off-diagonals of L [B, K(K-1)/2], zoom s [B],
        the crop head's ln re estimate [B] or None), mean and variances in target units (the normalisation
        undone, calibration applied)."""
        view, s, ln_re = self.crop(x, extras)
        f = self.features(view)
        pooled = torch.cat([F.adaptive_avg_pool2d(f, 1).flatten(1), F.adaptive_max_pool2d(f, 1).flatten(1)], 1)
        pix = torch.log(s * x.shape[-1] / view.shape[-1])[:, None]
        out = self.head(torch.cat([pooled, extras[:, : self.n_extras], pix], 1))
        k = self.k
        mean = out[:, :k] * self.target_std + self.target_mean + pix * self.pixel_power
        log_var = out[:, k : 2 * k].clamp_min(MIN_LOG_VAR) + 2 * torch.log(self.target_std * self.calibration)
        off = out[:, 2 * k :]
        return mean, log_var, off, s, ln_re

    def for_inference(self) -> MorphNet:
        """This network in eval mode, made about twice as fast on a CPU for inference: each
        convolution of the CNN absorbs the batch norm after it (running statistics) and the weights
        go channels-last. The outputs agree to float rounding, MC dropout still works, but the network
        can no longer be trained or saved as a training checkpoint."""
        self.eval()
        for block in self.features:
            if isinstance(block[1], nn.BatchNorm2d):
                block[0], block[1] = fuse_conv_bn_eval(block[0], block[1]), nn.Identity()
        return self.to(memory_format=torch.channels_last)

    def scale(self) -> Tensor:
        """[K] scale that carries L from the head's normalised units to target units (see :func:`unit_lower`)."""
        return self.target_std * self.calibration


def unit_lower(off: Tensor, k: int, scale: Tensor | None = None) -> Tensor:
    """Unit lower-triangular L [B, K, K] from its below-diagonal entries [B, K(K-1)/2] (row-major).
    With scale [K] (the target std), entries are in normalised units: L = S L' S^-1."""
    b = off.shape[0]
    lo = torch.zeros(b, k, k, dtype=off.dtype, device=off.device)
    rows, cols = torch.tril_indices(k, k, offset=-1, device=off.device)
    lo[:, rows, cols] = off
    if scale is not None:
        lo = lo * (scale[:, None] / scale[None, :])
    return lo + torch.eye(k, dtype=off.dtype, device=off.device)


def covariance(log_var: Tensor, off: Tensor, scale: Tensor | None = None) -> Tensor:
    """Sigma = L D L^T [B, K, K]."""
    k = log_var.shape[1]
    lo = unit_lower(off, k, scale)
    return lo @ torch.diag_embed(torch.exp(log_var)) @ lo.transpose(1, 2)


def gaussian_nll(target: Tensor, mean: Tensor, log_var: Tensor, off: Tensor, scale: Tensor | None = None) -> Tensor:
    """Per-galaxy 1/2 Delta^T Sigma^-1 Delta + 1/2 log det Sigma [B] (no 1/2 K log 2 pi), with
    Sigma = L D L^T: solve L z = Delta, then Delta^T Sigma^-1 Delta = sum z^2 / D."""
    k = mean.shape[1]
    lo = unit_lower(off, k, scale)
    delta = (target - mean)[:, :, None]
    z = torch.linalg.solve_triangular(lo, delta, upper=False, unitriangular=True)[:, :, 0]
    return 0.5 * (z * z * torch.exp(-log_var)).sum(1) + 0.5 * log_var.sum(1)


def mc_dropout(model: nn.Module, on: bool = True) -> None:
    """Eval mode for everything (batch norm uses its running statistics) but dropout (``on``)."""
    model.eval()
    for mod in model.modules():
        if isinstance(mod, nn.Dropout):
            mod.train(on)
