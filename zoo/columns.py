"""The zoo's derived catalog columns: the volunteers' consensus inclination of each galaxy.

The value is the one the galaxy page shows (zoo.services.current_consensus): a curator's latest
override wins, else the most recently computed consensus row. Tables read the stored copy in
ConsensusSummary; `refresh_consensus_summary` keeps it, called by store_consensus,
override_consensus and the receivers in zoo.signals.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Case, Exists, OuterRef, Q, Subquery, When

from catalog.columns import DerivedColumn, derived
from catalog.summaries import refresh_summary, register_summary, summary_columns
from zoo.models import ConsensusInclination, ConsensusOverride, ConsensusSummary

SUMMARY = "consensus_summary"


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
    s = SUMMARY
    return [
        derived("consensus_inc", "float", "deg", inc, "Volunteers' consensus inclination (null unless accepted)", "consensus", _latest("inc"), ".1f", s),
        derived("consensus_inc_e", "float", "deg", f"stat.error;{inc}", "1-sigma error of the consensus inclination", "consensus", _latest("inc_e"), ".1f", s),
        derived("consensus_inc_n", "int", "", "meta.number", "Volunteers whose votes made the consensus", "consensus", _latest("inc_n", override=False), "", s),
        derived("consensus_flag", "str", "", "meta.code", "Consensus flag: A accepted, F face-on, J rejected", "consensus", _latest("flag"), "", s),
    ]  # fmt: skip


def refresh_consensus_summary(pgcs: Iterable[int] | None = None) -> int:
    """Recompute the stored consensus columns of these galaxies (all when None)."""
    present = Q(Exists(ConsensusInclination.objects.filter(galaxy=OuterRef("pk")))) | Q(
        Exists(ConsensusOverride.objects.filter(galaxy=OuterRef("pk")))
    )
    return refresh_summary(ConsensusSummary, summary_columns(derived_columns(), SUMMARY), pgcs, present)


register_summary(SUMMARY, refresh_consensus_summary)
