"""Import of galaxy images (PNG, JPEG, GIF, FITS).

Every file is decoded completely before anything is stored, so broken, truncated or enormous
files are refused with a reason. Files are stored by content (images/<sha[:2]>/<sha>.<ext>),
so equal bytes are stored once; an Image row ties a file to a galaxy and band.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from catalog.conf import conf
from catalog.importers.copy import create_placeholder_galaxies
from catalog.importers.report import ImportReport, ImportValidationError
from catalog.models import Image
from catalog.signals import images_added

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".fits", ".fit", ".fits.gz", ".fts")
NAME_PATTERN = re.compile(r"^pgc(\d+)_([A-Za-z0-9]+)\.", re.IGNORECASE)
BANDS = {b.value for b in Image.Band}
WRITE_BATCH = 500


class ImageDecodeError(ValueError):
    """The bytes are not a usable image; the message says why."""


@dataclass
class DecodedImage:
    """What decoding an image file told us."""

    format: str
    width: int
    height: int
    channels: int
    inverted: bool
    wcs: dict | None
    pixels: np.ndarray | None  # [H, W] or [H, W, C], float32, for callers that need the data


def _grey_inverted(grey: np.ndarray) -> bool:
    """True when the background (image border) is brighter than the centre: galaxy dark on light."""
    h, w = grey.shape
    border = np.concatenate([grey[0, :], grey[-1, :], grey[:, 0], grey[:, -1]])
    centre = grey[h // 2 - h // 8 : h // 2 + h // 8 + 1, w // 2 - w // 8 : w // 2 + w // 8 + 1]
    return float(np.median(border)) > float(np.median(centre))


def decode_image(data: bytes, name: str = "", *, max_pixels: int | None = None) -> DecodedImage:
    """Decode image bytes fully (PNG, JPEG, GIF or FITS); ImageDecodeError if unusable."""
    max_pixels = max_pixels or conf.IMAGE_MAX_PIXELS
    if not data:
        raise ImageDecodeError("the file is empty")
    lower = name.lower()
    if data[:6] == b"SIMPLE" or lower.endswith((".fits", ".fit", ".fts", ".fits.gz")) or data[:2] == b"\x1f\x8b":
        return _decode_fits(data, max_pixels)
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data))
            fmt = (img.format or "").lower()
            if fmt not in ("png", "jpeg", "gif"):
                raise ImageDecodeError(f"unsupported image format {img.format!r}; use PNG, JPEG, GIF or FITS")
            if img.width * img.height > max_pixels:
                raise ImageDecodeError(f"image of {img.width}x{img.height} pixels exceeds the limit of {max_pixels} pixels")
            img.load()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        for magic, kind in ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF")):
            if data.startswith(magic):
                raise ImageDecodeError(f"broken or truncated image: {kind} signature but unreadable content") from None
        raise ImageDecodeError("not an image (PNG, JPEG, GIF or FITS expected)") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"broken or truncated image: {exc}") from None
    if img.mode in ("L", "I", "I;16", "F", "1", "P", "LA"):
        arr = np.asarray(img.convert("F"), dtype=np.float32)
        channels = 1
        grey = arr
    else:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32)
        channels = 3
        grey = arr.mean(axis=2)
    return DecodedImage(fmt, img.width, img.height, channels, _grey_inverted(grey), None, arr)


def _decode_fits(data: bytes, max_pixels: int) -> DecodedImage:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(data), memmap=False) as hdul:
                for hdu in hdul:
                    shape = getattr(hdu, "shape", None) or ()
                    if hdu.is_image and len(shape) >= 2:
                        if int(np.prod(shape[-2:])) > max_pixels:
                            raise ImageDecodeError(f"FITS image of {shape[-1]}x{shape[-2]} pixels exceeds the limit of {max_pixels}")
                        arr = np.asarray(hdu.data, dtype=np.float32)
                        header = hdu.header
                        break
                else:
                    raise ImageDecodeError("the FITS file holds no 2-D image")
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"broken FITS file: {exc}") from None
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] == 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim not in (2, 3):
        raise ImageDecodeError(f"unsupported FITS image shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.any():
        raise ImageDecodeError("the FITS image has no finite pixel")
    wcs_keys = (
        "CTYPE1",
        "CTYPE2",
        "CRVAL1",
        "CRVAL2",
        "CRPIX1",
        "CRPIX2",
        "CDELT1",
        "CDELT2",
        "CD1_1",
        "CD1_2",
        "CD2_1",
        "CD2_2",
        "CUNIT1",
        "CUNIT2",
        "EQUINOX",
        "RADESYS",
    )
    wcs = {k: header[k] for k in wcs_keys if k in header} or None
    height, width = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return DecodedImage("fits", width, height, channels, False, wcs, arr)


def check_usable(decoded: DecodedImage) -> None:
    """ImageDecodeError when a decoded image is too small for the CNN and the fits
    (GALCAT_IMAGE_MIN_SIZE); every way in (command, upload page, admin, API) checks it."""
    minimum = conf.IMAGE_MIN_SIZE
    if min(decoded.width, decoded.height) < minimum:
        raise ImageDecodeError(
            f"image of {decoded.width}x{decoded.height} pixels is too small: the CNN and the fits need {minimum}x{minimum} at least"
        )


def pixel_scale_from_wcs(wcs: dict | None) -> float | None:
    """Pixel scale [arcsec/pixel] from CDELT or CD keywords, when present."""
    if not wcs:
        return None
    if "CDELT2" in wcs:
        return abs(float(wcs["CDELT2"])) * 3600.0
    if "CD2_2" in wcs:
        return float(np.hypot(wcs.get("CD2_2", 0.0), wcs.get("CD2_1", 0.0))) * 3600.0
    return None


@dataclass
class ImageSpec:
    """One file to import and what it shows."""

    path: Path
    pgc: int
    band: str
    survey: str = "SDSS"
    pixel_scale: float | None = None
    orientation: str = Image.Orientation.UNKNOWN
    inverted: bool | None = None


def specs_from_paths(paths: list[Path], report: ImportReport, *, survey: str, orientation: str) -> list[ImageSpec]:
    """ImageSpecs from pgc<N>_<band>.<ext> file names (folders are searched for image files)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(IMAGE_SUFFIXES)))
        elif p.exists():
            files.append(p)
        else:
            report.add(None, None, f"{p}: no such file or folder")
    specs = []
    for f in files:
        m = NAME_PATTERN.match(f.name)
        if not m:
            report.add(None, None, f"{f.name}: name does not follow pgc<N>_<band>.<ext>; use a manifest CSV")
            continue
        band = m.group(2).lower()
        if band not in BANDS:
            report.add(None, None, f"{f.name}: unknown band {band!r} (known: {', '.join(sorted(BANDS))})")
            continue
        specs.append(ImageSpec(f, int(m.group(1)), band, survey, None, orientation))
    return specs


def specs_from_manifest(manifest: Path, report: ImportReport, *, survey: str, orientation: str) -> list[ImageSpec]:
    """ImageSpecs from a manifest CSV: file, pgc, band[, survey, pixel_scale, orientation, inverted]."""
    specs = []
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        report.add(None, None, f"{manifest.name}: cannot read manifest: {exc}")
        return specs
    reader = csv.DictReader(io.StringIO(text))
    missing = {"file", "pgc", "band"} - set(reader.fieldnames or [])
    if missing:
        report.add(1, None, f"manifest lacks column(s): {', '.join(sorted(missing))}")
        return specs
    for row in reader:
        line = reader.line_num
        try:
            pgc = int(row["pgc"])
            if pgc <= 0:
                raise ValueError
        except (TypeError, ValueError):
            report.add(line, "pgc", f"pgc must be a positive integer, got {row['pgc']!r}")
            continue
        band = (row["band"] or "").strip().lower()
        if band not in BANDS:
            report.add(line, "band", f"unknown band {band!r}")
            continue
        path = (manifest.parent / row["file"]).resolve()
        if not path.exists():
            report.add(line, "file", f"no such file: {row['file']}")
            continue
        scale = None
        if row.get("pixel_scale"):
            try:
                scale = float(row["pixel_scale"])
            except ValueError:
                report.add(line, "pixel_scale", f"expected a number, got {row['pixel_scale']!r}")
                continue
        inverted = None
        if row.get("inverted"):
            inverted = row["inverted"].strip().lower() in ("1", "true", "yes")
        specs.append(
            ImageSpec(
                path, pgc, band, (row.get("survey") or survey).strip(), scale, (row.get("orientation") or orientation).strip(), inverted
            )
        )
    return specs


def _storage_name(sha: str, fmt: str) -> str:
    ext = {"jpeg": "jpg"}.get(fmt, fmt)
    return f"images/{sha[:2]}/{sha}.{ext}"


def store_image_bytes(data: bytes, decoded: DecodedImage) -> tuple[str, str]:
    """Store bytes by content (once) and return (sha256, storage name)."""
    sha = hashlib.sha256(data).hexdigest()
    name = _storage_name(sha, decoded.format)
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:  # a concurrent writer stored the same content first
            default_storage.delete(saved)
    return sha, name


def import_images(
    paths: list[str | Path] | None = None,
    *,
    manifest: str | Path | None = None,
    survey: str = "SDSS",
    orientation: str = Image.Orientation.UNKNOWN,
    pixel_scale: float | None = None,
    partial: bool = False,
    user=None,
    progress=None,
) -> ImportReport:
    """Decode, deduplicate and store images; all-or-nothing unless partial=True."""
    report = ImportReport(source=str(manifest or ", ".join(str(p) for p in paths or [])))
    if orientation not in Image.Orientation.values:
        report.add(None, "orientation", f"unknown orientation {orientation!r}")
        raise ImportValidationError(report)
    if manifest:
        specs = specs_from_manifest(Path(manifest), report, survey=survey, orientation=orientation)
    else:
        specs = specs_from_paths([Path(p) for p in paths or []], report, survey=survey, orientation=orientation)
    if not specs and not report.problems:
        report.add(None, None, "no image files found")

    # Pass 1 decodes every file and keeps only what it learnt (no pixels, no bytes), so memory
    # does not grow with the number of images; pass 2 reads each file again to store it.
    checked: list[tuple[ImageSpec, str, DecodedImage]] = []
    total = len(specs)
    for i, spec in enumerate(specs):
        report.rows_read += 1
        try:
            size = spec.path.stat().st_size
            if size > conf.IMAGE_MAX_BYTES:
                raise ImageDecodeError(f"file of {size} bytes exceeds the limit of {conf.IMAGE_MAX_BYTES} bytes")
            data = spec.path.read_bytes()
            img = decode_image(data, spec.path.name)
            check_usable(img)
            img.pixels = None
            checked.append((spec, hashlib.sha256(data).hexdigest(), img))
        except (ImageDecodeError, OSError) as exc:
            report.add(None, None, f"{spec.path.name}: {exc}")
        if progress:
            progress(i + 1, total * 2)
    if report.problems and not partial:
        raise ImportValidationError(report)
    report.skipped = report.rows_read - len(checked)

    new_ids: list[int] = []
    with transaction.atomic():
        pgcs = {spec.pgc for spec, _, _ in checked}
        report.extra["galaxies awaiting position"] = create_placeholder_galaxies(pgcs)
        first_name: dict[str, str] = {}
        for start in range(0, len(checked), WRITE_BATCH):
            batch = checked[start : start + WRITE_BATCH]
            stored = set(
                Image.objects.filter(galaxy_id__in={s.pgc for s, _, _ in batch}, sha256__in={sha for _, sha, _ in batch}).values_list(
                    "galaxy_id", "band", "sha256"
                )
            )
            fresh = []
            for spec, sha, img in batch:
                if sha in first_name:
                    report.warnings.append(f"{spec.path.name} has the same bytes as {first_name[sha]}; stored once")
                first_name.setdefault(sha, spec.path.name)
                key = (spec.pgc, spec.band, sha)
                if key in stored:
                    report.extra["already stored"] = report.extra.get("already stored", 0) + 1
                    continue
                stored.add(key)
                data = spec.path.read_bytes()
                if hashlib.sha256(data).hexdigest() != sha:
                    report.add(None, None, f"{spec.path.name}: the file changed during the import")
                    raise ImportValidationError(report)
                _, name = store_image_bytes(data, img)
                fresh.append(
                    Image(
                        galaxy_id=spec.pgc,
                        band=spec.band,
                        sha256=sha,
                        survey=spec.survey,
                        file=name,
                        format=img.format,
                        width=img.width,
                        height=img.height,
                        channels=img.channels,
                        pixel_scale=spec.pixel_scale or pixel_scale or pixel_scale_from_wcs(img.wcs),
                        orientation=spec.orientation,
                        inverted=img.inverted if spec.inverted is None else spec.inverted,
                        wcs=img.wcs,
                        original_name=spec.path.name,
                        uploaded_by=user if getattr(user, "is_authenticated", False) else None,
                    )
                )
            new_ids.extend(obj.pk for obj in Image.objects.bulk_create(fresh))
            report.created += len(fresh)
            if progress:
                progress(total + start + len(batch), total * 2)
        if new_ids:
            transaction.on_commit(lambda: images_added.send(sender=Image, image_ids=list(new_ids)))
    return report
