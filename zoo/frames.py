"""The voting page's served images: the target framed at the standards' scale, and rendered
standards drawn with the target's look (zoo.framing does the numbers; this module reads images,
caches PNGs and turns looks into URL parameters).

A look travels in the standards' URLs, rounded (sky, noise, ink to whole grey levels, PSF to
PSF_STEP pixels) so that targets that look alike share cached standards and no request can ask
for an unbounded variety of renders.
"""

from __future__ import annotations

import io
from urllib.parse import urlencode

import numpy as np
from django.core.cache import cache
from django.urls import reverse

from catalog.models import Image
from zoo.framing import FRAME_FRACTION, FRAME_SIZE, Look, frame_target, render_standard, to_grey
from zoo.standards import RENDER_THICKNESS

CACHE_SECONDS = 24 * 3600
PSF_STEP = 0.25  # pixel: resolution of the PSF FWHM in a look
PSF_MAX = 12.0  # pixel
FRAME_VERSION = "1"  # part of the cache keys: change it when the framing changes


class BadLook(ValueError):
    """A standard's URL parameters do not describe a look."""


def display_levels(pixels: np.ndarray, fmt: str) -> np.ndarray:
    """Grey display levels 0-255 of decoded pixels: PNG/JPEG/GIF levels as they are, FITS data
    asinh-stretched between its 0.5 and 99.9 percentiles, light on dark."""
    grey = to_grey(pixels)
    if fmt != "fits":
        return np.nan_to_num(grey, nan=0.0)
    lo, hi = np.nanpercentile(grey, [0.5, 99.9])
    x = np.clip((np.nan_to_num(grey, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    return np.arcsinh(x / 0.02) / np.arcsinh(1 / 0.02) * 255.0


def _png(grey: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(grey, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _read(image: Image) -> np.ndarray:
    from catalog.importers.images import decode_image

    with image.file.open("rb") as fh:
        data = fh.read()
    decoded = decode_image(data, image.file.name)
    return display_levels(decoded.pixels, decoded.format)


def rounded(look: Look) -> Look:
    """The look as its URL carries it."""
    psf = min(max(round(look.psf_fwhm / PSF_STEP) * PSF_STEP, PSF_STEP), PSF_MAX)
    return Look(
        sky=float(round(look.sky)),
        noise=float(round(look.noise)),
        ink=float(round(look.ink)),
        psf_fwhm=psf,
        dark_on_light=look.dark_on_light,
    )


def look_params(look: Look) -> dict[str, str]:
    r = rounded(look)
    return {
        "sky": f"{r.sky:.0f}",
        "noise": f"{r.noise:.0f}",
        "ink": f"{r.ink:.0f}",
        "psf": f"{r.psf_fwhm:g}",
        "dark": "1" if r.dark_on_light else "0",
    }


# A standard asked for without a look: the sample's typical SDSS sky, no noise.
PLAIN_LOOK = Look(sky=235.0, noise=0.0, ink=0.0, psf_fwhm=2.0, dark_on_light=True)


def look_from_params(params) -> Look:
    """The look of a standard's URL (PLAIN_LOOK without parameters); BadLook naming what is wrong."""
    if not any(k in params for k in ("sky", "noise", "ink", "psf", "dark")):
        return PLAIN_LOOK
    try:
        sky, noise, ink = (int(params.get(k, "")) for k in ("sky", "noise", "ink"))
        psf = float(params.get("psf", ""))
        dark = params.get("dark", "1")
    except (TypeError, ValueError):
        raise BadLook("sky, noise and ink must be whole grey levels and psf a number of pixels") from None
    if not (0 <= sky <= 255 and 0 <= ink <= 255 and 0 <= noise <= 64):
        raise BadLook("sky and ink must be within 0-255 and noise within 0-64 grey levels")
    if not (PSF_STEP <= psf <= PSF_MAX) or abs(psf / PSF_STEP - round(psf / PSF_STEP)) > 1e-9:
        raise BadLook(f"psf must be a multiple of {PSF_STEP} within {PSF_STEP}-{PSF_MAX} pixels")
    if dark not in ("0", "1"):
        raise BadLook("dark must be 0 or 1")
    return Look(sky=float(sky), noise=float(noise), ink=float(ink), psf_fwhm=psf, dark_on_light=dark == "1")


def framed_target(image: Image) -> tuple[bytes, Look]:
    """(PNG, look) of an image framed as the voting page shows it, cached by content."""
    key = f"zoo:frame:{FRAME_VERSION}:{FRAME_SIZE}:{FRAME_FRACTION}:{image.sha256 or image.pk}"
    hit = cache.get(key)
    if hit is None:
        pixels, look, _ = frame_target(_read(image))
        hit = (_png(pixels), look)
        cache.set(key, hit, CACHE_SECONDS)
    return hit


def standard_png(inc: int, variant: int, look: Look) -> bytes:
    """PNG of the rendered standard at inc (deg), variant, drawn with `look` (rounded), cached."""
    look = rounded(look)
    params = ":".join(look_params(look).values())
    key = f"zoo:std:{FRAME_VERSION}:{FRAME_SIZE}:{FRAME_FRACTION}:{inc}:{variant}:{params}"
    hit = cache.get(key)
    if hit is None:
        thickness = RENDER_THICKNESS[variant % len(RENDER_THICKNESS)]
        hit = _png(render_standard(float(inc), look, thickness=thickness, seed=1000 + variant))
        cache.set(key, hit, CACHE_SECONDS)
    return hit


def framed_standard_image(image: Image) -> bytes:
    """PNG of a real standard's image, framed like the target (its own look kept)."""
    return framed_target(image)[0]


def standard_url(standard, look: Look | None) -> str:
    """Where the page loads a standard: a render with the target's look, or a real one framed."""
    if standard.rendered:
        url = reverse("zoo:standard-render", kwargs={"inc": round(standard.inc), "variant": standard.variant})
        return f"{url}?{urlencode(look_params(look or PLAIN_LOOK))}"
    if standard.image_id:
        return reverse("zoo:standard-image", kwargs={"pk": standard.pk})
    return standard.url
