"""Read-only API of the ml app under /api/v1/ (registered by config/api.py): model versions
and CNN predictions, and the predictions part of the galaxy detail."""

from __future__ import annotations

from django.apps import apps

from catalog.api.readonly import readonly_viewset, rows_of_galaxy

ENDPOINTS = (
    ("ModelVersion", "model-versions", "CNN model versions: architecture, training data, metrics, weights checksum"),
    ("Prediction", "predictions", "CNN inclination predictions"),
)


def _model(name: str):
    try:
        return apps.get_model("ml", name)
    except LookupError:
        return None


def routes() -> list[tuple[str, type, str]]:
    """(prefix, viewset, basename) of every ml model present."""
    out = []
    for name, prefix, summary in ENDPOINTS:
        model = _model(name)
        if model is not None:
            out.append((prefix, readonly_viewset(model, summary=summary), f"ml-{prefix}"))
    return out


def galaxy_extras(galaxy, request=None) -> dict:
    """{'predictions': [...]} for the galaxy detail (settings.GALCAT_GALAXY_API_EXTRAS)."""
    model = _model("Prediction")
    return {"predictions": rows_of_galaxy(model, galaxy, request)} if model is not None else {}
