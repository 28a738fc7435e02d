"""record_vote and open_revote: every rule, and that a refused vote writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from core.roles import VOLUNTEER, grant
from tests.factories import GalaxyFactory, UserFactory
from zoo.models import CalibrationGalaxy, InclinationVote, VoteRound
from zoo.signals import votes_added
from zoo.voting import (
    AlreadyVoted,
    InvalidVote,
    NotAllowed,
    RateLimited,
    ReplayedVote,
    UnknownGalaxy,
    VoteError,
    current_round,
    open_revote,
    record_vote,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def galaxy():
    return GalaxyFactory()


def test_vote_is_stored_with_all_fields(volunteer, galaxy):
    out = timezone.now() - timedelta(seconds=40)
    vote = record_vote(
        volunteer,
        galaxy,
        63.5,
        std1=1844,
        std2=3738,
        flags={"not_sure": True, "hi": False},
        note=" spiral arms ",
        client_token="tok-12345678",
        checkout_time=out,
    )
    stored = InclinationVote.objects.get()
    assert stored.pk == vote.pk
    assert (stored.inc, stored.std1, stored.std2, stored.note) == (63.5, 1844, 3738, "spiral arms")
    assert stored.not_sure and not stored.hi and not stored.face_on and not stored.rejected
    assert stored.round == 0 and stored.kind == InclinationVote.Kind.TARGET and stored.source == InclinationVote.Source.WEB
    assert stored.checkout_time == out and stored.checkin_time >= out


def test_vote_by_pgc_number_and_face_on_without_inclination(volunteer, galaxy):
    vote = record_vote(volunteer, galaxy.pgc, None, flags=["face_on"])
    assert vote.inc is None and vote.face_on
    other = GalaxyFactory()
    vote = record_vote(volunteer, other.pgc, "", rejected=True)
    assert vote.inc is None and vote.rejected


def test_calibration_galaxy_votes_are_marked(volunteer, galaxy):
    CalibrationGalaxy.objects.create(galaxy=galaxy, inc=70.0, flag="A")
    assert record_vote(volunteer, galaxy, 71.0).kind == InclinationVote.Kind.CALIBRATION


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"inc": -0.5}, InvalidVote),
        ({"inc": 90.01}, InvalidVote),
        ({"inc": float("nan")}, InvalidVote),
        ({"inc": float("inf")}, InvalidVote),
        ({"inc": "steep"}, InvalidVote),
        ({"inc": None}, InvalidVote),
        ({"inc": 60.0, "flags": ["face_on"]}, InvalidVote),
        ({"inc": 60.0, "rejected": True}, InvalidVote),
        ({"inc": 60.0, "flags": ["sideways"]}, InvalidVote),
        ({"inc": 60.0, "flags": {"sideways": True}}, InvalidVote),
        ({"inc": 60.0, "std1": "NGC 1"}, InvalidVote),
        ({"inc": 60.0, "std2": -4}, InvalidVote),
        ({"inc": 60.0, "note": "x" * 2001}, InvalidVote),
        ({"inc": 60.0, "client_token": "short"}, InvalidVote),
        ({"inc": 60.0, "client_token": "has spaces in it"}, InvalidVote),
        ({"inc": 60.0, "source": "fax"}, InvalidVote),
        ({"inc": 60.0, "checkout_time": timezone.now() + timedelta(hours=1)}, InvalidVote),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(volunteer, galaxy, kwargs, error):
    kwargs = dict(kwargs)
    inc = kwargs.pop("inc")
    with pytest.raises(error) as exc:
        record_vote(volunteer, galaxy, inc, **kwargs)
    assert exc.value.status == 400 and exc.value.message
    assert InclinationVote.objects.count() == 0


def test_boundaries_0_and_90_are_accepted(volunteer):
    assert record_vote(volunteer, GalaxyFactory(), 0).inc == 0.0
    assert record_vote(volunteer, GalaxyFactory(), 90).inc == 90.0


def test_anonymous_and_roleless_users_are_refused(galaxy):
    with pytest.raises(NotAllowed) as exc:
        record_vote(AnonymousUser(), galaxy, 60.0)
    assert exc.value.status == 403
    with pytest.raises(NotAllowed):
        record_vote(None, galaxy, 60.0)
    with pytest.raises(NotAllowed):
        record_vote(UserFactory(), galaxy, 60.0)  # signed in, but not a volunteer
    inactive = UserFactory(is_active=False)
    grant(inactive, VOLUNTEER)
    with pytest.raises(NotAllowed):
        record_vote(inactive, galaxy, 60.0)
    assert InclinationVote.objects.count() == 0


def test_unknown_galaxy_is_refused(volunteer):
    with pytest.raises(UnknownGalaxy) as exc:
        record_vote(volunteer, 123456789, 60.0)
    assert exc.value.status == 404
    with pytest.raises(UnknownGalaxy):
        record_vote(volunteer, "PGC x", 60.0)
    assert InclinationVote.objects.count() == 0


def test_one_vote_per_galaxy_and_round(volunteer, galaxy):
    record_vote(volunteer, galaxy, 60.0)
    with pytest.raises(AlreadyVoted) as exc:
        record_vote(volunteer, galaxy, 62.0)
    assert exc.value.status == 409
    assert InclinationVote.objects.filter(user=volunteer, galaxy=galaxy).count() == 1


def test_replayed_form_is_refused(volunteer, galaxy):
    record_vote(volunteer, galaxy, 60.0, client_token="form-token-1")
    other = GalaxyFactory()
    with pytest.raises(ReplayedVote) as exc:
        record_vote(volunteer, other, 60.0, client_token="form-token-1")
    assert exc.value.status == 409 and exc.value.code == "replayed"
    assert InclinationVote.objects.count() == 1


def test_rate_limit_per_user(volunteer, settings):
    settings.GALCAT_VOTE_RATE = "3/60"
    for _ in range(3):
        record_vote(volunteer, GalaxyFactory(), 60.0)
    with pytest.raises(RateLimited) as exc:
        record_vote(volunteer, GalaxyFactory(), 60.0)
    assert exc.value.status == 429 and 1 <= exc.value.retry_after <= 60
    assert isinstance(exc.value, VoteError)
    # Another volunteer is not affected.
    other = UserFactory()
    grant(other, VOLUNTEER)
    record_vote(other, GalaxyFactory(), 60.0)
    # Votes older than the window do not count.
    InclinationVote.objects.filter(user=volunteer).delete()
    record_vote(volunteer, GalaxyFactory(), 60.0)
    assert InclinationVote.objects.count() == 2


def test_curator_opens_a_new_round(volunteer, curator, galaxy):
    record_vote(volunteer, galaxy, 60.0)
    with pytest.raises(NotAllowed):
        open_revote(galaxy, volunteer)
    with pytest.raises(NotAllowed):
        open_revote(galaxy, AnonymousUser())
    with pytest.raises(UnknownGalaxy):
        open_revote(987654321, curator)
    rnd = open_revote(galaxy, curator, reason="blurred image replaced")
    assert rnd.round == 1 and current_round(galaxy.pk) == 1
    again = record_vote(volunteer, galaxy, 64.0)
    assert again.round == 1
    with pytest.raises(AlreadyVoted):
        record_vote(volunteer, galaxy, 65.0)
    assert open_revote(galaxy, curator).round == 2
    assert VoteRound.objects.filter(galaxy=galaxy).count() == 2


def test_new_round_lies_above_imported_rounds(volunteer, curator, galaxy):
    InclinationVote.objects.create(user=volunteer, galaxy=galaxy, inc=50.0, round=0, source="import")
    InclinationVote.objects.create(user=volunteer, galaxy=galaxy, inc=55.0, round=3, source="import")
    with pytest.raises(AlreadyVoted):
        record_vote(volunteer, galaxy, 60.0)
    assert open_revote(galaxy, curator).round == 4
    assert record_vote(volunteer, galaxy, 60.0).round == 4


def test_votes_added_signal_after_commit(volunteer, galaxy, django_capture_on_commit_callbacks):
    seen = []

    def receiver(sender, galaxy_ids, **kw):
        seen.append(galaxy_ids)

    votes_added.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            record_vote(volunteer, galaxy, 70.0)
    finally:
        votes_added.disconnect(receiver)
    assert seen == [[galaxy.pk]]


def test_curator_override(volunteer, curator, galaxy):
    from zoo.models import ConsensusInclination, ConsensusOverride
    from zoo.voting import override_consensus

    ConsensusInclination.objects.create(galaxy=galaxy, inc=60.0, inc_e=2.0, inc_n=4, flag="A", method="joint", version="1.0")
    with pytest.raises(NotAllowed):
        override_consensus(galaxy, volunteer, "J")
    for flag, inc in (("X", None), ("A", None), ("A", 91), ("J", 50)):
        with pytest.raises(InvalidVote):
            override_consensus(galaxy, curator, flag, inc)
    with pytest.raises(UnknownGalaxy):
        override_consensus(123456789, curator, "J")
    assert not ConsensusOverride.objects.exists()
    o = override_consensus(galaxy, curator, "a", "72.5", "1.5", reason="checked on a deeper image")
    assert (o.flag, o.inc, o.inc_e) == ("A", 72.5, 1.5)
    row = ConsensusInclination.objects.get(galaxy=galaxy)
    assert (row.inc, row.flag, row.overridden_by_id) == (72.5, "A", curator.pk)
    override_consensus(galaxy, curator, "F")
    row.refresh_from_db()
    assert row.flag == "F" and row.inc is None
