from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from core.roles import is_curator
from ml.models import OutlierVerdict
from ml.services import comparison_rows


def compare(request: HttpRequest) -> HttpResponse:
    """Scatter plots (plotly) of CNN vs consensus vs axis-ratio vs published inclinations."""
    data = comparison_rows()
    return render(request, "ml/compare.html", {"data": data, "n": len(data["pgc"])})


def latent_map(request: HttpRequest) -> HttpResponse:
    """The latent map: the 2-D projection of the embeddings of the images the viewer may see, as a
    plotly scatter coloured by a chosen column (?colour=), thumbnails on hover, click opens the galaxy."""
    from ml.latent_services import LatentUnavailable, map_colour_columns, map_points

    colour = request.GET.get("colour") or "outlier_score"
    columns = map_colour_columns()
    try:
        data = map_points(request.user, colour)
    except LatentUnavailable as exc:
        return render(request, "ml/latent_map.html", {"unavailable": str(exc), "columns": columns, "colour": colour}, status=503)
    except ValueError as exc:
        return render(request, "ml/latent_map.html", {"error": str(exc), "columns": columns, "colour": colour}, status=400)
    galaxy_url = reverse("catalog:galaxy-detail", args=[0]).replace("/0/", "/{pgc}/")
    return render(
        request,
        "ml/latent_map.html",
        {
            "data": data,
            "columns": columns,
            "colour": colour,
            "galaxy_url": galaxy_url,
            "n": len(data["pgc"]),
            "curator": is_curator(request.user),
        },
    )


OUTLIERS_PER_PAGE = 30


def outliers(request: HttpRequest) -> HttpResponse:
    """Curators' review page: the most unusual images (highest outlier score first) with their
    newest verdict and a verdict form; ?unreviewed=1 hides the judged ones, ?page=N."""
    from ml.latent_services import LatentUnavailable
    from ml.latent_services import outliers as outlier_rows

    if not is_curator(request.user):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise PermissionDenied("the outlier review is for curators")
    unreviewed = request.GET.get("unreviewed") == "1"
    try:
        page = max(1, int(request.GET.get("page") or 1))
    except ValueError:
        page = 1
    try:
        out = outlier_rows(request.user, limit=OUTLIERS_PER_PAGE, offset=(page - 1) * OUTLIERS_PER_PAGE, unreviewed=unreviewed)
    except LatentUnavailable as exc:
        return render(request, "ml/outliers.html", {"unavailable": str(exc)}, status=503)
    pages = max(1, -(-out["total"] // OUTLIERS_PER_PAGE))
    return render(
        request,
        "ml/outliers.html",
        {
            **out,
            "unreviewed": unreviewed,
            "page": page,
            "pages": pages,
            "first_rank": (page - 1) * OUTLIERS_PER_PAGE,
            "verdicts": OutlierVerdict.Verdict.choices,
        },
    )


@require_POST
def outlier_verdict(request: HttpRequest) -> HttpResponse:
    """Store a curator's verdict from the review page's form, then back to the page."""
    from ml.latent_services import VerdictError, record_verdict

    if not request.user.is_authenticated:
        return redirect_to_login(reverse("ml:outliers"))
    try:
        image_id = int(request.POST.get("image", ""))
    except ValueError:
        return HttpResponseBadRequest("image must be an image id")
    try:
        record_verdict(image_id, request.POST.get("verdict", ""), request.user, request.POST.get("note", ""))
    except VerdictError as exc:
        if exc.status == 403:
            raise PermissionDenied(str(exc)) from None
        return HttpResponse(str(exc), status=exc.status, content_type="text/plain")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("ml:outliers")
    return redirect(f"{back}#image-{image_id}")
