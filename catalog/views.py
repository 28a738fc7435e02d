from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from catalog.columns import BY_NAME, COLUMNS, DEFAULT_LIST_COLUMNS, GROUP_TITLES
from catalog.models import Galaxy
from catalog.selectors import catalog_counts, galaxy_with_related, recent_jobs


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "catalog/home.html", {"counts": catalog_counts(), "jobs": recent_jobs()})


def galaxy_list(request: HttpRequest) -> HttpResponse:
    qs = Galaxy.objects.located().order_by("pgc")
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    columns = [BY_NAME[c] for c in DEFAULT_LIST_COLUMNS]
    rows = [[(c, getattr(g, c.name)) for c in columns] for g in page.object_list]
    return render(request, "catalog/galaxy_list.html", {"page": page, "columns": columns, "rows": rows})


def galaxy_detail(request: HttpRequest, pgc: int) -> HttpResponse:
    try:
        galaxy = galaxy_with_related(pgc)
    except Galaxy.DoesNotExist:
        raise Http404(f"PGC {pgc} is not in the catalog") from None
    groups: dict[str, list] = {}
    for col in COLUMNS:
        groups.setdefault(GROUP_TITLES.get(col.group, col.group), []).append((col, getattr(galaxy, col.name)))
    return render(
        request,
        "catalog/galaxy_detail.html",
        {"galaxy": galaxy, "groups": groups, "panels": settings.GALCAT_GALAXY_PANELS},
    )
