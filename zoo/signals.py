"""Signals of the zoo, and its receivers."""

from django.dispatch import Signal, receiver

from jobs.triggers import Step, collect_quietly, register_collector
from zoo.conf import conf

# Sent after votes are stored, with galaxy_ids=[...]; the consensus is recomputed on it.
votes_added = Signal()

VOTES = "collect_votes"


def vote_steps(ids: list[int]) -> list[Step]:
    """New votes queue one run of GALCAT_CONSENSUS_TASK over their galaxies."""
    return [(conf.CONSENSUS_TASK, max(len(ids), 1), "consensus")]


register_collector(VOTES, vote_steps)


@receiver(votes_added, dispatch_uid="galcat.zoo.votes_added")
def on_votes_added(sender, galaxy_ids=(), **kwargs) -> None:
    collect_quietly(VOTES, galaxy_ids)
