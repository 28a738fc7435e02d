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


def _refresh_consensus(sender, instance, **kwargs) -> None:
    """A consensus row or override saved (or an override deleted) one at a time: the galaxy's
    stored consensus columns follow. Bulk writers (store_consensus) refresh set-wise themselves."""
    from zoo.columns import refresh_consensus_summary

    refresh_consensus_summary([instance.galaxy_id])


def _refresh_consensus_after(sender, instance, **kwargs) -> None:
    """After a delete commits: the galaxy itself may be going (a cascade), and a row written for it
    inside the cascade would outlive it."""
    from django.db import transaction

    from zoo.columns import refresh_consensus_summary

    pgc = instance.galaxy_id
    transaction.on_commit(lambda: refresh_consensus_summary([pgc]))


def connect_summary_receivers() -> None:
    from django.db.models.signals import post_delete, post_save

    from zoo.models import ConsensusInclination, ConsensusOverride

    post_save.connect(_refresh_consensus, sender=ConsensusInclination, dispatch_uid="galcat.zoo.summary.consensus")
    post_save.connect(_refresh_consensus, sender=ConsensusOverride, dispatch_uid="galcat.zoo.summary.override")
    post_delete.connect(_refresh_consensus_after, sender=ConsensusOverride, dispatch_uid="galcat.zoo.summary.override_deleted")
