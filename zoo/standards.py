"""Standards of the voting page and calibration galaxies of known inclination.

- `seed_references(folder)` reads giz_standards.csv and giz_calibration.csv (the shared data
  format: pgc, inc, flag) into Standard and CalibrationGalaxy rows.
- `ensure_rendered_standards()` draws thick inclined disks at every degree from 45 to 90 with the
  project's own renderer (render_thick_disk) when the real standards with images do not
  cover that range, so the voting page works on a fresh machine. The page says when it shows them.
- `standards_by_inc()` is what the voting page shows: {inc (int deg): [standard, ...]}.

Hooked into `load_sample` by GALCAT_SAMPLE_HOOKS; `python manage.py seed_standards`
runs it by hand.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction

from catalog.models import Galaxy, Image
from zoo.framing import disk_light
from zoo.models import CalibrationGalaxy, ReferenceFlag, Standard

STANDARD_RANGE = range(45, 91)  # deg, every degree the two steps of the voting page need
RENDER_SIZE = 256  # pixel
# Scale heights of the rendered variants in disk scale lengths: thick disks, an edge-on axis
# ratio q0 of 0.1-0.3 in practice (Hubble 1926; Tully & Fisher 1977 use q0 = 0.2).
RENDER_THICKNESS = (0.2, 0.15, 0.25)
PREFERRED_BANDS = ("g", "r", "i", "gri")


class ReferenceError(ValueError):
    """A standards or calibration table could not be read; nothing was written."""


def read_reference_table(path: Path) -> list[tuple[int, float | None, str]]:
    """(pgc, inc or None, flag) rows of a pgc,inc,flag CSV; an empty flag with an inclination means A."""
    if not path.exists():
        raise ReferenceError(f"no such file: {path}")
    rows = []
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
    missing = {"pgc", "inc", "flag"} - set(reader.fieldnames or [])
    if missing:
        raise ReferenceError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
    for row in reader:
        line = reader.line_num
        try:
            pgc = int(row["pgc"])
            inc = float(row["inc"]) if (row["inc"] or "").strip() else None
        except (TypeError, ValueError):
            raise ReferenceError(f"{path.name} line {line}: unreadable pgc or inc {row!r}") from None
        if pgc <= 0 or (inc is not None and not 0 <= inc <= 90):
            raise ReferenceError(f"{path.name} line {line}: pgc must be positive and inc within [0, 90] deg")
        flag = (row["flag"] or "").strip().upper() or ("A" if inc is not None else "")
        if flag not in ReferenceFlag.values:
            continue  # no verdict: not a usable reference
        if flag == "A" and inc is None:
            raise ReferenceError(f"{path.name} line {line}: accepted galaxy without an inclination")
        rows.append((pgc, inc if flag == "A" else None, flag))
    return rows


def _best_image(galaxy_ids) -> dict[int, int]:
    """{pgc: image id} preferring grey bands in PREFERRED_BANDS order."""
    rank = {b: i for i, b in enumerate(PREFERRED_BANDS)}
    best: dict[int, tuple[int, int]] = {}
    for pk, gid, band in Image.objects.filter(galaxy_id__in=list(galaxy_ids), is_public=True).values_list("pk", "galaxy_id", "band"):
        key = (rank.get(band, 99), pk)
        if gid not in best or key < best[gid]:
            best[gid] = key
    return {gid: v[1] for gid, v in best.items()}


def seed_references(folder: Path, *, source: str = "GIZ") -> dict[str, int]:
    """Standards from giz_standards.csv and calibration galaxies from giz_calibration.csv; idempotent."""
    std_rows = read_reference_table(folder / "giz_standards.csv")
    cal_rows = read_reference_table(folder / "giz_calibration.csv")
    with transaction.atomic():
        pgcs = {r[0] for r in std_rows} | {r[0] for r in cal_rows}
        known = set(Galaxy.objects.filter(pgc__in=pgcs).values_list("pgc", flat=True))
        Galaxy.objects.bulk_create([Galaxy(pgc=p) for p in sorted(pgcs - known)], ignore_conflicts=True)
        images = _best_image(r[0] for r in std_rows)
        existing = set(Standard.objects.filter(galaxy_id__in=[r[0] for r in std_rows]).values_list("galaxy_id", flat=True))
        Standard.objects.bulk_create(
            [
                Standard(galaxy_id=p, inc=inc, flag=flag, image_id=images.get(p), source=f"{source} standards")
                for p, inc, flag in std_rows
                if p not in existing
            ]
        )
        # Images imported after the standards: attach them now.
        for p, img in images.items():
            Standard.objects.filter(galaxy_id=p, image__isnull=True).update(image_id=img)
        existing = set(CalibrationGalaxy.objects.filter(galaxy_id__in=[r[0] for r in cal_rows]).values_list("galaxy_id", flat=True))
        CalibrationGalaxy.objects.bulk_create(
            [
                CalibrationGalaxy(galaxy_id=p, inc=inc, flag=flag, source=f"{source} calibration")
                for p, inc, flag in cal_rows
                if p not in existing
            ]
        )
    return {"standards": len(std_rows), "calibration": len(cal_rows), "standards_with_image": len(images)}


def real_standards_cover() -> bool:
    """True when accepted real standards with images exist at every degree of STANDARD_RANGE."""
    incs = Standard.objects.filter(rendered=False, flag="A", image__isnull=False, inc__isnull=False).values_list("inc", flat=True)
    have = {round(i) for i in incs}
    return all(d in have for d in STANDARD_RANGE)


def render_thick_disk(inc: float, size: int = RENDER_SIZE, *, thickness: float = 0.2, seed: int = 0) -> np.ndarray:
    """A thick inclined disk seen at inclination inc (deg) as a [size, size] uint8 image: dark galaxy
    on a light sky, major axis horizontal, the disk's visible extent about half the field.

    Luminosity density rho(R, z) = exp(-R/h) sech^2(z / z0) with z0 = thickness * h (a thick disk;
    van der Kruit & Searle 1981), plus a small exponential bulge, integrated along each line of sight."""
    rng = np.random.default_rng(seed)
    n = min(size, 96)  # computed on at most 96 x 96 pixels, then resampled
    img = disk_light(inc, n, half=7.0, thickness=thickness)  # half the field: 7 disk scale lengths
    if n != size:
        from PIL import Image as PILImage

        img = np.asarray(PILImage.fromarray(img.astype(np.float32), mode="F").resize((size, size), PILImage.Resampling.BICUBIC))
    img = img / np.percentile(img, 99.9)
    img = img + rng.normal(0, 0.004, img.shape)
    shown = np.arcsinh(img / 0.02) / np.arcsinh(1 / 0.02)  # asinh stretch: the faint outer disk shows
    return (255 - np.clip(shown, 0, 1) * 235).astype(np.uint8)


def render_standard_png(inc: float, variant: int = 0, size: int = RENDER_SIZE) -> bytes:
    """PNG of a rendered standard at inclination inc (deg); variants differ in thickness and noise."""
    from PIL import Image as PILImage

    grey = render_thick_disk(inc, size, thickness=RENDER_THICKNESS[variant % len(RENDER_THICKNESS)], seed=1000 + variant)
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, format="PNG")
    return buf.getvalue()


def ensure_rendered_standards(*, variants: int = 2, force: bool = False, size: int = RENDER_SIZE) -> int:
    """Render standards at every degree 45-90 unless real ones cover it; returns how many were made."""
    if not force and real_standards_cover():
        return 0
    have = set(Standard.objects.filter(rendered=True).values_list("inc", "variant"))
    made = 0
    for inc in STANDARD_RANGE:
        for v in range(variants):
            if (float(inc), v) in have:
                continue
            std = Standard(inc=float(inc), flag="A", rendered=True, variant=v, source="rendered by zoo.standards.render_thick_disk")
            std.file.save(f"rendered_inc{inc:02d}_v{v}.png", ContentFile(render_standard_png(inc, v, size)), save=False)
            std.save()
            made += 1
    return made


def uses_rendered_standards() -> bool:
    return not real_standards_cover()


def standards_by_inc() -> dict[int, list[Standard]]:
    """{inc: [standards]} for every degree of STANDARD_RANGE the page can show (real ones when they
    cover the range, else the rendered set)."""
    rendered = uses_rendered_standards()
    qs = Standard.objects.filter(flag="A", inc__isnull=False, rendered=rendered).select_related("image")
    if not rendered:
        qs = qs.filter(image__isnull=False)
    out: dict[int, list[Standard]] = {}
    for s in qs.order_by("inc", "pk"):
        d = round(s.inc)
        if d in STANDARD_RANGE:
            out.setdefault(d, []).append(s)
    return out


def seed_standards_hook(folder: Path | None, say: Callable[[str], None] = print) -> None:
    """GALCAT_SAMPLE_HOOKS entry: references from the shared folder, then rendered standards if needed."""
    if folder is not None and (folder / "giz_standards.csv").exists() and (folder / "giz_calibration.csv").exists():
        out = seed_references(folder)
        say(f"Standards: {out['standards']} ({out['standards_with_image']} with an image), calibration galaxies: {out['calibration']}")
    made = ensure_rendered_standards()
    if made:
        say(f"Rendered {made} standard disks at 45-90 deg (no real standards with images cover that range)")
