"""The catalog's own contribution to the galaxy detail of the API (see GALCAT_GALAXY_API_EXTRAS)."""

from __future__ import annotations

from typing import Any

from catalog.models import ConsensusInclination, ConsensusOverride


def consensus(galaxy, request=None) -> dict[str, Any]:
    """The galaxy's consensus inclination: a curator's latest override wins, else the most
    recently computed value; all methods' values under `methods`."""
    rows = list(ConsensusInclination.objects.filter(galaxy=galaxy).order_by("-computed", "method"))
    override = ConsensusOverride.objects.filter(galaxy=galaxy).order_by("-created").first()
    methods = [
        {
            "inc": r.inc,
            "inc_e": r.inc_e,
            "inc_n": r.inc_n,
            "flag": r.flag,
            "method": r.method,
            "version": r.version,
            "computed": r.computed.isoformat(),
        }
        for r in rows
    ]
    if override is not None:
        chosen = {
            "inc": override.inc,
            "inc_e": override.inc_e,
            "inc_n": rows[0].inc_n if rows else 0,
            "flag": override.flag,
            "method": "curator override",
            "version": "",
            "computed": override.created.isoformat(),
        }
    elif methods:
        chosen = dict(methods[0])
    else:
        return {"consensus": None}
    chosen["methods"] = methods
    return {"consensus": chosen}
