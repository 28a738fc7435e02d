"""{% fitting_panel_data galaxy as fp %}: what templates/fitting/panel.html shows."""

from __future__ import annotations

import math

from django import template

from fitting.conf import conf
from fitting.services import FIT_SIZE, fits_for_galaxy

register = template.Library()

ROWS = {
    "sersic": [("flux", "flux", 1), ("re", "re", 1), ("n", "n", 1), ("q", "b/a", 1), ("theta", "angle", 1)],
    "bulge_disk": [
        ("bulge.flux", "bulge flux", 1),
        ("bulge.re", "bulge re", 1),
        ("bulge.n", "bulge n", 1),
        ("bulge.q", "bulge b/a", 1),
        ("disk.flux", "disk flux", 1),
        ("disk.re", "disk re", 1),
        ("disk.q", "disk b/a", 1),
        ("disk.theta", "disk angle", 1),
    ],
}


def _fmt(v, e, unit=""):
    if v is None:
        return "-", "-"
    digits = 3 if abs(v) < 100 else 1
    err = "-" if e is None or not math.isfinite(e) else f"{e:.{digits}f}"
    return f"{v:.{digits}f}", err


@register.simple_tag
def fitting_panel_data(galaxy) -> dict:
    """Fits of the images on the page: `galaxy.images` holds those the viewer may see
    (catalog.selectors.galaxy_with_related)."""
    fits = []
    for f in fits_for_galaxy(galaxy, images=galaxy.images.all()):
        rows = []
        for key, label, _ in ROWS.get(f.model_kind, []):
            v, e = f.params.get(key), f.errors.get(key)
            unit = ""
            if key.endswith("re"):
                v = None if v is None else v * f.scale
                e = None if e is None else e * f.scale
                unit = "image px"
                if f.image.pixel_scale:
                    unit += f" ({v * f.image.pixel_scale:.2f} arcsec)" if v is not None else ""
            elif key.endswith("theta"):
                v = None if v is None else math.degrees(v)
                e = None if e is None else math.degrees(e)
                unit = "deg from +x"
            elif key.endswith("flux"):
                unit = "display units"
            val, err = _fmt(v, e)
            rows.append({"label": label, "value": val, "error": err, "unit": unit})
        inc = f.inclination
        fits.append({"fit": f, "rows": rows, "inc": None if inc is None else round(inc, 1)})
    return {"fits": fits, "q0": float(conf.Q0), "size": FIT_SIZE}
