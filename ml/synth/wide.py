"""The widened training renderer (``SynthConfig(wide=p)``; pure numpy, no Django).

The classic renderer of :mod:`ml.synth.render` draws every stellar disk as an oblate exponential
with elliptical isophotes, one PSF family (Gaussian or Moffat), Gaussian-plus-Poisson noise with a
fixed gain, a flat sky and two display stretches. A network trained on it alone learns features
of that renderer that other images do not share. The widened renderer keeps every classic draw
(the same ``(seed, index)`` gives the same galaxy geometry and kind) and varies, from a second
stream ``default_rng([seed, index, WIDE_STREAM])``:

- stellar disks: 3-D disks seen at inclination i (65 %), each a radial profile times a vertical
  profile (sech^2, sech or Gaussian in z, at least MIN_Z0_PX thick; van der Kruit & Searle 1981, A&A 95, 105;
  de Grijs et al. 1997, A&A 327, 966), scale height 0.05-0.35 h (sub-pixel for small disks), with an optional thicker,
  more extended second disk (thick disk or an anti-truncated outer disk, Yoachim & Dalcanton
  2006, AJ 131, 226); the radial profile is a Matérn profile (R/h)^nu K_nu(R/h), exponential at
  nu = 1/2, cuspier or flatter around it. Otherwise a flattened Sérsic disk of index 0.5-1.5.
  A separable 3-D disk projects to the thin inclined disk convolved along the minor axis with the
  vertical profile stretched by sin i, so the image is built in Fourier space: radial transform
  (1 + k_R^2 h^2)^-(nu + 1) at k_R^2 = k_u^2 + k_v^2 cos^2 i times the vertical transform at
  k_v sin i, on a grid twice the image side (no wrap-around), then cropped. The pixel-integrated
  spectrum is folded over its first aliases (k + 2 pi m, |m| <= FOLD), so the samples are those of
  the continuous disk even when an edge-on disk is thinner than a pixel (no ringing).
- bulges: Sérsic index 0.5-6, intrinsic axis ratio 0.3-1, boxy or discy isophotes; bars in the
  disk plane (30 %); star-forming knots scattered over the disk (50 %), not only on the arms;
  dust optical depth scaled by 0.3-2.
- PSF: Gaussian, Moffat (beta 1.5-6), Kolmogorov or a core+halo double Gaussian, FWHM 0.6-3.5 px,
  ellipticity up to 0.08.
- galaxy size in the frame (pixel scale) 0.6-1.55 of the classic d25 convention, centring errors
  up to several pixels (cropped galaxies), more and brighter neighbours.
- noise: sky sigma from 0.4 to 6 below the d25 surface brightness, Poisson gain 0.5-20, correlated
  (resampled) noise in 30 %; sky gradients and over- or under-subtracted sky in 50 %.
- display: linear, square-root or gamma stretches beside the classic asinh and log (30 %).
"""

from __future__ import annotations

import numpy as np

#: Third entry of the seed sequence of the widened draws: the classic draws stay those of
#: ``default_rng([seed, index])``.
WIDE_STREAM = 17

VERTICAL_PROFILES = ("sech2", "sech", "gauss")

#: Smallest vertical scale drawn (px). With the spectrum folded over FOLD aliases, a 0.5 px sech^2
#: disk seen edge-on is sampled to 3e-5 of its peak (7 aliases give the reference).
MIN_Z0_PX = 0.5

#: Aliases of the sampled band folded on each side (the spectrum at k + 2 pi m, |m| <= FOLD).
FOLD = 3

#: An alias whose transform stays below this everywhere (the total flux being 1) is skipped.
ALIAS_FLOOR = 1e-5

#: Version of the widened renderer: part of every cache key of its images, so a render cache of an
#: earlier version is never read as this one's. 2: sub-pixel disks, folded spectrum (1: 2 px floor).
VERSION = 2


def wide_rng(seed: int, index: int, fraction: float) -> np.random.Generator | None:
    """The widened draws of image (seed, index), or None when this image stays classic (a
    share 1 - fraction of the images, decided by the first draw of the stream)."""
    rw = np.random.default_rng([int(seed), int(index), WIDE_STREAM])
    return rw if rw.random() < fraction else None


def _kgrid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Angular wavenumbers (rad/px) of rfft2 on an n x n grid: kx along columns, ky along rows."""
    kx = 2.0 * np.pi * np.fft.rfftfreq(n)[None, :]
    ky = 2.0 * np.pi * np.fft.fftfreq(n)[:, None]
    return kx, ky


def vertical_transform(kind: str, k: np.ndarray, z0: float) -> np.ndarray:
    """Fourier transform (1 at k = 0) of a vertical profile of scale z0."""
    a = np.abs(k) * z0
    if kind == "sech2":
        u = 0.5 * np.pi * a
        sh = np.sinh(np.minimum(u, 700.0))
        return np.divide(u, sh, out=np.ones_like(u), where=u > 1e-8)
    if kind == "sech":
        return 1.0 / np.cosh(np.minimum(0.5 * np.pi * a, 700.0))
    if kind == "gauss":
        return np.exp(-0.5 * a * a)
    raise ValueError(f"unknown vertical profile {kind!r}")


def _disk_transform(components: list[dict], kr2: np.ndarray, kz: np.ndarray) -> np.ndarray:
    """Fourier transform of the disk components at squared in-plane wavenumber kr2 and wavenumber
    kz along the line of the minor axis (k_v sin i)."""
    return sum(
        comp["flux"]
        * (1.0 + kr2 * comp["h"] ** 2) ** (-(comp["nu"] + 1.0))
        * vertical_transform(comp["vertical"], kz, max(comp["z0"], MIN_Z0_PX))
        for comp in components
    )


def disk3d(size: int, inc: float, pa: float, x0: float, y0: float, components: list[dict]) -> np.ndarray:
    """Noiseless image [size, size] of 3-D disks seen at inclination inc (deg), major axis at pa
    (rad from +x), centred (x0, y0) px from the image centre. Each component: h (px), nu (Matérn
    index; 0.5 = exponential), z0 (px, at least MIN_Z0_PX), vertical (a VERTICAL_PROFILES name), flux.
    Drawn on a grid twice the side (no wrap-around), integrated over square pixels, sampled at the
    pixel centres (the spectrum folded over FOLD aliases; an alias whose bound is below ALIAS_FLOOR
    everywhere is skipped), cropped."""
    n = 2 * size
    kx0, ky0 = _kgrid(n)
    c, s = np.cos(pa), np.sin(pa)
    ci, si = np.cos(np.radians(inc)), np.sin(np.radians(inc))
    cx, cy = (n - 1) / 2.0 + x0, (n - 1) / 2.0 + y0
    # pixel box and shift factorise into a column factor per alias mx and a row factor per alias my
    aliases = range(-FOLD, FOLD + 1)
    kys = [ky0 + 2 * np.pi * my for my in aliases]
    fys = [np.sinc(ky / (2 * np.pi)) * np.exp(-1j * ky * cy) for ky in kys]
    ft = np.zeros(np.broadcast(kx0, ky0).shape, complex)
    for mx in aliases:
        kx = kx0 + 2 * np.pi * mx
        fx = np.sinc(kx / (2 * np.pi)) * np.exp(-1j * kx * cx)
        for my, ky, fy in zip(aliases, kys, fys):
            ku = kx * c + ky * s
            kv = -kx * s + ky * c
            kr2 = ku * ku + (kv * ci) ** 2
            if mx or my:
                # bound of the alias from the smallest |k| it reaches; skipped when below the floor
                peak = _disk_transform(components, np.array(kr2.min()), np.array(np.abs(kv).min() * si))
                if np.abs(fx).max() * np.abs(fy).max() * float(peak) < ALIAS_FLOOR:
                    continue
            ft += _disk_transform(components, kr2, kv * si) * fx * fy
    img = np.fft.irfft2(ft, s=(n, n))
    lo = (n - size) // 2
    return np.clip(img[lo : lo + size, lo : lo + size], 0.0, None)


def moment_axis_ratio(img: np.ndarray) -> float:
    """b/a of an image's flux-weighted second moments."""
    y, x = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float64)
    t = img.sum()
    if t <= 0:
        return float("nan")
    mx, my = (img * x).sum() / t, (img * y).sum() / t
    cxx = (img * (x - mx) ** 2).sum() / t
    cyy = (img * (y - my) ** 2).sum() / t
    cxy = (img * (x - mx) * (y - my)).sum() / t
    ev = np.linalg.eigvalsh(np.array([[cxx, cxy], [cxy, cyy]]))
    return float(np.sqrt(max(ev[0], 0.0) / ev[1]))


def draw_disk3d(rw: np.random.Generator, size: int, inc: float, h: float, pa: float, x0: float, y0: float) -> tuple[np.ndarray, dict]:
    """A thin disk with an optional thick/outer disk, random profile families. Returns the image
    (total flux 1) and its parameters."""
    thick = max(float(rw.uniform(0.05, 0.35)), MIN_Z0_PX / h)
    comps = [dict(h=h, nu=float(rw.uniform(0.25, 1.0)), z0=thick * h, vertical=str(rw.choice(VERTICAL_PROFILES)), flux=1.0)]
    if rw.random() < 0.5:
        f2 = float(rw.uniform(0.1, 0.4))
        comps[0]["flux"] = 1.0 - f2
        comps.append(
            dict(
                h=h * rw.uniform(1.0, 1.7),
                nu=float(rw.uniform(0.3, 0.8)),
                z0=thick * h * rw.uniform(2.0, 4.0),
                vertical=str(rw.choice(VERTICAL_PROFILES)),
                flux=f2,
            )
        )
    img = disk3d(size, inc, pa, x0, y0, comps)
    img /= max(img.sum(), 1e-12)
    return img, dict(disk_model="3d", q0=thick, components=len(comps), vertical=comps[0]["vertical"], nu=comps[0]["nu"])


def generalised_radius(xp: np.ndarray, yp: np.ndarray, q: float, c: float) -> np.ndarray:
    """Radius of generalised ellipses |x|^c + |y/q|^c: boxy for c > 2, discy for c < 2."""
    return (np.abs(xp) ** c + np.abs(yp / q) ** c) ** (1.0 / c)


def otf_wide(rw: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """Optical transfer function (rfft2 layout, 1 at k = 0) of a random PSF family."""
    fwhm = float(rw.uniform(0.6, 3.5))
    e = float(rw.uniform(0.0, 0.08))
    ang = float(rw.uniform(0, np.pi))
    family = str(rw.choice(["gauss", "moffat", "kolmogorov", "double"]))
    kx, ky = _kgrid(size)
    c, s = np.cos(ang), np.sin(ang)
    k1, k2 = kx * c + ky * s, (-kx * s + ky * c) * (1.0 - e)
    k = np.sqrt(k1 * k1 + k2 * k2)
    sig = fwhm / 2.3548
    if family == "gauss":
        otf = np.exp(-0.5 * (k * sig) ** 2)
    elif family == "double":
        otf = 0.8 * np.exp(-0.5 * (k * sig) ** 2) + 0.2 * np.exp(-0.5 * (k * 2.5 * sig) ** 2)
    elif family == "kolmogorov":
        # long-exposure atmospheric OTF exp(-3.44 (lambda f / r0)^(5/3)), FWHM = 0.976 lambda/r0
        otf = np.exp(-3.44 * (k / (2 * np.pi) * fwhm / 0.976) ** (5.0 / 3.0))
    else:
        beta = float(rw.uniform(1.5, 6.0))
        y, x = np.mgrid[0:size, 0:size].astype(np.float64)
        x = np.where(x > size / 2, x - size, x)
        y = np.where(y > size / 2, y - size, y)
        x1, x2 = x * c + y * s, (-x * s + y * c) / (1.0 - e)
        alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        psf = (1.0 + (x1 * x1 + x2 * x2) / (alpha * alpha)) ** (-beta)
        otf = np.fft.rfft2(psf / psf.sum())
    return otf, dict(psf=family, fwhm=fwhm, psf_e=e)


def noise_wide(rw: np.random.Generator, lin: np.ndarray, sigma: float) -> np.ndarray:
    """Sky gradient, sky-subtraction error, Poisson noise of a random gain and optionally
    correlated (resampled) noise added to the linear image [H, W, C]."""
    size = lin.shape[0]
    out = lin.copy()
    if rw.random() < 0.5:
        y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size - 0.5
        g = rw.normal(0.0, 1.0, 2)
        out += (sigma * rw.uniform(0.0, 4.0) * (g[0] * x + g[1] * y) + sigma * rw.normal(0.0, 0.5))[..., None]
    gain = float(np.exp(rw.uniform(np.log(0.5), np.log(20.0))))
    sd = np.sqrt(sigma * sigma + np.clip(lin, 0, None) * sigma * sigma / gain)
    white = rw.standard_normal(lin.shape)
    if rw.random() < 0.3:
        kx, ky = _kgrid(size)
        w = float(rw.uniform(0.5, 1.5))
        k = np.exp(-0.5 * (kx * kx + ky * ky) * w * w)
        for b in range(white.shape[-1]):
            f = np.fft.irfft2(np.fft.rfft2(white[..., b]) * k, s=(size, size))
            white[..., b] = f / max(f.std(), 1e-12)
    return out + sd * white


def stretch_wide(rw: np.random.Generator, img: np.ndarray, peak: float) -> np.ndarray | None:
    """A linear, square-root or gamma display stretch (30 % of images; None otherwise)."""
    if rw.random() >= 0.3:
        return None
    v = np.clip(img / peak, 0.0, None)
    kind = rw.integers(0, 3)
    if kind == 0:
        return v
    if kind == 1:
        return np.sqrt(v)
    return v ** rw.uniform(0.3, 0.7)
