"""Reads and helpers of the zoo: which galaxy the voting page shows next, the standards to show
beside it, the signed check-out ticket of the form, the leaderboard, a galaxy's current consensus."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from django.core import signing
from django.db.models import Count, Exists, IntegerField, Max, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils.module_loading import import_string

from catalog.models import Galaxy, Image
from zoo.conf import conf
from zoo.models import CalibrationGalaxy, ConsensusInclination, ConsensusOverride, InclinationVote, VoteRound
from zoo.standards import PREFERRED_BANDS, standards_by_inc, uses_rendered_standards
from zoo.voting import InvalidVote

STEP_A = tuple(range(45, 90, 5))  # deg: the 9 standards of step A; left of 45 means face-on
STEP_B_SIZE = 9  # standards 1 deg apart in step B
ENOUGH_VOTES = 3  # galaxies with fewer votes come first
TICKET_SALT = "galcat.zoo.ticket"
TICKET_MAX_AGE = 24 * 3600  # s: a form older than this must be reloaded
CANDIDATES = 200  # galaxies ranked per request (fewest votes first) before the uncertainty hook


def _with_image():
    return Exists(Image.objects.filter(galaxy=OuterRef("pk"), is_public=True))


def votable_galaxies(user):
    """Galaxies with an image that the user has not voted on in their open round, with their
    vote counts (n_votes)."""
    open_round = Coalesce(
        Subquery(VoteRound.objects.filter(galaxy=OuterRef("pk")).values("galaxy").annotate(m=Max("round")).values("m")[:1]),
        Value(0),
        output_field=IntegerField(),
    )
    voted = InclinationVote.objects.filter(user=user, galaxy=OuterRef("pk"), round__gte=OuterRef("open_round"))
    return (
        Galaxy.objects.filter(_with_image())
        .annotate(open_round=open_round)
        .exclude(Exists(voted))
        .annotate(n_votes=Count("votes", distinct=True))
    )


def _uncertainty(pgcs: list[int]) -> dict[int, float]:
    path = conf.ZOO_UNCERTAINTY
    if not path or not pgcs:
        return {}
    try:
        func = import_string(path)
    except ImportError:
        return {}
    return {int(k): float(v) for k, v in (func(pgcs) or {}).items()}


# Weight of the CNN/axis-ratio disagreement beside the ensemble spread in the machine's doubt.
AXIS_RATIO_WEIGHT = 0.5


def prediction_uncertainty(pgcs: list[int]) -> dict[int, float]:
    """How unsure the machine is about each galaxy (deg): the CNN ensemble spread plus half the
    distance between the CNN and the axis-ratio inclination, the largest over the galaxy's images.

    The default GALCAT_ZOO_UNCERTAINTY. It reads the predictions through the app registry, so the
    catalog does not import the ml app; without it (or without predictions) it returns {}."""
    from django.apps import apps

    try:
        Prediction = apps.get_model("ml", "Prediction")
    except LookupError:
        return {}
    out: dict[int, float] = {}
    rows = Prediction.objects.filter(galaxy_id__in=pgcs, model_version__active=True).values_list(
        "galaxy_id", "value", "uncertainty", "axis_ratio_inc"
    )
    for pgc, value, spread, ar_inc in rows:
        doubt = (spread or 0.0) + (AXIS_RATIO_WEIGHT * abs(value - ar_inc) if ar_inc is not None else 0.0)
        out[pgc] = max(out.get(pgc, 0.0), doubt)
    return out


def wants_calibration(user) -> bool:
    """Every 1/rate-th target of a volunteer is a calibration galaxy (rate in settings)."""
    rate = float(conf.ZOO_CALIBRATION_RATE)
    if rate <= 0:
        return False
    period = max(1, round(1.0 / rate))
    return InclinationVote.objects.filter(user=user).count() % period == period - 1


def next_target(user) -> Galaxy | None:
    """The next galaxy to show: has an image, not voted on by the user, calibration galaxies
    interleaved at GALCAT_ZOO_CALIBRATION_RATE; then galaxies with fewer than ENOUGH_VOTES votes
    first, the machine's least sure first (GALCAT_ZOO_UNCERTAINTY), fewest votes, lowest pgc."""
    qs = votable_galaxies(user)
    if wants_calibration(user):
        cal = qs.filter(Exists(CalibrationGalaxy.objects.filter(galaxy=OuterRef("pk")))).order_by("n_votes", "pgc").first()
        if cal is not None:
            return cal
    candidates = list(qs.order_by("n_votes", "pgc")[:CANDIDATES])
    if not candidates:
        return None
    unc = _uncertainty([g.pgc for g in candidates])
    candidates.sort(key=lambda g: (g.n_votes >= ENOUGH_VOTES, -unc.get(g.pgc, 0.0), g.n_votes, g.pgc))
    return candidates[0]


def target_image(galaxy: Galaxy) -> Image | None:
    """The image to vote on: a grey band first (as the standards are), else any."""
    rank = {b: i for i, b in enumerate(PREFERRED_BANDS)}
    images = sorted(Image.objects.filter(galaxy=galaxy, is_public=True), key=lambda im: (rank.get(im.band, 99), im.pk))
    return images[0] if images else None


def standards_payload(look=None) -> dict:
    """What the page's script needs: {"rendered": bool, "standards": {"45": [{"url", "pgc"}], ...}}.
    look (zoo.framing.Look): the target's, which rendered standards are drawn with."""
    from zoo.frames import standard_url

    table: dict[str, list[dict]] = {}
    for inc, stds in standards_by_inc().items():
        table[str(inc)] = [{"url": standard_url(s, look), "pgc": s.galaxy_id} for s in stds]
    return {"rendered": uses_rendered_standards(), "standards": table, "step_a": list(STEP_A), "step_b_size": STEP_B_SIZE}


def standards_ready() -> bool:
    """True when every degree 45-90 has a standard to show."""
    have = standards_by_inc()
    return all(d in have for d in range(45, 91))


def make_ticket(pgc: int) -> str:
    """A signed check-out ticket: the galaxy, a one-time client token and the check-out time."""
    return signing.dumps({"pgc": int(pgc), "token": secrets.token_urlsafe(24), "t": datetime.now(UTC).isoformat()}, salt=TICKET_SALT)


def read_ticket(ticket: str, pgc: int) -> tuple[str, datetime]:
    """(client token, check-out time) of a ticket issued for galaxy pgc, or InvalidVote."""
    try:
        data = signing.loads(ticket or "", salt=TICKET_SALT, max_age=TICKET_MAX_AGE)
    except signing.SignatureExpired:
        raise InvalidVote("this voting form has expired: reload the page") from None
    except signing.BadSignature:
        raise InvalidVote("this voting form is damaged: reload the page") from None
    if int(data.get("pgc", -1)) != int(pgc):
        raise InvalidVote("this voting form was issued for another galaxy")
    return data["token"], datetime.fromisoformat(data["t"])


def leaderboard(limit: int = 100) -> list[dict]:
    """Volunteers by number of votes: pseudonym, votes, galaxies, measured, last vote, and the
    scatter of their calibrated votes (deg) from the last consensus run."""
    from django.contrib.auth import get_user_model

    rows = (
        get_user_model()
        .objects.filter(inclination_votes__isnull=False)
        .annotate(
            votes=Count("inclination_votes"),
            galaxies=Count("inclination_votes__galaxy", distinct=True),
            measured=Count("inclination_votes", filter=Q(inclination_votes__inc__isnull=False)),
            last=Max("inclination_votes__created"),
        )
        .select_related("volunteer")
        .order_by("-votes", "username")[:limit]
    )
    from zoo.consensus import get_method
    from zoo.models import VolunteerCalibration

    sigma = dict(VolunteerCalibration.objects.filter(method=get_method().name).values_list("user_id", "sigma"))
    out = []
    for u in rows:
        vol = getattr(u, "volunteer", None)
        out.append(
            {
                "name": vol.pseudonym if vol else u.username,
                "votes": u.votes,
                "galaxies": u.galaxies,
                "measured": u.measured,
                "last": u.last,
                "sigma": sigma.get(u.pk),
            }
        )
    return out


def current_consensus(galaxy) -> dict | None:
    """The galaxy's consensus inclination as shown everywhere: a curator's latest override wins,
    else the most recently computed value; every method's value under `methods`. None when
    neither exists."""
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
        return None
    chosen["methods"] = methods
    return chosen
