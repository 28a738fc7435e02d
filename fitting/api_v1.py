"""Read-only API of the fitting app under /api/v1/ (registered by config/api.py): profile fits,
and the fits part of the galaxy detail."""

from __future__ import annotations

from catalog.api.readonly import app_routes, rows_of_galaxy
from fitting.models import FitResult

ENDPOINTS = (("FitResult", "fits", "Profile fits (Sersic, bulge+disk) with 1-sigma errors"),)


def routes() -> list[tuple[str, type, str]]:
    """(prefix, viewset, basename) of the fitting endpoints."""
    return app_routes("fitting", ENDPOINTS)


def galaxy_extras(galaxy, request=None) -> dict:
    """{'fits': [...]} for the galaxy detail (GALCAT_GALAXY_API_EXTRAS)."""
    return {"fits": rows_of_galaxy(FitResult, galaxy, request)}
