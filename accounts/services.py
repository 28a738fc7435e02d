"""Account writes and the reads of the profile page."""

from __future__ import annotations

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q

from core.roles import VOLUNTEER, grant
from zoo.consensus import get_method
from zoo.models import CalibrationGalaxy, ConsensusInclination, InclinationVote, Volunteer, VolunteerCalibration


def create_volunteer(username: str, email: str, password: str):
    """A new account in the volunteer group, with its public pseudonym (the user name)."""
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.create_user(username=username, email=email, password=password)
        grant(user, VOLUNTEER)
        Volunteer.objects.create(user=user, pseudonym=username)
    return user


def latest_votes(user):
    """The user's votes, newest first."""
    return InclinationVote.objects.filter(user=user).order_by("-created", "-id")


def calibration_points(user) -> dict:
    """The user's measurements against the consensus and against known inclinations.

    Returns {"consensus": {"x": [...], "y": [...], "pgc": [...]}, "known": {...}, "fit": {a, b} or
    None, "n", "mean_diff", "rms_diff"} with x the reference (deg) and y the user's vote (deg); the
    fit is y = a*x + b over both sets."""
    method = get_method().name
    votes = list(
        InclinationVote.objects.filter(user=user, inc__isnull=False, rejected=False, face_on=False)
        .order_by("galaxy_id", "-round", "-created")
        .distinct("galaxy_id")
        .values_list("galaxy_id", "inc")
    )
    pgcs = [p for p, _ in votes]
    cons = dict(
        ConsensusInclination.objects.filter(galaxy_id__in=pgcs, method=method, flag="A", inc__isnull=False).values_list("galaxy_id", "inc")
    )
    known = dict(CalibrationGalaxy.objects.filter(galaxy_id__in=pgcs, flag="A", inc__isnull=False).values_list("galaxy_id", "inc"))
    out = {"consensus": {"x": [], "y": [], "pgc": []}, "known": {"x": [], "y": [], "pgc": []}}
    for pgc, inc in votes:
        if pgc in known:
            key, ref = "known", known[pgc]
        elif pgc in cons:
            key, ref = "consensus", cons[pgc]
        else:
            continue
        out[key]["x"].append(round(ref, 2))
        out[key]["y"].append(round(inc, 2))
        out[key]["pgc"].append(pgc)
    x = np.array(out["consensus"]["x"] + out["known"]["x"])
    y = np.array(out["consensus"]["y"] + out["known"]["y"])
    out["n"] = int(x.size)
    out["fit"] = None
    out["mean_diff"] = out["rms_diff"] = None
    if x.size:
        d = y - x
        out["mean_diff"] = round(float(d.mean()), 2)
        out["rms_diff"] = round(float(np.sqrt(np.mean(d**2))), 2)
    if x.size >= 3 and np.ptp(x) > 0:
        a, b = np.polyfit(x, y, 1)
        out["fit"] = {"a": round(float(a), 3), "b": round(float(b), 2)}
    return out


def vote_statistics(user) -> dict:
    """Counts of the user's votes by outcome."""
    out = InclinationVote.objects.filter(user=user).aggregate(
        n_total=Count("id"),
        n_measured=Count("id", filter=Q(inc__isnull=False)),
        n_face_on=Count("id", filter=Q(face_on=True)),
        n_rejected=Count("id", filter=Q(rejected=True, face_on=False)),
        n_galaxies=Count("galaxy", distinct=True),
    )
    return {k[2:]: v for k, v in out.items()}


def method_calibration(user) -> VolunteerCalibration | None:
    """How the configured consensus method corrects the user's votes (after a consensus run)."""
    return VolunteerCalibration.objects.filter(user=user, method=get_method().name).first()
