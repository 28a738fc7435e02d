"""How the voting page frames its images, so a volunteer compares shapes, not sizes or sharpness.

Pure numpy/scipy (no Django). Images are grey [H, W] float arrays of display levels 0-255 (the
catalog's PNGs: galaxy dark on a light sky, or light on dark).

- `measure(grey)`: the sky level and noise (from the border), the central galaxy's isophotal
  major axis (the span along its major axis of the pixels 3 sigma above the sky, after a light
  smoothing) and the PSF FWHM (the median half-maximum width of the bright isolated stars).
- `frame_target(grey)`: the target cropped (or padded with sky and noise) and resampled so that
  its major axis spans FRAME_FRACTION of a FRAME_SIZE panel, with the `Look` of the result: sky,
  noise, PSF FWHM and the galaxy's darkest level, in the served frame's pixels.
- `render_standard(inc, look)`: a thick inclined disk drawn with that look (PSF blur, sky, noise,
  a few field stars of the same PSF) and scaled so that the same measure gives it the same
  major-axis fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

FRAME_FRACTION = 0.6  # the major axis spans this share of the panel's width, target and standards
FRAME_SIZE = 256  # pixel: side of the served target and standards
BORDER = 0.08  # outer share of each side where the sky and its noise are measured
DETECT_SIGMA = 3.0  # isophote of the major-axis measure, in sky-noise units of the smoothed image
SMOOTH = 1.5  # pixel: Gaussian smoothing before the isophote
STAR_SIGMA = 10.0  # smoothed peak above the sky, in smoothed-noise units, of a star used for the PSF
MAX_STARS = 12  # stars fitted per image at most (the brightest unsaturated first)
MIN_NOISE = 0.3  # grey levels: the isophote of a noiseless image lies DETECT_SIGMA times this above the sky
DEFAULT_PSF_FWHM = 2.0  # pixel of the served frame, when an image has no usable star
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # a Gaussian's FWHM / sigma


@dataclass(frozen=True)
class Look:
    """How an image looks in the served frame: sky level, sky noise (rms) and the galaxy's most
    extreme level in grey levels (0-255), PSF FWHM in pixels, and whether the galaxy is dark on light."""

    sky: float
    noise: float
    ink: float
    psf_fwhm: float
    dark_on_light: bool = True


@dataclass(frozen=True)
class Measure:
    sky: float
    noise: float
    dark_on_light: bool
    cx: float  # pixel: flux-weighted centre of the galaxy
    cy: float
    extent: float  # pixel: isophotal major axis
    theta: float  # deg: major axis, counter-clockwise from +x
    ink: float  # grey level of the galaxy's most extreme (smoothed) pixel
    psf_fwhm: float | None  # pixel; None without a usable star
    stars: int

    def fraction(self, width: int) -> float:
        return self.extent / width


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """[H, W] or [H, W, C] pixels -> [H, W] float64 grey levels (the mean of the colour channels)."""
    a = np.asarray(pixels, dtype=np.float64)
    return a.mean(axis=2) if a.ndim == 3 else a


def _border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    k = max(2, round(BORDER * min(h, w)))
    return np.concatenate([a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()])


def _robust(values: np.ndarray, drop_clipped: bool = True) -> tuple[float, float]:
    """Median and noise rms (1.4826 x the median absolute deviation) of sky pixels. For display
    levels (drop_clipped) the clipped 0/255 levels (padding, saturation) are left out and the
    deviation is read on the side of the median away from the nearer clip, which cuts that tail."""
    v = values[(values > 0) & (values < 255)] if drop_clipped else values
    if v.size < 16:
        v = values
    med = float(np.median(v))
    if drop_clipped:
        side = v[v < med] if med > 127.0 else v[v > med]
        if side.size >= 8:
            return med, float(1.4826 * np.median(np.abs(side - med)))
    return med, float(1.4826 * np.median(np.abs(v - med)))


def measure(grey: np.ndarray, *, psf: bool = True) -> Measure:
    """Sky, noise, the central galaxy's isophotal major axis and (psf) the PSF of a grey image."""
    grey = np.asarray(grey, dtype=np.float64)
    h, w = grey.shape
    sky, noise = _robust(_border(grey))
    dark = sky > 127.0
    signal = (sky - grey) if dark else (grey - sky)
    smooth = ndimage.gaussian_filter(signal, SMOOTH)
    _, noise_s = _robust(_border(smooth), drop_clipped=False)  # the smoothed noise, measured
    noise_s = max(noise_s, MIN_NOISE)
    mask = smooth > DETECT_SIGMA * noise_s
    labels, n = ndimage.label(mask)
    # The galaxy: the component holding the most smoothed signal in the central third.
    y0, y1, x0, x1 = h // 3, h - h // 3, w // 3, w - w // 3
    central = labels[y0:y1, x0:x1]
    if n == 0 or not central.any():
        return Measure(sky, noise, dark, w / 2, h / 2, 0.0, 0.0, sky, None, 0)
    weights = ndimage.sum(np.clip(smooth[y0:y1, x0:x1], 0, None), central, index=np.arange(1, n + 1))
    gal = labels == int(np.argmax(weights)) + 1
    ys, xs = np.nonzero(gal)
    f = np.clip(smooth[ys, xs], 0, None) + 1e-9
    cx, cy = float(np.average(xs, weights=f)), float(np.average(ys, weights=f))
    dx, dy = xs - cx, ys - cy
    cxx, cyy, cxy = np.average(dx * dx, weights=f), np.average(dy * dy, weights=f), np.average(dx * dy, weights=f)
    theta = 0.5 * math.atan2(2 * cxy, cxx - cyy)  # image rows grow downwards
    along = dx * math.cos(theta) + dy * math.sin(theta)
    lo, hi = np.percentile(along, [0.5, 99.5])
    peak = float(smooth[gal].max())
    ink = sky - peak if dark else sky + peak
    fwhm, stars = _psf_fwhm(signal, smooth, noise, noise_s, gal, sky if dark else 255.0 - sky) if psf else (None, 0)
    return Measure(sky, noise, dark, cx, cy, float(hi - lo), float(-math.degrees(theta)), ink, fwhm, stars)


def _gaussian(coords, a, x0, y0, sigma, b):
    y, x = coords
    return (a * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2.0 * sigma**2)) + b).ravel()


def _psf_fwhm(signal, smooth, noise, noise_s, galaxy, clip) -> tuple[float | None, int]:
    """Median FWHM of circular Gaussians fitted to bright, isolated, unsaturated point sources off
    the galaxy (least squares on 13 x 13 cutouts); `clip`: the largest signal the image can hold."""
    from scipy.optimize import curve_fit

    h, w = signal.shape
    r = 6
    peaks = (smooth == ndimage.maximum_filter(smooth, size=2 * r + 3)) & (smooth > STAR_SIGMA * noise_s)
    grown = ndimage.binary_dilation(galaxy, iterations=2 * r)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    widths = []
    found = [(float(smooth[y, x]), y, x) for y, x in zip(*np.nonzero(peaks & ~grown), strict=True) if r <= y < h - r and r <= x < w - r]
    fitted = 0
    for _, y, x in sorted(found, reverse=True):
        cut = signal[y - r : y + r + 1, x - r : x + r + 1]
        if cut.max() >= clip - 1.0:
            continue  # saturated: its top is flat
        if fitted == MAX_STARS:
            break
        fitted += 1
        try:
            p, _ = curve_fit(
                _gaussian, (yy, xx), cut.ravel(), p0=(float(cut.max()), 0.0, 0.0, 1.5, 0.0),
                bounds=((0.0, -2.0, -2.0, 0.3, -np.inf), (np.inf, 2.0, 2.0, 5.0, np.inf)), maxfev=2000,
            )  # fmt: skip
        except (RuntimeError, ValueError):
            continue
        if p[0] > STAR_SIGMA / 2 * max(noise, MIN_NOISE) and 0.35 < p[3] < 4.9:
            widths.append(FWHM_PER_SIGMA * float(p[3]))
    if not widths:
        return None, 0
    med = float(np.median(widths))
    kept = [v for v in widths if v < 1.5 * med]  # galaxies and blends are wider than the stars
    return float(np.median(kept)), len(kept)


def _resample(grey: np.ndarray, cx: float, cy: float, side: float, size: int, fill: float) -> np.ndarray:
    """The square of `side` pixels centred on (cx, cy), resampled to [size, size] (area-averaged
    when shrinking); outside the image: `fill`."""
    step = side / size
    if step > 1.0:  # average over the source pixels of each output pixel, not just sample them
        grey = ndimage.uniform_filter(grey, size=max(1, round(step)), mode="nearest")
    c = (np.arange(size) + 0.5) * step - side / 2
    yy, xx = np.meshgrid(cy + c - 0.5, cx + c - 0.5, indexing="ij")
    return ndimage.map_coordinates(grey, [yy, xx], order=1, mode="constant", cval=np.nan).reshape(size, size)


def frame_target(
    grey: np.ndarray, *, fraction: float = FRAME_FRACTION, size: int = FRAME_SIZE, seed: int = 0
) -> tuple[np.ndarray, Look, Measure]:
    """The target as served: [size, size] uint8 with its major axis spanning `fraction` of the width,
    centred on the galaxy; parts beyond the image are sky with the image's noise. Returns the
    pixels, their Look (PSF in the served frame's pixels) and the measure of the original."""
    grey = np.asarray(grey, dtype=np.float64)
    m = measure(grey)
    if m.extent <= 0:
        side = float(max(grey.shape))
        cx, cy = grey.shape[1] / 2, grey.shape[0] / 2
    else:
        side, cx, cy = m.extent / fraction, m.cx, m.cy
    rng = np.random.default_rng(seed)
    out = None
    for _ in range(3):  # the isophote moves a little with the resampling's noise: settle it
        out = _resample(grey, cx, cy, side, size, np.nan)
        hole = np.isnan(out)
        out[hole] = m.sky + rng.normal(0.0, m.noise, int(hole.sum()))
        got = measure(out, psf=False)
        if got.extent <= 0 or abs(got.extent / size - fraction) < 0.01:
            break
        side *= got.extent / size / fraction
    framed = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    got = measure(framed)
    # The PSF as served (resampling included) where the frame holds stars, else the original's scaled.
    if got.psf_fwhm and got.stars >= 2:
        psf = got.psf_fwhm
    else:
        psf = m.psf_fwhm * size / side if m.psf_fwhm else DEFAULT_PSF_FWHM
    look = Look(sky=got.sky, noise=got.noise, ink=got.ink, psf_fwhm=float(psf), dark_on_light=got.dark_on_light)
    return framed, look, m


# ---------------------------------------------------------------------------------------------
# Rendered standards
# ---------------------------------------------------------------------------------------------
BULGE_SHARE = 0.6  # central density of the bulge relative to the disk's
BULGE_SCALE = 0.25  # bulge scale length in disk scale lengths


def disk_light(inc: float, n: int, half: float, thickness: float, n_los: int = 40) -> np.ndarray:
    """[n, n] surface brightness of a thick disk at inclination inc (deg), major axis horizontal,
    field half-width `half` in disk scale lengths h.

    Luminosity density rho(R, z) = exp(-R/h) sech^2(z / z0), z0 = thickness * h (a thick disk;
    van der Kruit & Searle 1981), plus a small exponential bulge, integrated along each line of sight."""
    c = ((np.arange(n) - (n - 1) / 2) * (2 * half / n)).astype(np.float32)
    x, y = np.meshgrid(c, -c)
    s = np.linspace(-half, half, n_los, dtype=np.float32)[:, None, None]
    ci, si = np.cos(np.radians(inc)), np.sin(np.radians(inc))
    X = x[None]
    Y = y[None] * ci - s * si
    Z = y[None] * si + s * ci
    R = np.hypot(X, Y)
    disk = np.exp(-R) / np.cosh(np.minimum(np.abs(Z) / thickness, 40.0)) ** 2
    bulge = BULGE_SHARE * np.exp(-np.sqrt(X**2 + Y**2 + Z**2) / BULGE_SCALE)
    return (disk + bulge).sum(axis=0) * (2 * half / n_los)


STRETCH = 0.02  # asinh softening of the display stretch, as a share of the peak
STARS = (2, 6)  # field stars per rendered standard (at least, at most)


def _display(light: np.ndarray, look: Look, noise: float, rng: np.random.Generator, stars: bool) -> np.ndarray:
    """Display levels of `light` as the target shows its galaxy: blurred by the PSF, asinh-stretched
    between the sky and the galaxy's extreme level, field stars of the PSF's displayed width, noise."""
    size = light.shape[0]
    img = ndimage.gaussian_filter(light, look.psf_fwhm / FWHM_PER_SIGMA) if look.psf_fwhm > 0 else light
    img = img / max(float(img.max()), 1e-12)
    shown = np.clip(np.arcsinh(img / STRETCH) / np.arcsinh(1 / STRETCH), 0, 1)
    if stars:  # drawn on the display scale, as the target's stars are measured there
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        sigma = max(look.psf_fwhm, 0.5) / FWHM_PER_SIGMA
        for _ in range(int(rng.integers(STARS[0], STARS[1] + 1))):
            x, y = rng.uniform(0.06, 0.94, 2) * size
            if abs(y - size / 2) < 0.2 * size and abs(x - size / 2) < 0.4 * size:
                continue  # not on the galaxy
            shown = np.maximum(shown, rng.uniform(0.3, 0.8) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)))
    depth = look.sky - look.ink if look.dark_on_light else look.ink - look.sky
    sign = -1.0 if look.dark_on_light else 1.0
    out = look.sky + sign * shown * depth + rng.normal(0.0, noise, img.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_standard(
    inc: float,
    look: Look,
    *,
    thickness: float = 0.2,
    seed: int = 0,
    size: int = FRAME_SIZE,
    fraction: float = FRAME_FRACTION,
    stars: bool = True,
) -> np.ndarray:
    """A rendered standard at inclination inc (deg) with `look` (sky, noise, PSF, galaxy depth), its
    disk scaled so that `measure` gives its major axis `fraction` of the width: [size, size] uint8."""
    n = min(size, 128)  # the light is computed on at most 128 x 128 pixels, then resampled
    half = 7.0  # field half-width in disk scale lengths; adjusted to reach `fraction`
    # Sky and noise are adjusted so that their measures are the target's (clipping at 0/255 shifts them).
    noise, drawn = look.noise, look
    out = None
    for k in range(4):
        light = disk_light(inc, n, half, thickness)
        if n != size:
            light = ndimage.zoom(light, size / n, order=1)
        out = _display(light, drawn, noise, np.random.default_rng(seed), stars=False)
        got = measure(out, psf=False)
        if got.noise > 0 and look.noise > 0:
            noise *= look.noise / got.noise
        drawn = replace(drawn, sky=float(np.clip(drawn.sky + look.sky - got.sky, 0, 255)))
        if got.extent <= 0 or (abs(got.extent / size - fraction) < 0.01 and abs(got.sky - look.sky) < 1) or k == 3:
            break
        half *= got.extent / size / fraction
    if stars:
        out = _display(light, drawn, noise, np.random.default_rng(seed), stars=True)
    return out
