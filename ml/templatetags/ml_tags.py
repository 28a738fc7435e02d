import logging

import numpy as np
from django import template

from ml.conf import conf
from ml.scores import estimator_scores
from ml.services import galaxy_summary, morph_summary
from zoo.services import current_consensus

register = template.Library()
logger = logging.getLogger("galcat.ml")


@register.simple_tag
def ml_panel_data(galaxy) -> dict:
    """CNN members, summary, rejection likelihood and axis-ratio baseline of a galaxy (stored
    predictions of the active version), with the volunteers' consensus when there is one."""
    s = galaxy_summary(galaxy, images=galaxy.images.all()) or {}
    try:
        c = current_consensus(galaxy)
    except Exception:  # noqa: BLE001 - the panel never breaks the galaxy page
        c = None
    return {"cnn": s, "consensus": c}


#: Points on the drawn 1-sigma ellipse of (B/T, re_disk).
ELLIPSE_POINTS = 64


def _bt_re_ellipse(row) -> dict | None:
    """1-sigma ellipse of (B/T, re_disk) [fitted px] of a bulge+disk posterior: the network's
    covariance of (logit B/T, ln re_disk) carried over by the delta rule at the medians."""
    if row.kind != "bulge_disk" or not row.target_covariance:
        return None
    bt, re = row.median["bt"], row.median["re_disk"]
    cov = np.asarray(row.target_covariance, dtype=float)[np.ix_([3, 4], [3, 4])]
    g = np.diag([bt * (1 - bt), re])
    c = g @ cov @ g.T
    vals, vecs = np.linalg.eigh(c)
    t = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS)
    pts = vecs @ (np.sqrt(np.clip(vals, 0, None))[:, None] * np.stack([np.cos(t), np.sin(t)]))
    return {"bt": (bt + pts[0]).round(5).tolist(), "re": (re + pts[1]).round(4).tolist(), "centre": [bt, re]}


@register.simple_tag
def morph_panel_data(galaxy) -> dict:
    """Stored morphology posteriors of the active morphology version, with the LM fits of the
    same images (values and 1-sigma errors in the network's columns) for the plots."""
    try:
        s = morph_summary(galaxy, images=galaxy.images.all())
    except Exception:  # noqa: BLE001 - the panel never breaks the galaxy page
        s = None
    if not s:
        return {}
    plots = s["plots"]
    tables = []
    for p, row in zip(plots, s["rows"], strict=True):
        p["ellipse"] = _bt_re_ellipse(row)
        tables.append(
            {
                "row": row,
                "lines": [
                    {"name": n, "median": row.median[n], "mode": row.mode[n], "std": row.std[n], "intervals": row.intervals[n]}
                    for n in row.names
                ],
            }
        )
    return {"model_version": s["model_version"], "rows": s["rows"], "tables": tables, "plots": plots}


#: Similar galaxies shown in the galaxy page's strip.
SIMILAR_STRIP_K = 8


@register.simple_tag
def similar_panel_data(galaxy, user) -> dict:
    """The galaxy page's strip: the SIMILAR_STRIP_K galaxies most similar in the active latent
    model's space, among images `user` may see ({} without a latent model or an embedding)."""
    from ml.latent_services import similar

    try:
        out = similar(galaxy.pgc, SIMILAR_STRIP_K, user)
    except Exception:  # noqa: BLE001 - the panel never breaks the galaxy page
        logger.exception("similar galaxies of PGC %s", galaxy.pgc)
        return {}
    return {**out, "exclude_arcsec": conf.LATENT_EXCLUDE_ARCSEC}


@register.inclusion_tag("ml/estimator_scores.html")
def estimator_scores_table(open_: bool = True) -> dict:
    """The known scores of every inclination estimator (ml.scores.estimator_scores) as a table."""
    return {"scores": estimator_scores(), "open": open_}


@register.filter
def sigfig(value, digits: int = 3) -> str:
    """A number with `digits` significant digits (cosine distances span many decades)."""
    if value is None:
        return ""
    return f"{float(value):.{int(digits)}g}"
