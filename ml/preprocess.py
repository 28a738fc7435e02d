"""The one preprocessing step shared by training, evaluation and inference (no Django).

Any image (8-bit grey or colour PNG/JPEG/GIF array, float FITS data, normal or inverted) becomes
a float32 [1, 128, 128] array with the galaxy bright on a zero sky, scaled by a robust peak.
Colour images are reduced to grey (mean of the channels), so grey and colour cutouts go through
the same network; the synthetic set contains both so the network sees both appearances.
"""

from __future__ import annotations

import io

import numpy as np

#: Network input side (pixels), as in Inclinet (Kourkchi et al. 2020, ApJ 902, 145).
NET_SIZE = 128


def to_grey01(image: np.ndarray) -> np.ndarray:
    """[H, W] or [H, W, C] array of any dtype -> float32 [H, W] display values in about [0, 1].

    Integer images are divided by their dtype maximum; float images (FITS data, linear flux) get
    an asinh stretch between the sky median and a high percentile, like a display cutout.
    """
    a = np.asarray(image)
    if a.ndim == 3:
        if a.shape[-1] == 4:  # RGBA: drop alpha
            a = a[..., :3]
        a = a.astype(np.float32).mean(-1) if a.shape[-1] > 1 else a[..., 0]
        if np.asarray(image).dtype == np.uint8:
            return (a / 255.0).astype(np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image or a 3-D colour image, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        return (a.astype(np.float32) / float(np.iinfo(a.dtype).max)).astype(np.float32)
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(a, [50.0, 99.7])
    mad = np.median(np.abs(a - lo)) * 1.4826 + 1e-12
    span = max(hi - lo, 5 * mad)
    beta = 2.0 * mad
    v = np.arcsinh((a - lo) / beta) / np.arcsinh(span / beta)
    return np.clip(0.05 + 0.95 * v, 0.0, 1.0).astype(np.float32)


def is_inverted(grey: np.ndarray) -> bool:
    """True when the sky is light and the galaxy dark (as in the shared SDSS PNGs).

    The sky dominates a cutout, so the median pixel tells the sky level; a light sky means the
    display is inverted.
    """
    return float(np.median(grey)) > 0.5


def moment_angle(grey: np.ndarray) -> float:
    """Angle (deg) of the major axis from +x towards +y in array coordinates (rows down, i.e.
    clockwise on the displayed image); scipy.ndimage.rotate(image, angle) makes it horizontal.

    From second moments of the positive, sky-subtracted light within the central half.
    """
    h, w = grey.shape
    v = grey - np.median(grey)
    v = np.clip(v, 0, None)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2)
    v = np.where(r < 0.35 * min(h, w), v, 0.0)
    s = v.sum()
    if s <= 0:
        return 0.0
    mx, my = (v * xx).sum() / s, (v * yy).sum() / s
    cxx = (v * (xx - mx) ** 2).sum() / s
    cyy = (v * (yy - my) ** 2).sum() / s
    cxy = (v * (xx - mx) * (yy - my)).sum() / s
    return float(np.degrees(0.5 * np.arctan2(2 * cxy, cxx - cyy)))


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BOX),
        dtype=np.float32,
    )


def preprocess(image: np.ndarray, rotate: bool = False, size: int = NET_SIZE) -> np.ndarray:
    """Any image array -> float32 [1, size, size] network input.

    Steps: grey display values; un-invert when the sky is light; centre crop to a square;
    optionally rotate so that the moment major axis is horizontal; area-resize to size x size;
    subtract the sky median and divide by the 99.5th percentile above it.
    """
    g = to_grey01(image)
    if g.size == 0 or min(g.shape) < 8:
        raise ValueError(f"image too small: {g.shape}")
    if is_inverted(g):
        g = 1.0 - g
    h, w = g.shape
    s = min(h, w)
    g = g[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    if rotate:
        from scipy import ndimage

        ang = moment_angle(g)
        if abs(ang) > 1.0:
            g = ndimage.rotate(g, ang, reshape=False, order=1, mode="constant", cval=float(np.median(g)))
            g = g.astype(np.float32)
    if s != size:
        g = _resize(g, size)
    sky = float(np.median(g))
    v = g - sky
    peak = float(np.percentile(v, 99.5))
    v = v / max(peak, 1e-3)
    return np.clip(v, -1.0, 4.0).astype(np.float32)[None]


def load_image_bytes(data: bytes, name: str = "") -> np.ndarray:
    """Decode PNG/JPEG/GIF (Pillow) or FITS (astropy) bytes into an array; ValueError if not."""
    if not data:
        raise ValueError("empty file (zero bytes)")
    if data[:6] == b"SIMPLE" or name.lower().endswith((".fits", ".fit", ".fts")):
        try:
            from astropy.io import fits

            with fits.open(io.BytesIO(data)) as hdul:
                for hdu in hdul:
                    if hdu.data is not None and getattr(hdu.data, "ndim", 0) >= 2:
                        arr = np.asarray(hdu.data, dtype=np.float32)
                        while arr.ndim > 2:
                            arr = arr[0]
                        return arr
        except Exception as exc:  # noqa: BLE001 - astropy raises many kinds on bad input
            raise ValueError(f"not a readable FITS image: {exc}") from exc
        raise ValueError("FITS file has no 2-D image data")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("L", "RGB", "RGBA", "I;16", "I", "F"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a readable PNG, JPEG, GIF or FITS image: {exc}") from exc


def load_image_file(path: str) -> np.ndarray:
    """Read an image file from disk (see load_image_bytes)."""
    with open(path, "rb") as fh:
        return load_image_bytes(fh.read(), str(path))
