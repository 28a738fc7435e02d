"""Read-only API of the fitting app under /api/v1/ (registered by config/api.py): profile fits,
and the fits part of the galaxy detail."""

from __future__ import annotations

from django.apps import apps

from catalog.api.readonly import readonly_viewset, rows_of_galaxy

ENDPOINTS = (("FitResult", "fits", "Profile fits (Sersic, bulge+disk) with 1-sigma errors"),)


def _model(name: str):
    try:
        return apps.get_model("fitting", name)
    except LookupError:
        return None


def routes() -> list[tuple[str, type, str]]:
    """(prefix, viewset, basename) of every fitting model present."""
    out = []
    for name, prefix, summary in ENDPOINTS:
        model = _model(name)
        if model is not None:
            out.append((prefix, readonly_viewset(model, summary=summary), f"fitting-{prefix}"))
    return out


def galaxy_extras(galaxy, request=None) -> dict:
    """{'fits': [...]} for the galaxy detail (settings.GALCAT_GALAXY_API_EXTRAS)."""
    model = _model("FitResult")
    return {"fits": rows_of_galaxy(model, galaxy, request)} if model is not None else {}
