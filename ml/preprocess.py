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


def display_grey(image: np.ndarray, rotate: bool = False, size: int = NET_SIZE) -> np.ndarray:
    """Any image array -> float32 [size, size] display values in about [0, 1], galaxy bright on a
    dark sky: the first steps of :func:`preprocess` (grey; un-invert when the sky is light; centre
    crop to a square; optionally rotate the moment major axis horizontal; area-resize)."""
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
    return g


#: Percentile of the sky-subtracted display values that scales the network input.
PEAK_PERCENTILE = 99.5


def _order_ranks(n: int) -> tuple[int, int, int, int, float]:
    """Ranks of the order statistics normalise_display needs among n values: the two middle ones
    (the median), the two around the PEAK_PERCENTILE position, and that position."""
    pos = PEAK_PERCENTILE / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    return (n - 1) // 2, n // 2, lo, min(lo + 1, n - 1), pos


def normalise_display(g: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Display values [..., H, W] -> float32 network input of the same shape: subtract each image's
    sky median, divide by the 99.5th percentile above it (linear interpolation between order
    statistics, as numpy's percentile), clip to [-1, 4]. One partial sort per image finds both,
    unless ``order`` [N, 4] gives those order statistics (ranks of _order_ranks) already."""
    g = np.asarray(g, dtype=np.float32)
    flat = g.reshape(-1, g.shape[-2] * g.shape[-1])
    m0, m1, lo, hi, pos = _order_ranks(flat.shape[1])
    if order is None:
        part = flat.copy()
        part.partition(sorted({m0, m1, lo, hi}), axis=1)
        order = part[:, [m0, m1, lo, hi]]
    sky = ((order[:, 0] + order[:, 1]) / np.float32(2.0)).astype(np.float32)
    a, b = order[:, 2] - sky, order[:, 3] - sky  # order statistics of the sky-subtracted values
    peak = a + (b - a) * (pos - lo)
    v = flat - sky[:, None]
    np.divide(v, np.maximum(peak, 1e-3)[:, None].astype(np.float32), out=v)
    return np.clip(v, -1.0, 4.0, out=v).reshape(g.shape)


def preprocess(image: np.ndarray, rotate: bool = False, size: int = NET_SIZE) -> np.ndarray:
    """Any image array -> float32 [1, size, size] network input.

    Steps: grey display values; un-invert when the sky is light; centre crop to a square;
    optionally rotate so that the moment major axis is horizontal; area-resize to size x size
    (:func:`display_grey`); subtract the sky median and divide by the 99.5th percentile above it
    (:func:`normalise_display`).
    """
    return normalise_display(display_grey(image, rotate, size))[None]


#: The byte lanes of a uint32 that hold pixels 0 and 2 of four consecutive uint8 values.
_LANES = np.uint32(0x00FF00FF)


def _order_median_above(bright: int, n: int) -> bool | None:
    """Whether the median of n values is above a threshold, from the number ``bright`` of values
    above it: True or False when both middle order statistics agree, None when they straddle it."""
    lo_ok = bright >= n - (n - 1) // 2  # the lower middle order statistic is above
    hi_ok = bright >= n - n // 2  # the upper one is
    return True if lo_ok and hi_ok else False if not (lo_ok or hi_ok) else None


def _row_sums(b: np.ndarray, group: int) -> np.ndarray:
    """uint8 [H, W] (C-contiguous) -> uint32 [H, W / group]: sums of consecutive runs of
    ``group`` bytes; runs of a multiple of 4 bytes sum four at a time in uint32 lanes."""
    if group % 4 or b.shape[1] % 4:
        return b.reshape(b.shape[0], -1, group).sum(-1, dtype=np.uint32)
    v = b.view(np.uint32)
    pairs = (v & _LANES) + ((v >> 8) & _LANES)  # two 16-bit lanes of byte-pair sums
    quads = (pairs & np.uint32(0xFFFF)) + (pairs >> 16)
    q = group // 4
    return quads if q == 1 else sum(quads[:, j::q] for j in range(q))


def _display_grey_fast(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """display_grey (rotate off) of an 8-bit grey or colour image whose square crop is a
    multiple of size, from integer block sums (the BOX resize of an integer factor) before any
    float work; equal to display_grey up to float rounding. Returns it with its order statistics
    of normalise_display (float32 [4], from a histogram of the integer sums: the float map is
    monotonic, so they are exactly the values a sort of the floats finds). None for any other image."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        return None
    if a.ndim == 3:
        if a.shape[-1] == 4:
            a = a[..., :3]
        if a.shape[-1] not in (1, 3):
            return None
    h, w = a.shape[:2]
    s = min(h, w)
    if s < 8 or s % size:
        return None
    c = a.shape[2] if a.ndim == 3 else 1
    top = 255 * c
    n = h * w
    # is_inverted: is the median of the channel mean above half the range?
    if c == 1:
        light = _order_median_above(int(np.count_nonzero(a > 127)), n)
    elif _order_median_above(int(np.count_nonzero(a > 127)), n) is False:
        light = False  # a bright pixel (sum > 382) needs a byte above 127: too few of those
    else:
        total = a[..., 0].astype(np.uint16) + a[..., 1] + a[..., 2]
        light = _order_median_above(int(np.count_nonzero(total > top // 2)), n)
    if light is None:  # the median sits on the boundary: decide exactly as display_grey does
        light = is_inverted(to_grey01(image))
    a = np.ascontiguousarray(a[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])
    f = s // size
    total = _row_sums(a.reshape(s, s * c), f * c)
    if f > 1:
        total = total.reshape(size, f, size).sum(1, dtype=np.uint32)
    scale = np.float32(1.0 / (top * f * f))
    g = total.astype(np.float32) * scale
    # order statistics: rank r of the floats is rank r of the sums (rank n - 1 - r when inverted)
    ranks = np.array(_order_ranks(size * size)[:4])
    cum = np.cumsum(np.bincount(total.ravel(), minlength=top * f * f + 1))
    sums = np.searchsorted(cum, (size * size - 1 - ranks) if light else ranks, side="right")
    order = sums.astype(np.float32) * scale
    if light:
        return np.float32(1.0) - g, np.float32(1.0) - order
    return g, order


def display_grey_many(images: list[np.ndarray], size: int = NET_SIZE) -> np.ndarray:
    """A list of images -> float32 [N, size, size] (display_grey of each, rotate off). 8-bit
    images whose square crop is a multiple of size go through integer block sums, the others
    through display_grey; equal to display_grey up to float rounding."""
    return display_grey_order_many(images, size)[0]


def display_grey_order_many(images: list[np.ndarray], size: int = NET_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """display_grey_many with the order statistics of normalise_display of each image [N, 4]."""
    out = np.empty((len(images), size, size), dtype=np.float32)
    order = np.empty((len(images), 4), dtype=np.float32)
    m0, m1, lo, hi, _ = _order_ranks(size * size)
    for k, im in enumerate(images):
        fast = _display_grey_fast(im, size)
        if fast is None:
            out[k] = display_grey(im, size=size)
            order[k] = np.partition(out[k].ravel(), sorted({m0, m1, lo, hi}))[[m0, m1, lo, hi]]
        else:
            out[k], order[k] = fast
    return out, order


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
