"""Read-only API of the ml app under /api/v1/ (registered by config/api.py): model versions
and CNN predictions, and the predictions part of the galaxy detail."""

from __future__ import annotations

from catalog.api.readonly import app_routes, rows_of_galaxy
from ml.models import Prediction

ENDPOINTS = (
    ("ModelVersion", "model-versions", "CNN model versions: architecture, training data, metrics, weights checksum"),
    ("Prediction", "predictions", "CNN inclination predictions"),
    ("MorphologyPosterior", "morphology", "Morphology posteriors: medians, modes, intervals and covariance of profile parameters"),
)


def routes() -> list[tuple[str, type, str]]:
    """(prefix, viewset, basename) of the ml endpoints."""
    return app_routes("ml", ENDPOINTS)


def galaxy_extras(galaxy, request=None) -> dict:
    """{'predictions': [...]} for the galaxy detail (GALCAT_GALAXY_API_EXTRAS)."""
    return {"predictions": rows_of_galaxy(Prediction, galaxy, request)}
