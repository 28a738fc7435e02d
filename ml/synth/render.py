"""Synthetic images of disk galaxies of known inclination (pure numpy, no Django).

Every image is deterministic from ``(seed, index)``: the parameters and the noise of image
``k`` come from ``numpy.random.default_rng([seed, k])``, so any subset of a set can be
re-rendered alone and two sets with different seeds never share an image.

Geometry follows the cutouts of the Extragalactic Distance Database inclination work
(Kourkchi et al. 2020, ApJ 902, 145): the major axis is horizontal and the field spans about
twice d25. The stellar disk is an oblate exponential disk of intrinsic axis ratio ``q0``; its
apparent axis ratio at inclination ``i`` is Hubble's (1926, ApJ 64, 321)

    q^2 = cos^2 i (1 - q0^2) + q0^2.

A thin layer (spiral arms, star-forming clumps, dust) lies in the mid-plane and is flattened by
the same relation with a much smaller intrinsic thickness, which is what lets an image tell a
thick disk seen edge-on from a thin one seen at 80 deg. Bulges are Sérsic profiles. Images pass
through a Gaussian PSF, sky and photon noise, a display stretch and 8-bit quantisation, grey
(optionally inverted, galaxy dark on light as in the shared SDSS PNGs) or gri colour.

Labels: ``inc`` (deg) for accepted disks with 45 <= inc <= 90; ``reject = 1`` for face-on disks
(inc < 45, outside the regression range) and for junk: stars, blank sky, mergers, ellipticals,
artefacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ml.synth import wide as _wide

#: Image side of the training set (pixels); Inclinet works on 128x128 cutouts.
IMAGE_SIZE = 128

#: Range of the intrinsic axis ratio of stellar disks (edge-on thickness), e.g. Giovanelli et
#: al. 1994 (AJ 107, 2036) use 0.13; Tully & Fisher use 0.2; EDD assumes 0.2-0.3.
Q0_RANGE = (0.1, 0.3)

#: Intrinsic thickness of the thin mid-plane layer that carries arms, clumps and dust.
THIN_Q0_RANGE = (0.02, 0.05)

#: Inclination range of the regression (deg); below it a disk is "face-on" (EDD flag F).
INC_MIN, INC_MAX = 45.0, 90.0

#: Semi-major axis of the d25 isophote in pixels: the field spans twice d25 (Kourkchi et al. 2020).
R25_PIX = IMAGE_SIZE / 4.0

KINDS = ("disk", "faceon", "star", "blank", "merger", "elliptical", "artefact")


def sersic_bn(n: np.ndarray | float) -> np.ndarray | float:
    """Sérsic b_n such that Re encloses half the light.

    Asymptotic series of Ciotti & Bertin (1999, A&A 352, 447), accurate to better than 1e-4
    for n >= 0.36. Kept here (not imported from the fitting engine) so that ml.synth stays a
    leaf module with numpy as its only dependency.
    """
    n = np.asarray(n, dtype=np.float64)
    return (
        2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n**2) + 131.0 / (1148175.0 * n**3) - 2194697.0 / (30690717750.0 * n**4)
    )


def apparent_axis_ratio(inc_deg: np.ndarray | float, q0: np.ndarray | float) -> np.ndarray:
    """Apparent axis ratio b/a of an oblate disk (Hubble 1926): q^2 = cos^2 i (1 - q0^2) + q0^2."""
    c = np.cos(np.radians(inc_deg))
    q0 = np.asarray(q0, dtype=np.float64)
    return np.sqrt(c * c * (1.0 - q0 * q0) + q0 * q0)


def inclination_from_axis_ratio(q: np.ndarray | float, q0: float = 0.3) -> np.ndarray:
    """Invert Hubble's relation: cos^2 i = (q^2 - q0^2) / (1 - q0^2); 90 deg when q <= q0."""
    q = np.asarray(q, dtype=np.float64)
    c2 = np.clip((q * q - q0 * q0) / (1.0 - q0 * q0), 0.0, 1.0)
    return np.degrees(np.arccos(np.sqrt(c2)))


def bayes_inclination_from_axis_ratio(
    q: np.ndarray | float, q0_range: tuple[float, float] = Q0_RANGE, inc_range: tuple[float, float] = (INC_MIN, INC_MAX), step: float = 0.01
) -> np.ndarray:
    """Posterior mean inclination (deg) given the exact apparent axis ratio of the stellar disk,
    with this renderer's priors: inclination uniform over inc_range, q0 uniform over q0_range.

    The estimator of least mean squared error among all that read nothing but b/a: the reference
    of what the thickness alone leaves unknown. By Hubble's relation, b/a = q at inclination i needs
    q0 = sqrt((q^2 - cos^2 i) / (1 - cos^2 i)), and p(i | q) is proportional to the density of q0
    there times |dq0/dq| = q / ((1 - cos^2 i) q0). NaN where no i in the range gives this q."""
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    grid = np.arange(inc_range[0], inc_range[1] + step / 2, step)
    c2 = np.cos(np.radians(grid)) ** 2
    s2 = np.maximum(1.0 - c2, 1e-12)
    out = np.full(q.shape, np.nan)
    chunk = 256  # axis ratios per [chunk, grid] block (memory)
    for k in range(0, len(q), chunk):
        qq = q[k : k + chunk, None]
        q0sq = (qq * qq - c2) / s2
        q0 = np.sqrt(np.clip(q0sq, 0.0, None))
        inside = (q0sq > 0) & (q0 >= q0_range[0]) & (q0 <= q0_range[1])
        w = np.where(inside, qq / (s2 * np.maximum(q0, 1e-12)), 0.0)
        total = w.sum(1)
        out[k : k + chunk] = np.where(total > 0, (w * grid).sum(1) / np.where(total > 0, total, 1.0), np.nan)
    return out


@dataclass
class SynthConfig:
    """Knobs of a synthetic set. Fractions of kinds must sum to 1."""

    size: int = IMAGE_SIZE
    frac_disk: float = 0.72
    frac_faceon: float = 0.10
    frac_star: float = 0.03
    frac_blank: float = 0.03
    frac_merger: float = 0.04
    frac_elliptical: float = 0.04
    frac_artefact: float = 0.04
    #: probability of a random position angle instead of a horizontal major axis (+- jitter)
    p_random_rotation: float = 0.15
    #: probability of a gri colour image (returned as HxWx3 uint8)
    p_colour: float = 0.3
    #: probability that a grey image is inverted (galaxy dark on light)
    p_invert: float = 0.5
    pa_jitter_deg: float = 3.0
    #: share of images drawn by the widened renderer (:mod:`ml.synth.wide`): 3-D disks of several
    #: profile families, more bulge shapes, PSF families, noise models, sky gradients, scales and
    #: centring errors. 0 by default, so the classic sets (the project's test set) stay as they were.
    wide: float = 0.0
    extra: dict = field(default_factory=dict)

    def kind_probs(self) -> np.ndarray:
        p = np.array(
            [
                self.frac_disk,
                self.frac_faceon,
                self.frac_star,
                self.frac_blank,
                self.frac_merger,
                self.frac_elliptical,
                self.frac_artefact,
            ]
        )
        return p / p.sum()


# ---------------------------------------------------------------------------------------------
# building blocks on a pixel grid (all [H, W] float64 arrays)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x - c, y - c


def _rotate(x: np.ndarray, y: np.ndarray, x0: float, y0: float, pa_rad: float):
    """Coordinates along (xp) and across (yp) an axis at angle pa from the +x axis."""
    dx, dy = x - x0, y - y0
    c, s = np.cos(pa_rad), np.sin(pa_rad)
    return dx * c + dy * s, -dx * s + dy * c


def _sersic(xp: np.ndarray, yp: np.ndarray, re: float, n: float, q: float) -> np.ndarray:
    r = np.sqrt(xp * xp + (yp / q) ** 2)
    return np.exp(-sersic_bn(n) * ((r / re) ** (1.0 / n) - 1.0))


def _deposit(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, flux: np.ndarray) -> None:
    """Add point sources with bilinear weights (pixel coordinates, origin at pixel 0)."""
    h, w = img.shape
    x0 = np.floor(xs).astype(int)
    y0 = np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, wt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xx, yy = x0 + dx, y0 + dy
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        np.add.at(img, (yy[ok], xx[ok]), (flux * wt)[ok])


def _psf_otf(size: int, fwhm: float, beta: float | None) -> np.ndarray:
    """Optical transfer function of a Gaussian (beta None) or Moffat PSF centred at (0, 0)."""
    x, y = _grid(size)
    x = np.fft.ifftshift(x + 0.5 * ((size + 1) % 2))
    y = np.fft.ifftshift(y + 0.5 * ((size + 1) % 2))
    r2 = x * x + y * y
    if beta is None:
        sig = fwhm / 2.3548
        psf = np.exp(-0.5 * r2 / (sig * sig))
    else:
        alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        psf = (1.0 + r2 / (alpha * alpha)) ** (-beta)
    psf /= psf.sum()
    return np.fft.rfft2(psf)


def _convolve(img: np.ndarray, otf: np.ndarray) -> np.ndarray:
    return np.fft.irfft2(np.fft.rfft2(img) * otf, s=img.shape)


def _disk_galaxy(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    inc: float,
    scale: float,
    x0: float = 0.0,
    y0: float = 0.0,
    pa: float = 0.0,
    with_dust: bool = True,
    rw: np.random.Generator | None = None,
) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """One disk galaxy. Returns params, bulge, disk, young, atten and a thin-layer point image.

    With ``rw`` (the widened renderer's stream) the classic draws are made and then the stellar
    disk, bulge, bar, knots and dust strength are redrawn from ``rw``."""
    size = x.shape[0]
    q0 = rng.uniform(*Q0_RANGE)
    q = float(apparent_axis_ratio(inc, q0))
    qt0 = rng.uniform(*THIN_Q0_RANGE)
    qt = float(apparent_axis_ratio(inc, qt0))
    r25_over_h = rng.uniform(2.8, 4.3)
    h = scale * R25_PIX / r25_over_h
    xp, yp = _rotate(x, y, x0, y0, pa)
    r_disk = np.sqrt(xp * xp + (yp / q) ** 2)
    disk = np.exp(-r_disk / h)
    # truncation beyond ~4-5 h, as observed disk breaks (Pohlen & Trujillo 2006)
    r_br = h * rng.uniform(3.5, 6.0)
    disk *= np.exp(-np.clip(r_disk - r_br, 0, None) / (0.5 * h))

    # thin layer in deprojected (disk-plane) coordinates
    xd, yd = xp, yp / qt
    r_thin = np.sqrt(xd * xd + yd * yd)
    phi = np.arctan2(yd, xd)
    m = int(rng.choice([2, 2, 2, 3, 4]))
    pitch = np.radians(rng.uniform(10.0, 35.0))
    phase = rng.uniform(0, 2 * np.pi)
    arm_amp = rng.uniform(0.0, 1.2) if rng.random() < 0.8 else 0.0
    width_pow = rng.uniform(2.0, 8.0)
    s = np.cos(m * (phi - np.log(r_thin / h + 1e-3) / np.tan(pitch)) + phase)
    inner = 1.0 - np.exp(-((r_thin / (rng.uniform(0.5, 1.5) * h)) ** 2))
    h_arm = h * rng.uniform(0.8, 1.3)
    young = arm_amp * np.exp(-r_thin / h_arm) * ((1 + s) / 2) ** width_pow * inner
    # flocculent/clumpy modulation of the arms
    young *= 1.0 + 0.5 * rng.standard_normal(young.shape).clip(-1.5, 1.5) * rng.uniform(0, 1)

    # clumps (HII regions) placed in the disk plane, mostly on arms
    n_cl = int(rng.integers(0, 30)) if rng.random() < 0.7 else 0
    pts = np.zeros_like(disk)
    if n_cl:
        rc = rng.gamma(2.0, h_arm, n_cl)
        on_arm = rng.random(n_cl) < 0.7
        k = rng.integers(0, m, n_cl)
        ph_arm = (np.log(rc / h + 1e-3) / np.tan(pitch)) + (2 * np.pi * k - phase) / m
        pc = np.where(on_arm, ph_arm + rng.normal(0, 0.15, n_cl), rng.uniform(0, 2 * np.pi, n_cl))
        xd_c, yd_c = rc * np.cos(pc), rc * np.sin(pc)
        xp_c, yp_c = xd_c, yd_c * qt
        c, sn = np.cos(pa), np.sin(pa)
        xs = xp_c * c - yp_c * sn + x0 + (size - 1) / 2.0
        ys = xp_c * sn + yp_c * c + y0 + (size - 1) / 2.0
        flux = rng.lognormal(0.0, 0.8, n_cl) * 0.04 * h * h * np.exp(-rc / h_arm) * (0.2 + arm_amp)
        _deposit(pts, xs, ys, flux)

    # bulge
    bt = 0.0 if rng.random() < 0.2 else rng.uniform(0.0, 0.5)
    n_b = rng.uniform(1.0, 4.0)
    re_b = h * rng.uniform(0.15, 0.6)
    qb = float(apparent_axis_ratio(inc, rng.uniform(0.5, 0.95)))
    bulge = _sersic(xp, yp, re_b, n_b, qb)
    dsum = disk.sum() + young.sum() + pts.sum()
    bulge *= bt / (1.0 - bt + 1e-9) * dsum / max(bulge.sum(), 1e-12)

    # dust: thin absorbing layer; the near half (yp < 0) absorbs most of the light behind it
    atten = np.ones_like(disk)
    if with_dust and rng.random() < 0.75:
        qd = float(apparent_axis_ratio(inc, rng.uniform(0.06, 0.14)))
        r_d = np.sqrt(xp * xp + (yp / qd) ** 2)
        tau_face = rng.uniform(0.3, 2.0)
        tau = tau_face / max(qd, 0.1) * np.exp(-r_d / (h * rng.uniform(1.0, 2.0)))
        near = 1.0 / (1.0 + np.exp(yp / max(0.7, 0.3 * h * qd)))
        f_abs = 0.5 + 0.45 * near
        atten = 1.0 - f_abs * (1.0 - np.exp(-tau))
        # dust is confined to the disk plane: little absorption far from it edge-on
        atten = np.where(r_d > 6 * h, 1.0, atten)
    params = dict(q0=q0, q=q, h=h, bt=bt, n_b=n_b, re_b=re_b, arm_amp=arm_amp, m=m)
    if rw is not None:
        params, bulge, disk, atten, pts = _widen_disk(rw, x, y, inc, h, x0, y0, pa, xp, yp, qt, params, disk, young, atten, pts)
    return params, bulge, disk, young, atten, pts, h


def _widen_disk(rw, x, y, inc, h, x0, y0, pa, xp, yp, qt, params, disk, young, atten, pts):
    """The widened renderer's stellar disk, bulge, bar, knots and dust (see ml.synth.wide)."""
    size = x.shape[0]
    flux = disk.sum()
    if rw.random() < 0.65:
        disk, extra = _wide.draw_disk3d(rw, size, inc, h, pa, x0, y0)
        disk *= flux
        params.update(extra, q=_wide.moment_axis_ratio(disk))
    else:
        n_d = float(rw.uniform(0.5, 1.5))
        q = float(apparent_axis_ratio(inc, params["q0"]))
        re_d = 1.678 * h  # half-light radius of the exponential disk it replaces
        disk = _sersic(xp, yp, re_d, n_d, q)
        disk *= flux / max(disk.sum(), 1e-12)
        params.update(disk_model="sersic", n_disk=n_d)
    # knots scattered over the disk plane (not only on arms), projected like the thin layer
    if rw.random() < 0.5:
        nk = int(rw.integers(5, 80))
        rc = rw.gamma(2.0, h, nk)
        pc = rw.uniform(0, 2 * np.pi, nk)
        xp_c, yp_c = rc * np.cos(pc), rc * np.sin(pc) * qt
        c, sn = np.cos(pa), np.sin(pa)
        xs = xp_c * c - yp_c * sn + x0 + (size - 1) / 2.0
        ys = xp_c * sn + yp_c * c + y0 + (size - 1) / 2.0
        fk = rw.lognormal(0.0, 1.0, nk)
        pts = pts.copy()
        _deposit(pts, xs, ys, fk / fk.sum() * flux * rw.uniform(0.02, 0.3))
    # bulge: wider Sérsic index and flattening, boxy or discy isophotes
    bt = params["bt"]
    if bt > 0:
        n_b = float(np.exp(rw.uniform(np.log(0.5), np.log(6.0))))
        qb = float(apparent_axis_ratio(inc, rw.uniform(0.3, 1.0)))
        cb = float(rw.uniform(1.6, 3.2)) if rw.random() < 0.4 else 2.0
        re_b = params["re_b"]
        r = _wide.generalised_radius(xp, yp, qb, cb)
        bulge = np.exp(-sersic_bn(n_b) * ((np.maximum(r, 1e-3) / re_b) ** (1.0 / n_b) - 1.0))
        dsum = disk.sum() + young.sum() + pts.sum()
        bulge *= bt / (1.0 - bt) * dsum / max(bulge.sum(), 1e-12)
        params.update(n_b=n_b, bulge_c=cb)
    else:
        bulge = np.zeros_like(disk)
    # bar in the disk plane, thickened like a bulge
    if rw.random() < 0.3:
        qbar = float(apparent_axis_ratio(inc, rw.uniform(0.15, 0.3)))
        phi = rw.uniform(0, np.pi)
        xd, yd = xp, yp / qbar
        u = xd * np.cos(phi) + yd * np.sin(phi)
        w = -xd * np.sin(phi) + yd * np.cos(phi)
        bar = np.exp(-((np.sqrt(u * u + (w / rw.uniform(0.2, 0.4)) ** 2) / (h * rw.uniform(0.4, 1.0))) ** 2))
        bulge = bulge + bar * flux * rw.uniform(0.03, 0.15) / max(bar.sum(), 1e-12)
    # dust: scale the classic optical depth
    atten = np.clip(atten, 1e-6, 1.0) ** rw.uniform(0.3, 2.0)
    return params, bulge, disk, atten, pts


def _point_sources(rng: np.random.Generator, size: int, n: int, fmin: float, fmax: float):
    img = np.zeros((size, size))
    if n:
        xs = rng.uniform(0, size - 1, n)
        ys = rng.uniform(0, size - 1, n)
        flux = np.exp(rng.uniform(np.log(fmin), np.log(fmax), n))
        _deposit(img, xs, ys, flux)
    return img


def _neighbours(rng, x, y, n, hmax):
    out = np.zeros_like(x)
    for _ in range(n):
        x0, y0 = rng.uniform(-0.48, 0.48, 2) * x.shape[0]
        xp, yp = _rotate(x, y, x0, y0, rng.uniform(0, np.pi))
        hh = rng.uniform(0.7, hmax)
        out += rng.uniform(0.05, 1.0) * _sersic(xp, yp, hh, rng.uniform(0.7, 4), rng.uniform(0.2, 1))
    return out


def render_one(seed: int, index: int, config: SynthConfig | None = None) -> tuple[np.ndarray, dict]:
    """Render image ``index`` of the set ``seed``.

    Returns (image, label): image uint8 [H, W] (grey) or [H, W, 3] (gri colour, R=i G=r B=g);
    label dict with kind, reject (0/1), inc (deg; NaN for junk), q0, q, colour, inverted, pa.
    """
    cfg = config or SynthConfig()
    rng = np.random.default_rng([int(seed), int(index)])
    rw = _wide.wide_rng(seed, index, cfg.wide) if cfg.wide > 0 else None
    size = cfg.size
    x, y = _grid(size)
    kind = KINDS[int(rng.choice(len(KINDS), p=cfg.kind_probs()))]
    if rng.random() < cfg.p_random_rotation:
        pa = rng.uniform(0, np.pi)
    else:
        pa = np.radians(rng.normal(0.0, cfg.pa_jitter_deg))
    scale = rng.uniform(0.75, 1.3)
    cx, cy = rng.normal(0, 1.5, 2)
    if rw is not None:  # pixel scale and centring errors
        scale = rw.uniform(0.6, 1.55)
        cx, cy = rw.normal(0, 1.5 if rw.random() < 0.8 else 5.0, 2)
    zeros = np.zeros((size, size))
    label: dict = dict(kind=kind, inc=float("nan"), q0=float("nan"), q=float("nan"))
    bulge, disk, young, pts, others = zeros, zeros, zeros, zeros, zeros.copy()
    atten = np.ones((size, size))
    h = R25_PIX / 3.5 * scale

    if kind in ("disk", "faceon", "merger", "artefact"):
        if kind == "faceon":
            inc = float(np.degrees(np.arccos(rng.uniform(np.cos(np.radians(44.0)), 1.0))))
        else:
            inc = rng.uniform(INC_MIN, INC_MAX)
        params, bulge, disk, young, atten, pts, h = _disk_galaxy(rng, x, y, inc, scale, cx, cy, pa, rw=rw)
        label.update(inc=inc, q0=params["q0"], q=params["q"], bt=params["bt"])
        if rw is not None:
            label["disk_model"] = params.get("disk_model", "classic")
        if kind == "merger":
            # a comparable companion overlapping the disk, often with a tidal plume
            inc2 = rng.uniform(20, 90)
            d = rng.uniform(0.3, 1.0) * R25_PIX * scale
            ang = rng.uniform(0, 2 * np.pi)
            _, b2, d2, y2, a2, p2, _ = _disk_galaxy(
                rng,
                x,
                y,
                inc2,
                scale * rng.uniform(0.5, 1.0),
                cx + d * np.cos(ang),
                cy + d * np.sin(ang),
                rng.uniform(0, np.pi),
                with_dust=False,
            )
            f2 = rng.uniform(0.4, 1.2)
            others += f2 * (b2 + d2 + y2 + p2)
            xp, yp = _rotate(x, y, cx, cy, ang + rng.uniform(-0.6, 0.6))
            plume = np.exp(-np.abs(yp) / (0.1 * h + 2.0)) * np.exp(-np.abs(xp - 2 * h) / (2 * h))
            others += rng.uniform(0.0, 0.15) * plume
            label["inc"] = float("nan")
        elif kind == "artefact":
            choice = rng.integers(0, 4)
            if choice == 0:  # bright satellite trail across the galaxy
                xp, yp = _rotate(x, y, *rng.normal(0, 8, 2), rng.uniform(0, np.pi))
                others += rng.uniform(0.3, 3.0) * np.exp(-0.5 * (yp / rng.uniform(0.5, 2.0)) ** 2)
            elif choice == 1:  # galaxy mostly outside the frame
                shift = rng.uniform(0.35, 0.5) * size * rng.choice([-1, 1], 2)
                disk, bulge, young = (np.roll(a, shift.astype(int), (0, 1)) for a in (disk, bulge, young))
                pts = np.roll(pts, shift.astype(int), (0, 1))
                atten = np.roll(atten, shift.astype(int), (0, 1))
            elif choice == 2:  # saturated bleed columns and bad rows
                cols = rng.integers(0, size, rng.integers(1, 4))
                others[:, cols] += rng.uniform(1.0, 5.0)
                rows = rng.integers(0, size, rng.integers(0, 3))
                others[rows, :] += rng.uniform(0.5, 3.0)
            else:  # galaxy far too small (wrong cutout scale)
                params, bulge, disk, young, atten, pts, h = _disk_galaxy(rng, x, y, inc, scale * rng.uniform(0.08, 0.2), cx, cy, pa)
            label["inc"] = float("nan")
    elif kind == "elliptical":
        qe = rng.uniform(0.55, 1.0)
        xp, yp = _rotate(x, y, cx, cy, pa)
        bulge = _sersic(xp, yp, h * rng.uniform(0.5, 2.0), rng.uniform(2.5, 5.0), qe)
        bulge *= 2.0 / max(bulge.max(), 1e-9)
    elif kind == "star":
        pts = zeros.copy()
        _deposit(pts, np.array([(size - 1) / 2 + cx]), np.array([(size - 1) / 2 + cy]), np.array([h * h * rng.uniform(5, 50)]))
        others += _neighbours(rng, x, y, int(rng.integers(0, 3)), 4.0)

    reject = int(kind != "disk")
    label["reject"] = reject
    if reject:
        label["inc"] = label["inc"] if kind == "faceon" else float("nan")

    # field: stars and neighbours
    stars = _point_sources(rng, size, int(rng.poisson(rng.uniform(1, 10))), 0.003 * h * h, 1.0 * h * h)
    others = others + _neighbours(rng, x, y, int(rng.poisson(1.2)), 5.0) * rng.uniform(0.1, 0.8)
    if rw is not None:
        others = others + _neighbours(rw, x, y, int(rw.poisson(1.0)), 8.0) * rw.uniform(0.1, 1.5)

    # sky noise level relative to the surface brightness of the d25 isophote
    i25 = np.exp(-rng.uniform(2.8, 4.3))
    sigma = i25 / rng.uniform(0.6, 4.0)
    fwhm = rng.uniform(0.8, 2.4)
    otf = _psf_otf(size, fwhm, None if rng.random() < 0.5 else rng.uniform(2.5, 4.5))
    if rw is not None:
        sigma = i25 / rw.uniform(0.4, 6.0)
        otf, psf = _wide.otf_wide(rw, size)
        fwhm = psf["fwhm"]
        label.update(psf=psf["psf"])

    colour = rng.random() < cfg.p_colour
    if colour:
        # band weights (g, r, i): bulges red, young light blue, disks in between
        bands = []
        star_col = rng.uniform(0.5, 1.5, 1)
        for w_b, w_d, w_y, w_s in ((0.45, 0.7, 1.5, 0.8), (0.8, 0.9, 1.0, 1.0), (1.0, 1.0, 0.7, 1.1)):
            lin = (w_b * bulge + w_d * disk + w_y * (young + pts)) * atten + others
            lin = lin + stars * w_s * star_col
            bands.append(_convolve(lin, otf))
        lin_stack = np.stack(bands, -1)
    else:
        lin = (bulge + disk + young + pts) * atten + others + stars
        lin_stack = _convolve(lin, otf)[..., None]
    noise_sd = np.sqrt(sigma * sigma + np.clip(lin_stack, 0, None) * sigma * sigma / 3.0)
    img = lin_stack + noise_sd * rng.standard_normal(lin_stack.shape)
    if rw is not None:
        img = _wide.noise_wide(rw, lin_stack, sigma)
    out = _display(rng, img, sigma, colour, cfg, label, rw)
    label.update(colour=bool(colour), pa=float(np.degrees(pa)), fwhm=fwhm)
    return out, label


def _display(rng, img: np.ndarray, sigma: float, colour: bool, cfg: SynthConfig, label: dict, rw=None):
    """Asinh/log stretch to 8 bits, like survey cutout services (Lupton et al. 2004, PASP 116, 133)."""
    tot = img.mean(-1)
    c = img.shape[0] // 2
    peak = np.percentile(tot[c - 20 : c + 20, c - 20 : c + 20], 99.5)
    peak = max(peak, 5 * sigma) * rng.uniform(0.4, 1.5)
    beta = sigma * rng.uniform(0.5, 6.0)
    if rng.random() < 0.7:
        v = np.arcsinh(img / beta) / np.arcsinh(peak / beta)
    else:
        v = np.log1p(np.clip(img, 0, None) / beta) / np.log1p(peak / beta)
    if rw is not None:
        alt = _wide.stretch_wide(rw, img, peak)
        v = v if alt is None else alt
    sky = rng.uniform(0.0, 0.15)
    v = sky + (1 - sky) * v
    v = np.clip(v, 0.0, 1.0)
    inverted = False
    if not colour and rng.random() < cfg.p_invert:
        v = 1.0 - v
        inverted = True
    # blank wedge where a rotated frame had no data (as in some of the shared cutouts)
    if rng.random() < 0.1:
        xx, yy = _grid(v.shape[0])
        a = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(0.35, 0.6) * v.shape[0]
        m = (xx * np.cos(a) + yy * np.sin(a)) > d
        v[m] = 1.0 if rng.random() < 0.5 else 0.0
    label["inverted"] = inverted
    out = np.round(v * 255.0).astype(np.uint8)
    return out if colour else out[..., 0]


def render_set(
    seed: int, n: int, start: int = 0, config: SynthConfig | None = None, progress: bool = False
) -> tuple[list[np.ndarray], list[dict]]:
    """Render images start..start+n-1 of the set ``seed``."""
    it = range(start, start + n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render seed={seed}", unit="img")
    images, labels = [], []
    for k in it:
        im, lab = render_one(seed, k, config)
        images.append(im)
        labels.append(lab)
    return images, labels
