"""Standards of the voting page and calibration galaxies of known inclination.

- `seed_references(folder)` reads giz_standards.csv and giz_calibration.csv (the shared data
  format: pgc, inc, flag) into Standard and CalibrationGalaxy rows.
- `ensure_rendered_standards()` draws thick inclined disks at every degree from 45 to 90 with the
  project's own renderer (catalog.sample.render_disk) when the real standards with images do not
  cover that range, so the voting page works on a fresh machine. The page says when it shows them.
- `standards_by_inc()` is what the voting page shows: {inc (int deg): [standard, ...]}.

Hooked into `load_sample` by settings.GALCAT_SAMPLE_HOOKS; `python manage.py seed_standards`
runs it by hand.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from django.core.files.base import ContentFile
from django.db import transaction

from catalog.models import CalibrationGalaxy, Galaxy, Image, ReferenceFlag, Standard

STANDARD_RANGE = range(45, 91)  # deg, every degree the two steps of the voting page need
RENDER_SIZE = 256  # pixel
# Intrinsic axis ratios of the rendered variants: thick disks, q0 of 0.1-0.3 in practice
# (Hubble 1926; Tully & Fisher 1977 use 0.2).
RENDER_Q0 = (0.2, 0.15, 0.25)
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


def render_standard_png(inc: float, variant: int = 0) -> bytes:
    """A thick inclined disk at inclination inc (deg), grey, dark galaxy on light sky, major axis
    horizontal, drawn by the project's renderer (catalog.sample.render_disk)."""
    from PIL import Image as PILImage

    from catalog.sample import render_disk

    grey = render_disk(inc, size=RENDER_SIZE, q0=RENDER_Q0[variant % len(RENDER_Q0)], seed=1000 + variant)
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, format="PNG")
    return buf.getvalue()


def ensure_rendered_standards(*, variants: int = 2, force: bool = False) -> int:
    """Render standards at every degree 45-90 unless real ones cover it; returns how many were made."""
    if not force and real_standards_cover():
        return 0
    have = set(Standard.objects.filter(rendered=True).values_list("inc", "variant"))
    made = 0
    for inc in STANDARD_RANGE:
        for v in range(variants):
            if (float(inc), v) in have:
                continue
            std = Standard(inc=float(inc), flag="A", rendered=True, variant=v, source="rendered by catalog.sample.render_disk")
            std.file.save(f"rendered_inc{inc:02d}_v{v}.png", ContentFile(render_standard_png(inc, v)), save=False)
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
