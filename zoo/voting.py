"""Writes of the Galaxy Inclination Zoo: the one way a vote is stored, and curators' re-vote rounds.

`record_vote` is called alike by the voting page, the REST API and scripts. It validates, then
stores the vote in one transaction. Every refusal is a `VoteError` subclass carrying an HTTP-like
`status` and a short `code`, so the API can map it without knowing the cases:

    NotAllowed (403) · UnknownGalaxy (404) · InvalidVote (400) · AlreadyVoted (409)
    · ReplayedVote (409) · RateLimited (429, with retry_after in seconds)
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from catalog.models import Galaxy
from core.roles import is_curator, is_volunteer
from zoo.columns import refresh_consensus_summary
from zoo.conf import conf
from zoo.models import GIZ_FLAGS, CalibrationGalaxy, InclinationVote, VoteRound
from zoo.signals import votes_added

NOTE_MAX_CHARS = 2000
CLIENT_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")
# Clock skew allowed between a client's check-out time and the server's clock.
CHECKOUT_SKEW = timedelta(minutes=5)


class VoteError(Exception):
    """A vote was refused; nothing was written."""

    status = 400
    code = "invalid"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotAllowed(VoteError):
    status = 403
    code = "not_allowed"


class UnknownGalaxy(VoteError):
    status = 404
    code = "unknown_galaxy"


class InvalidVote(VoteError):
    status = 400
    code = "invalid"


class AlreadyVoted(VoteError):
    status = 409
    code = "already_voted"


class ReplayedVote(VoteError):
    status = 409
    code = "replayed"


class RateLimited(VoteError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Rate:
    """At most `votes` votes per `seconds` seconds for one volunteer."""

    votes: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        n, _, s = str(text).partition("/")
        rate = cls(int(n), int(s or 60))
        if rate.votes < 1 or rate.seconds < 1:
            raise ValueError(f"vote rate {text!r}: expected N/SECONDS with both positive")
        return rate


def vote_rate() -> Rate:
    """The per-volunteer rate limit (GALCAT_VOTE_RATE, "N/SECONDS")."""
    return Rate.parse(conf.VOTE_RATE)


def current_round(galaxy_id: int) -> int:
    """The open voting round of a galaxy: 0 unless a curator opened a later one."""
    return VoteRound.objects.filter(galaxy_id=galaxy_id).aggregate(r=Max("round"))["r"] or 0


def has_voted(user, galaxy_id: int, open_round: int | None = None) -> bool:
    """True when the user already voted on the galaxy in its open round (or a later one).

    open_round is the galaxy's current_round() when the caller already has it.
    """
    rnd = current_round(galaxy_id) if open_round is None else open_round
    return InclinationVote.objects.filter(user=user, galaxy_id=galaxy_id, round__gte=rnd).exists()


def _flags(flags: Mapping[str, bool] | Iterable[str] | None) -> dict[str, bool]:
    if flags is None:
        given: set[str] = set()
        names: set[str] = set()
    elif isinstance(flags, Mapping):
        given, names = set(flags), {k for k, v in flags.items() if v}
    else:
        given = names = set(flags)
    unknown = given - set(GIZ_FLAGS)
    if unknown:
        raise InvalidVote(f"unknown flag(s): {', '.join(sorted(unknown))}; known: {', '.join(GIZ_FLAGS)}")
    return {f: f in names for f in GIZ_FLAGS}


def _inclination(inc, *, face_on: bool, rejected: bool) -> float | None:
    if inc is None or (isinstance(inc, str) and not inc.strip()):
        if face_on or rejected:
            return None
        raise InvalidVote("an inclination is required unless the galaxy is flagged face-on or rejected")
    try:
        value = float(inc)
    except (TypeError, ValueError):
        raise InvalidVote(f"inclination must be a number of degrees, got {inc!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 90.0:
        raise InvalidVote(f"inclination {inc!r} is outside [0, 90] deg")
    if face_on or rejected:
        raise InvalidVote("a face-on or rejected vote carries no inclination")
    return value


def _standard(value, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        pgc = int(value)
    except (TypeError, ValueError):
        raise InvalidVote(f"{name} must be a PGC number, got {value!r}") from None
    if pgc <= 0:
        raise InvalidVote(f"{name} must be a positive PGC number, got {pgc}")
    return pgc


@dataclass(frozen=True)
class CleanVote:
    """The checked input of one vote, as _clean_vote returns it."""

    pgc: int
    inc: float | None
    rejected: bool
    std1: int | None
    std2: int | None
    flags: dict[str, bool]
    note: str
    client_token: str | None
    checkout_time: datetime | None
    source: str
    kind: str | None


# CleanVote fields that a stored vote keeps unchanged.
STORED_AS_GIVEN = ("inc", "rejected", "std1", "std2", "note", "source", "client_token", "checkout_time")


def _clean_vote(
    galaxy: Galaxy | int,
    inc: float | None,
    *,
    rejected: bool,
    std1: int | None,
    std2: int | None,
    flags: Mapping[str, bool] | Iterable[str] | None,
    note: str,
    client_token: str | None,
    checkout_time: datetime | None,
    source: str,
    kind: str | None,
    now: datetime,
) -> CleanVote:
    """Check and normalise the input of record_vote (nothing is read from the database).

    Raises InvalidVote, or UnknownGalaxy when `galaxy` is not a PGC number at all.
    """
    flag_values = _flags(flags)
    rejected = bool(rejected)
    value = _inclination(inc, face_on=flag_values["face_on"], rejected=rejected)
    std1, std2 = _standard(std1, "std1"), _standard(std2, "std2")
    note = (note or "").strip()
    if len(note) > NOTE_MAX_CHARS:
        raise InvalidVote(f"the note is longer than {NOTE_MAX_CHARS} characters")
    if client_token is not None:
        client_token = str(client_token)
        if not CLIENT_TOKEN_RE.match(client_token):
            raise InvalidVote("client_token must be 8-64 characters of letters, digits, '_', '.', ':' or '-'")
    if source not in InclinationVote.Source.values:
        raise InvalidVote(f"unknown source {source!r}")
    if kind is not None and kind not in InclinationVote.Kind.values:
        raise InvalidVote(f"unknown kind {kind!r}")
    if checkout_time is not None:
        if timezone.is_naive(checkout_time):
            raise InvalidVote("checkout_time needs a time zone")
        if checkout_time > now + CHECKOUT_SKEW:
            raise InvalidVote("checkout_time lies in the future")
    pgc = galaxy.pk if isinstance(galaxy, Galaxy) else galaxy
    try:
        pgc = int(pgc)
    except (TypeError, ValueError):
        raise UnknownGalaxy(f"not a PGC number: {galaxy!r}") from None
    return CleanVote(
        pgc=pgc,
        inc=value,
        rejected=rejected,
        std1=std1,
        std2=std2,
        flags=flag_values,
        note=note,
        client_token=client_token,
        checkout_time=checkout_time,
        source=source,
        kind=kind,
    )


def _check_rate(user, now: datetime) -> None:
    """Raise RateLimited when the volunteer already cast vote_rate() votes (imports not counted)
    in the window ending at `now`. Exact only under the volunteer's row lock of record_vote."""
    rate = vote_rate()
    since = now - timedelta(seconds=rate.seconds)
    recent = list(
        InclinationVote.objects.filter(user=user, created__gte=since)
        .exclude(source=InclinationVote.Source.IMPORT)
        .order_by("created")
        .values_list("created", flat=True)[: rate.votes]
    )
    if len(recent) >= rate.votes:
        wait = max(1, math.ceil((recent[0] + timedelta(seconds=rate.seconds) - now).total_seconds()))
        raise RateLimited(f"at most {rate.votes} votes per {rate.seconds} s: try again in {wait} s", retry_after=wait)


def _lock_volunteer(user) -> None:
    """Serialise one volunteer's votes (inside record_vote's transaction): the rate count and the
    round check of the statement that follows are then exact."""
    with connection.cursor() as cur:
        cur.execute(f'SELECT 1 FROM "{get_user_model()._meta.db_table}" WHERE id = %s FOR UPDATE', [user.pk])


# Vote fields that _insert_sql takes as they are given, in its column order.
INSERTED_AS_GIVEN = ("user", "galaxy", "checkin_time", "created", *STORED_AS_GIVEN, *GIZ_FLAGS)


@functools.cache
def _insert_sql() -> str:
    """The one statement that stores a vote when every rule holds (record_vote, after the lock).

    INSERT ... SELECT: the galaxy exists, the form token is new, the volunteer is under the rate
    (imports not counted) and has not voted in the galaxy's open round (0 unless a curator opened
    a later one), which goes into the row; the kind is 'calibration' for a calibration galaxy
    unless given. It returns no row when a rule is broken (_refuse says which).
    """
    vote = InclinationVote._meta
    columns = ", ".join(f'"{vote.get_field(name).column}"' for name in INSERTED_AS_GIVEN)
    values = ", ".join(f"%({name})s" for name in INSERTED_AS_GIVEN)
    kinds, sources = InclinationVote.Kind, InclinationVote.Source
    return f"""
        INSERT INTO "{vote.db_table}" ({columns}, "kind", "round")
        SELECT {values},
            COALESCE(%(kind)s::text, CASE WHEN EXISTS (
                SELECT 1 FROM "{CalibrationGalaxy._meta.db_table}" c WHERE c.galaxy_id = g.pgc
            ) THEN '{kinds.CALIBRATION.value}' ELSE '{kinds.TARGET.value}' END),
            r.open_round
        FROM "{Galaxy._meta.db_table}" g
        CROSS JOIN LATERAL (
            SELECT COALESCE(MAX(vr.round), 0) AS open_round
            FROM "{VoteRound._meta.db_table}" vr WHERE vr.galaxy_id = g.pgc
        ) r
        WHERE g.pgc = %(galaxy)s
          AND NOT EXISTS (
            SELECT 1 FROM "{vote.db_table}" v
            WHERE v.user_id = %(user)s AND v.galaxy_id = g.pgc AND v.round >= r.open_round
          )
          AND (%(client_token)s::text IS NULL
               OR NOT EXISTS (SELECT 1 FROM "{vote.db_table}" v WHERE v.client_token = %(client_token)s))
          AND (%(rate_votes)s::int IS NULL OR (
            SELECT count(*) FROM (
              SELECT 1 FROM "{vote.db_table}" v
              WHERE v.user_id = %(user)s AND v.created >= %(rate_since)s AND v.source <> '{sources.IMPORT.value}'
              LIMIT %(rate_votes)s
            ) recent
          ) < %(rate_votes)s)
        RETURNING id, kind, round
    """


def _refuse(user, vote_in: CleanVote, now: datetime) -> VoteError:
    """Why _insert_sql stored nothing (same transaction, so the same facts), in record_vote's order."""
    pgc = vote_in.pgc
    if not Galaxy.objects.filter(pk=pgc).exists():
        return UnknownGalaxy(f"PGC {pgc} is not in the catalog")
    if vote_in.client_token is not None and InclinationVote.objects.filter(client_token=vote_in.client_token).exists():
        return ReplayedVote("this form was already submitted")
    if vote_in.source != InclinationVote.Source.IMPORT:
        _check_rate(user, now)
    if has_voted(user, pgc):
        return AlreadyVoted(f"you already voted on PGC {pgc}")
    return VoteError(f"the vote on PGC {pgc} was not stored")


def _write_vote(user, vote_in: CleanVote, now: datetime) -> InclinationVote:
    """Store a checked vote in the galaxy's open round (inside record_vote's transaction, after
    the volunteer's lock), or raise the VoteError of the first rule it breaks."""
    stored = {name: getattr(vote_in, name) for name in STORED_AS_GIVEN}
    params = {**stored, **vote_in.flags, "user": user.pk, "galaxy": vote_in.pgc, "checkin_time": now, "created": now, "kind": vote_in.kind}
    rate = None if vote_in.source == InclinationVote.Source.IMPORT else vote_rate()
    params["rate_votes"] = rate.votes if rate else None
    params["rate_since"] = now - timedelta(seconds=rate.seconds) if rate else now
    with connection.cursor() as cur:
        cur.execute(_insert_sql(), params)
        row = cur.fetchone()
    if row is None:
        raise _refuse(user, vote_in, now)
    pk, kind, rnd = row
    vote = InclinationVote(
        pk=pk, user=user, galaxy_id=vote_in.pgc, kind=kind, round=rnd, checkin_time=now, created=now, **stored, **vote_in.flags
    )
    vote._state.adding, vote._state.db = False, connection.alias
    pgc = vote_in.pgc
    transaction.on_commit(lambda: votes_added.send(sender=InclinationVote, galaxy_ids=[pgc]))
    return vote


def record_vote(
    user,
    galaxy: Galaxy | int,
    inc: float | None,
    *,
    rejected: bool = False,
    std1: int | None = None,
    std2: int | None = None,
    flags: Mapping[str, bool] | Iterable[str] | None = None,
    note: str = "",
    client_token: str | None = None,
    checkout_time: datetime | None = None,
    source: str = InclinationVote.Source.WEB,
    kind: str | None = None,
) -> InclinationVote:
    """Store one volunteer's inclination vote on a galaxy, atomically, or raise a VoteError.

    inc is in degrees within [0, 90]; it is None for a face-on ('face_on' in flags) or rejected
    vote. std1/std2 are the PGC numbers of the neighbouring standards (None for rendered ones).
    client_token is the one-time token of the form: a replayed form is refused. The vote goes
    into the galaxy's open round; the volunteer may vote once per round.

    In order: who votes, the input (_clean_vote), then under a lock of the volunteer's row one
    statement that checks the galaxy, the form token, the rate and the round and writes the vote
    (_write_vote); when it writes nothing, _refuse says which rule it broke.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        raise NotAllowed("sign in to vote")
    if not user.is_active:
        raise NotAllowed("this account is inactive")
    if not is_volunteer(user):
        raise NotAllowed("only volunteers can vote")
    now = timezone.now()
    vote_in = _clean_vote(
        galaxy,
        inc,
        rejected=rejected,
        std1=std1,
        std2=std2,
        flags=flags,
        note=note,
        client_token=client_token,
        checkout_time=checkout_time,
        source=source,
        kind=kind,
        now=now,
    )
    pgc, client_token = vote_in.pgc, vote_in.client_token
    try:
        with transaction.atomic():
            _lock_volunteer(user)
            vote = _write_vote(user, vote_in, now)
    except IntegrityError as exc:
        # A concurrent request won the race: say which rule it broke.
        if client_token is not None and InclinationVote.objects.filter(client_token=client_token).exists():
            raise ReplayedVote("this form was already submitted") from exc
        if has_voted(user, pgc):
            raise AlreadyVoted(f"you already voted on PGC {pgc}") from exc
        raise
    return vote


def open_revote(galaxy: Galaxy | int, curator, reason: str = "") -> VoteRound:
    """Open a new voting round of a galaxy (curators only): every volunteer may vote once more."""
    if curator is None or not getattr(curator, "is_authenticated", False) or not is_curator(curator):
        raise NotAllowed("only curators can open a galaxy for re-voting")
    pgc = galaxy.pk if isinstance(galaxy, Galaxy) else int(galaxy)
    with transaction.atomic():
        locked = Galaxy.objects.select_for_update().filter(pk=pgc).first()
        if locked is None:
            raise UnknownGalaxy(f"PGC {pgc} is not in the catalog")
        top_vote = InclinationVote.objects.filter(galaxy_id=pgc).aggregate(r=Max("round"))["r"]
        top_round = VoteRound.objects.filter(galaxy_id=pgc).aggregate(r=Max("round"))["r"]
        new = max(-1 if top_vote is None else top_vote, top_round or 0) + 1
        return VoteRound.objects.create(galaxy_id=pgc, round=new, opened_by=curator, reason=(reason or "")[:300])


def override_consensus(galaxy: Galaxy | int, curator, flag: str, inc=None, inc_e=None, reason: str = ""):
    """A curator's decision on a galaxy's inclination: stored, and applied to the stored consensus
    of every method at once (it also wins every later consensus run). Returns the override."""
    from zoo.models import ConsensusInclination, ConsensusOverride, ReferenceFlag

    if curator is None or not getattr(curator, "is_authenticated", False) or not is_curator(curator):
        raise NotAllowed("only curators can override a consensus")
    flag = (flag or "").strip().upper()
    if flag not in ReferenceFlag.values:
        raise InvalidVote(f"flag must be one of {', '.join(ReferenceFlag.values)}, got {flag!r}")
    if flag == ReferenceFlag.ACCEPTED:
        value = _inclination(inc, face_on=False, rejected=False)
        try:
            err = None if inc_e in (None, "") else float(inc_e)
        except (TypeError, ValueError):
            raise InvalidVote(f"inc_e must be a number of degrees, got {inc_e!r}") from None
        if err is not None and not (math.isfinite(err) and 0 <= err <= 90):
            raise InvalidVote("inc_e must be within [0, 90] deg")
    else:
        if inc not in (None, ""):
            raise InvalidVote("a face-on or rejected galaxy carries no inclination")
        value = err = None
    pgc = galaxy.pk if isinstance(galaxy, Galaxy) else int(galaxy)
    with transaction.atomic():
        if not Galaxy.objects.filter(pk=pgc).exists():
            raise UnknownGalaxy(f"PGC {pgc} is not in the catalog")
        override = ConsensusOverride.objects.create(
            galaxy_id=pgc, curator=curator, inc=value, inc_e=err, flag=flag, reason=(reason or "")[:300]
        )
        ConsensusInclination.objects.filter(galaxy_id=pgc).update(inc=value, inc_e=err, flag=flag, overridden_by=curator)
        refresh_consensus_summary([pgc])
    return override
