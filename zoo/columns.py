"""The zoo's derived catalog columns: the volunteers' consensus inclination of each galaxy.

The value is the one the galaxy page shows (zoo.services.current_consensus): a curator's latest
override wins, else the most recently computed consensus row.
"""

from __future__ import annotations

from django.db.models import Case, Exists, OuterRef, Subquery, When

from catalog.columns import DerivedColumn, derived
from zoo.models import ConsensusInclination, ConsensusOverride


def _latest(field: str, *, override: bool = True):
    def expression():
        computed = Subquery(ConsensusInclination.objects.filter(galaxy=OuterRef("pk")).order_by("-computed", "method").values(field)[:1])
        if not override:
            return computed
        overrides = ConsensusOverride.objects.filter(galaxy=OuterRef("pk")).order_by("-created", "-id")
        return Case(When(Exists(overrides), then=Subquery(overrides.values(field)[:1])), default=computed)

    return expression


def derived_columns() -> list[DerivedColumn]:
    inc = "src.orbital.inclination"
    return [
        derived("consensus_inc", "float", "deg", inc, "Volunteers' consensus inclination (null unless accepted)", "consensus", _latest("inc"), ".1f"),
        derived("consensus_inc_e", "float", "deg", f"stat.error;{inc}", "1-sigma error of the consensus inclination", "consensus", _latest("inc_e"), ".1f"),
        derived("consensus_inc_n", "int", "", "meta.number", "Volunteers whose votes made the consensus", "consensus", _latest("inc_n", override=False)),
        derived("consensus_flag", "str", "", "meta.code", "Consensus flag: A accepted, F face-on, J rejected", "consensus", _latest("flag")),
    ]  # fmt: skip
