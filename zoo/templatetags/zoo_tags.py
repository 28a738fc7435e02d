"""Template tags of the Inclination Zoo: the data of the galaxy page's votes panel."""

from django import template

from core.roles import is_curator
from zoo.consensus import consensus_for
from zoo.models import ConsensusOverride, InclinationVote

register = template.Library()


@register.simple_tag(takes_context=True)
def votes_panel(context, galaxy) -> dict:
    """Votes of a galaxy (each volunteer's latest), its consensus and override, as the panel needs."""
    votes = list(
        InclinationVote.objects.filter(galaxy=galaxy)
        .order_by("user_id", "-round", "-created")
        .distinct("user_id")
        .values_list("inc", "face_on", "rejected")
    )
    incs = [round(v[0], 2) for v in votes if v[0] is not None and not v[1] and not v[2]]
    cons = consensus_for(galaxy.pk)
    override = ConsensusOverride.objects.filter(galaxy=galaxy).order_by("-created", "-id").first()
    request = context.get("request")
    return {
        "n": len(votes),
        "n_measured": len(incs),
        "n_face_on": sum(1 for v in votes if v[1]),
        "n_rejected": sum(1 for v in votes if v[2] and not v[1]),
        "consensus": cons,
        "override": override,
        "data": {"incs": incs, "inc": cons.inc if cons else None, "inc_e": cons.inc_e if cons else None},
        "can_revote": bool(request and is_curator(request.user)),
    }
