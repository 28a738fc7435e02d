"""Sample data for a fresh site: the shared EDD/GIZ/SDSS files, or a small synthetic sample.

`make run` calls `load_sample` when the catalog is empty, so the site is never empty.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from catalog.conf import conf
from catalog.importers.images import import_images
from catalog.importers.openngc import bundled_path
from catalog.importers.tables import import_catalog
from catalog.models import Galaxy, Image

Say = Callable[[str], None]

# Hooks run after the catalog part of the sample is loaded: dotted paths of callables taking
# (sample folder, say) and returning counts or None. Other apps add theirs (the zoo's votes and
# standards) in GALCAT_SAMPLE_HOOKS; a synthetic sample folder has the same layout.
VOTES_FILE = "giz_votes.csv"
SAMPLE_FILES = ("edd_cf4_sample.txt", VOTES_FILE, "sdss")


def shared_data_dir() -> Path | None:
    """The shared sample folder when it holds the expected files, else None."""
    folder = Path(conf.SAMPLE_DATA)
    if all((folder / f).exists() for f in SAMPLE_FILES):
        return folder
    return None


def _load_folder(folder: Path, table: str, fmt: str, survey: str, say: Say, *, openngc: bool = False) -> dict:
    """Import a catalog table and a folder of images, then run the sample hooks on the folder.

    With `openngc`, the OpenNGC galaxies (names, positions, sizes) are imported first, so the
    table's own values win where both have a column and every OpenNGC galaxy gets its names."""
    from django.utils.module_loading import import_string

    out = {}
    if openngc:
        report = import_catalog(bundled_path(), "openngc")
        say(f"OpenNGC: {report.summary()}")
        out["openngc"] = report.created + report.updated
    report = import_catalog(folder / table, fmt)
    say(report.summary())
    out["galaxies"] = report.created + report.updated
    report = import_images([folder / "sdss"], survey=survey, orientation=Image.Orientation.MAJOR_HORIZONTAL)
    say(report.summary())
    out["images"] = report.created
    for hook in conf.SAMPLE_HOOKS:
        out.update(import_string(hook)(folder, say) or {})
    return out


def load_shared_sample(folder: Path, say: Say = print) -> dict:
    """Import the EDD table and the SDSS images of the shared folder (and, through the hooks, its
    GIZ votes and standards), after the OpenNGC galaxies: so the images' galaxies have positions
    and names (9 of the 10 are NGC/IC galaxies) and the search box's examples answer."""
    return _load_folder(folder, "edd_cf4_sample.txt", "edd", "SDSS", say, openngc=True)


# ---------------------------------------------------------------------------------------------
# Synthetic sample (when ../shared/data is absent)
# ---------------------------------------------------------------------------------------------
def render_disk(inc_deg: float, size: int = 256, q0: float = 0.2, seed: int = 0) -> np.ndarray:
    """A simple inclined exponential disk [size, size] in 0-255, inverted (dark galaxy on light
    sky) with the major axis horizontal and the field about twice the isophotal diameter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - (size - 1) / 2
    q = math.sqrt(math.cos(math.radians(inc_deg)) ** 2 * (1 - q0**2) + q0**2)  # Hubble (1926)
    h = size / 14.0
    r = np.sqrt(x**2 + (y / q) ** 2)
    img = np.exp(-r / h) + 0.6 * np.exp(-7.67 * ((r / (0.4 * h)) ** 0.25 - 1)) * 0.01
    img = img / img.max() + rng.normal(0, 0.01, img.shape)
    grey = 255 - np.clip(img * 255 * 1.3, 0, 255)
    return grey.astype(np.uint8)


def write_synthetic_sample(folder: Path, n: int = 120, seed: int = 42) -> None:
    """Write a synthetic catalog table, vote table and images in the shared formats."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sdss").mkdir(exist_ok=True)
    pgcs = sorted(rng.choice(np.arange(1000, 90000), size=n, replace=False).tolist())
    incs = rng.uniform(45, 90, n)
    with open(folder / "catalog.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pgc", "ra", "dec", "vhel", "d25", "b_a", "pa", "type", "inc", "inc_e", "inc_flg", "inc_n"])
        for pgc, inc in zip(pgcs, incs):
            ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
            q = math.sqrt(math.cos(math.radians(inc)) ** 2 * 0.96 + 0.04)
            w.writerow(
                [
                    pgc,
                    f"{ra:.5f}",
                    f"{dec:.5f}",
                    f"{rng.uniform(500, 12000):.0f}",
                    f"{rng.uniform(0.6, 4):.2f}",
                    f"{q:.2f}",
                    f"{rng.uniform(0, 180):.1f}",
                    "Sc",
                    f"{inc:.0f}",
                    "3",
                    "0",
                    "3",
                ]
            )
    with open(folder / VOTES_FILE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "pgc", "inc", "pgc_std1", "pgc_std2", "flag", "user", "input_table", "checkout_time", "checkin_time"])
        vid = 1
        for v in range(5):
            bias = rng.normal(0, 2)
            for pgc, inc in zip(pgcs, incs):
                if rng.random() < 0.6:
                    value = float(np.clip(inc + bias + rng.normal(0, 3), 45, 90))
                    w.writerow(
                        [
                            vid,
                            pgc,
                            f"{value:.1f}",
                            "",
                            "",
                            0,
                            f"synthetic{v + 1:02d}",
                            "Input_Guest",
                            "2026-01-01 12:00:00",
                            "2026-01-01 12:01:00",
                        ]
                    )
                    vid += 1
    for k, (pgc, inc) in enumerate(zip(pgcs[:30], incs[:30])):
        PILImage.fromarray(render_disk(inc, seed=k)).save(folder / "sdss" / f"pgc{pgc}_g.png")


def load_synthetic_sample(say: Say = print) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_synthetic_sample(folder)
        return _load_folder(folder, "catalog.csv", "csv", "synthetic", say)


def load_sample(*, if_empty: bool = True, synthetic: bool = False, say: Say = print) -> dict | None:
    """Load the shared sample (or a synthetic one when it is absent). With if_empty, do nothing
    when the catalog already holds galaxies. Returns counts, or None when nothing was done."""
    if if_empty and Galaxy.objects.exists():
        return None
    folder = None if synthetic else shared_data_dir()
    if folder is not None:
        say(f"Loading the shared sample from {folder}")
        return load_shared_sample(folder, say)
    say(f"No shared sample at {conf.SAMPLE_DATA}: generating a small synthetic sample instead")
    return load_synthetic_sample(say)
