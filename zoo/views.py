"""The voting page (/zoo/), its form handler, the leaderboard and curators' re-vote button."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from catalog.models import Image
from core.http import redirect_to_next
from core.roles import is_volunteer
from zoo.frames import CACHE_SECONDS, BadLook, framed_standard_image, framed_target, look_from_params, rounded, standard_png
from zoo.framing import FRAME_FRACTION
from zoo.models import GIZ_FLAGS, InclinationVote, Standard
from zoo.services import leaderboard, make_ticket, next_target, read_ticket, standards_payload, standards_ready, target_image
from zoo.standards import RENDER_THICKNESS, STANDARD_RANGE
from zoo.voting import InvalidVote, VoteError, open_revote, override_consensus, record_vote

FLAG_LABELS = {f: InclinationVote._meta.get_field(f).verbose_name for f in GIZ_FLAGS if f != "face_on"}


@login_required
def vote_page(request: HttpRequest) -> HttpResponse:
    if not is_volunteer(request.user):
        return render(request, "zoo/vote.html", {"not_volunteer": True}, status=403)
    galaxy = next_target(request.user)
    ctx = {"galaxy": galaxy, "ready": standards_ready(), "flags": FLAG_LABELS.items()}
    if galaxy is not None:
        image = target_image(galaxy)
        try:
            look = framed_target(image)[1]
        except (OSError, ValueError):  # an unreadable file: shown as stored, standards plain
            look = None
        payload = standards_payload(look)
        ctx.update(
            image=image,
            look=rounded(look) if look is not None else None,
            fraction=round(100 * FRAME_FRACTION),
            ticket=make_ticket(galaxy.pgc),
            payload=payload,
            rendered=payload["rendered"],
        )
    return render(request, "zoo/vote.html", ctx)


def _png_response(data: bytes) -> HttpResponse:
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = f"private, max-age={CACHE_SECONDS}"
    return response


@login_required
def target_png(request: HttpRequest, image_id: int) -> HttpResponse:
    """A public image framed as the voting page shows its target (volunteers only)."""
    if not is_volunteer(request.user):
        return HttpResponse("volunteers only", status=403, content_type="text/plain")
    image = get_object_or_404(Image, pk=image_id, is_public=True)
    return _png_response(framed_target(image)[0])


@login_required
def standard_render_png(request: HttpRequest, inc: int, variant: int) -> HttpResponse:
    """A rendered standard drawn with the look in the query (sky, noise, ink, psf, dark)."""
    if not is_volunteer(request.user):
        return HttpResponse("volunteers only", status=403, content_type="text/plain")
    if inc not in STANDARD_RANGE or variant >= len(RENDER_THICKNESS):
        return HttpResponse(
            f"inc must be within 45-90 deg and variant below {len(RENDER_THICKNESS)}", status=404, content_type="text/plain"
        )
    try:
        look = look_from_params(request.GET)
    except BadLook as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    return _png_response(standard_png(inc, variant, look))


@login_required
def standard_image_png(request: HttpRequest, pk: int) -> HttpResponse:
    """A real standard's image framed like the target."""
    if not is_volunteer(request.user):
        return HttpResponse("volunteers only", status=403, content_type="text/plain")
    std = get_object_or_404(Standard, pk=pk, image__isnull=False, image__is_public=True)
    return _png_response(framed_standard_image(std.image))


def _num(text: str | None):
    text = (text or "").strip()
    return text or None


@login_required
@require_POST
def submit_vote(request: HttpRequest) -> HttpResponse:
    post = request.POST
    try:
        try:
            pgc = int(post.get("pgc", ""))
        except ValueError:
            raise InvalidVote("the form names no galaxy") from None
        token, checkout = read_ticket(post.get("ticket", ""), pgc)
        face_on = post.get("face_on") == "1"
        flags = [f for f in GIZ_FLAGS if post.get(f) in ("1", "on")]
        if face_on and "face_on" not in flags:
            flags.append("face_on")
        vote = record_vote(
            request.user,
            pgc,
            None if face_on else _num(post.get("inc")),
            rejected=post.get("rejected") == "1",
            std1=_num(post.get("std1")),
            std2=_num(post.get("std2")),
            flags=flags,
            note=post.get("note", ""),
            client_token=token,
            checkout_time=checkout,
            source=InclinationVote.Source.WEB,
        )
    except VoteError as exc:
        messages.error(request, exc.message)
        return redirect("zoo:vote")
    what = "face-on" if vote.face_on else ("rejected" if vote.rejected else f"{vote.inc:.1f} deg")
    messages.success(request, f"Vote on PGC {vote.galaxy_id} recorded: {what}. Thank you!")
    return redirect("zoo:vote")


def leaderboard_page(request: HttpRequest) -> HttpResponse:
    rows = leaderboard()
    chart = {"names": [r["name"] for r in rows[:30]], "votes": [r["votes"] for r in rows[:30]]}
    return render(request, "zoo/leaderboard.html", {"rows": rows, "chart": chart})


@login_required
@require_POST
def revote(request: HttpRequest, pgc: int) -> HttpResponse:
    try:
        rnd = open_revote(pgc, request.user, reason=request.POST.get("reason", ""))
    except VoteError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"PGC {pgc} is open for voting again (round {rnd.round}).")
    return redirect_to_next(request, reverse("catalog:galaxy-detail", kwargs={"pgc": pgc}))


@login_required
@require_POST
def override(request: HttpRequest, pgc: int) -> HttpResponse:
    post = request.POST
    try:
        o = override_consensus(pgc, request.user, post.get("flag", ""), post.get("inc"), post.get("inc_e"), post.get("reason", ""))
    except VoteError as exc:
        messages.error(request, exc.message)
    else:
        what = f"{o.inc:.1f} deg" if o.inc is not None else o.get_flag_display()
        messages.success(request, f"PGC {pgc}: curator value set ({what}); it wins over the volunteers' consensus.")
    return redirect("catalog:galaxy-detail", pgc=pgc)
