"""Pages of the catalog's reading side: home, browse/search, galaxy, releases, downloads,
cross-match and the IVOA cone search. Views parse input, call one function, render."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import EmptyPage
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from catalog.columns import (
    COLUMNS,
    DEFAULT_LIST_COLUMNS,
    GROUP_TITLES,
    all_columns,
    derived_by_name,
    resolve_columns,
    rows_by_keys,
    with_columns,
)
from catalog.cone import ConeError, NearestFirstPaginator, cone_count, crossmatch, galaxies_in_cone
from catalog.conf import conf
from catalog.exports import FORMATS, ExportError, export_response
from catalog.exports.source import DISTANCE
from catalog.filters import GalaxyFilter
from catalog.forms import ImageUploadForm
from catalog.models import Galaxy, Release, SkyCell
from catalog.releases import release_provenance, visible_releases
from catalog.scs import SCSError, parse_scs, scs_error, scs_stream
from catalog.search import near_matches
from catalog.selectors import catalog_counts, galaxy_with_related, located_count, recent_jobs
from catalog.sky import HEALPIX_DEPTH, SKY_CELL_DEPTH
from core.paginator import CountedPaginator
from core.roles import is_member

PER_PAGE = 50
MAX_PER_PAGE = 500
SKYMAP_DEPTH = 4  # 3072 cells of about 3.7 deg: a light map at any catalog size
NEIGHBOUR_RADIUS_ARCMIN = 30.0
NEIGHBOUR_LIMIT = 20
CROSSMATCH_MAX_ROWS = 5000
CROSSMATCH_MAX_RADIUS_ARCSEC = 3600.0


def home(request: HttpRequest) -> HttpResponse:
    releases = visible_releases(request.user)[:5]
    return render(request, "catalog/home.html", {"counts": catalog_counts(), "jobs": recent_jobs(request.user), "releases": releases})


def sky_counts(depth: int = SKYMAP_DEPTH) -> dict:
    """Galaxy counts per HEALPix cell at `depth` (centres in deg): sums of the sky cell counts
    (catalog.models.SkyCell) at depths up to SKY_CELL_DEPTH, else from the depth-29 index."""
    # The key carries the located count (located_count) and the highest pgc (from its index), so
    # the map follows imports (and tests); moved positions show within the cache's 5 minutes.
    with connection.cursor() as cur:
        cur.execute("SELECT max(pgc) FROM catalog_galaxy")
        n, top = located_count(), cur.fetchone()[0]
    key = f"galcat:skymap:{depth}:{n}:{top}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    import astropy.units as u
    import numpy as np
    from cdshealpix.nested import healpix_to_lonlat

    if depth <= SKY_CELL_DEPTH:
        sql = (
            f"SELECT cell >> {2 * (SKY_CELL_DEPTH - depth)} AS c, sum(galaxies) FROM {SkyCell._meta.db_table} "
            "GROUP BY 1 HAVING sum(galaxies) > 0 ORDER BY 1"
        )
    else:
        sql = f"SELECT healpix >> {2 * (HEALPIX_DEPTH - depth)} AS c, count(*) FROM catalog_galaxy WHERE healpix IS NOT NULL GROUP BY 1 ORDER BY 1"
    with connection.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    if rows:
        cells = np.array([r[0] for r in rows], dtype=np.uint64)
        lon, lat = healpix_to_lonlat(cells, depth)
        ra = np.round(lon.to_value(u.deg), 3).tolist()
        dec = np.round(lat.to_value(u.deg), 3).tolist()
    else:
        ra, dec = [], []
    data = {"depth": depth, "ra": ra, "dec": dec, "count": [int(r[1]) for r in rows]}
    cache.set(key, data, 300)
    return data


@require_GET
def sky_map_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(sky_counts())


# ---------------------------------------------------------------------------------------------
# Browse and search
# ---------------------------------------------------------------------------------------------
def _bad_request(request: HttpRequest, message: str, status: int = 400) -> HttpResponse:
    return render(request, "catalog/error.html", {"message": message}, status=status)


def _list_columns(request: HttpRequest) -> list:
    names = request.GET.getlist("col") or request.GET.get("columns") or None
    return resolve_columns(names, default=DEFAULT_LIST_COLUMNS)


def _filtered(request: HttpRequest) -> GalaxyFilter:
    return GalaxyFilter(request.GET or None, queryset=Galaxy.objects.all())


def _query_string(request: HttpRequest, drop: tuple[str, ...] = (), **extra) -> str:
    params = [(k, v) for k in request.GET for v in request.GET.getlist(k) if k not in drop and k not in extra and v != ""]
    params += [(k, v) for k, v in extra.items() if v not in (None, "")]
    return urlencode(params)


def galaxy_list(request: HttpRequest) -> HttpResponse:
    fs = _filtered(request)
    try:
        columns = _list_columns(request)
    except ValueError as exc:
        return _bad_request(request, f"Columns: {exc}")
    if fs.is_bound and not fs.is_valid():
        return render(request, "catalog/galaxy_list.html", _list_context(request, fs, columns, None, []), status=400)
    qs = with_columns(fs.qs, columns)
    if fs.name_match is not None and set(request.GET) <= {"q"}:
        return redirect("catalog:galaxy-detail", pgc=fs.name_match.pk)
    try:
        per_page = min(MAX_PER_PAGE, max(1, int(request.GET.get("per_page", PER_PAGE))))
    except ValueError:
        return _bad_request(request, f"per_page={request.GET.get('per_page')!r} is not a whole number")
    ordering = request.GET.get("ordering", "")
    keyset_mode = fs.cone is None and ordering in ("", "pgc") and "page" not in request.GET
    show = columns + ([DISTANCE] if fs.cone is not None else [])
    # Rows as dicts of the shown columns only: model instances of the 143-column galaxy cost
    # about a third of the page's CPU.
    qs = qs.values(*{"pgc", *(c.name for c in columns), *(["distance_deg"] if fs.cone is not None else [])})
    if keyset_mode:
        try:
            objects, nav = _keyset_page(request, qs, per_page)
        except ValueError as exc:
            return _bad_request(request, str(exc))
        count, page = located_count() if fs.unfiltered() else qs.count(), None
    else:
        raw_page = request.GET.get("page", "1")
        try:
            number = int(raw_page)
            if number < 1:
                raise ValueError
        except ValueError:
            return _bad_request(request, f"page={raw_page!r} is not a page number (1, 2, ...)")
        by_keys = ordering.lstrip("-") in derived_by_name()  # see rows_by_keys
        if fs.cone is not None and ordering in ("", "distance"):  # nearest first: see NearestFirstPaginator
            cone = (fs.cone.ra, fs.cone.dec, fs.cone.radius_deg)
            paginator = NearestFirstPaginator(qs, per_page, *cone, count=cone_count(*cone) if fs.only_cone() else None)
        else:
            rows = qs.values_list("pk", flat=True) if by_keys else qs
            paginator = CountedPaginator(rows, per_page, located_count() if fs.unfiltered() else None)
        try:
            page = paginator.page(number)
        except EmptyPage:
            if number == 1:
                page = paginator.page(1) if paginator.count else None
            else:
                return _bad_request(request, f"page {number} is beyond the last page ({paginator.num_pages}) of these results", 404)
        objects = (rows_by_keys(qs, page.object_list) if by_keys else list(page.object_list)) if page else []
        nav, count = None, paginator.count
    rows = [[(c, g["distance_deg" if c is DISTANCE else c.name]) for c in show] for g in objects]
    context = _list_context(request, fs, show, page, rows)
    context.update({"count": count, "keyset": nav})
    return render(request, "catalog/galaxy_list.html", context)


def _keyset_page(request: HttpRequest, qs, per_page: int) -> tuple[list, dict]:
    """One page of a pgc-ordered list by pgc bounds (after=, before=, last=1): an index range
    scan of the primary key, as fast on the last page of a million rows as on the first."""

    def bound(name: str) -> int | None:
        raw = request.GET.get(name)
        if raw in (None, ""):
            return None
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a PGC number") from None

    after, before = bound("after"), bound("before")
    qs = qs.order_by("pk")
    # One row past the page says whether there is more in the direction read; the other
    # direction needs a query only when the page does not start at an end.
    last = bool(request.GET.get("last"))
    if last or before is not None:
        rows = list((qs if last else qs.filter(pk__lt=before)).order_by("-pk")[: per_page + 1])
        objects = rows[:per_page][::-1]
        has_prev = len(rows) > per_page
        has_next = bool(objects) and not last and qs.filter(pk__gt=objects[-1]["pgc"]).exists()
    else:
        rows = list((qs.filter(pk__gt=after) if after is not None else qs)[: per_page + 1])
        objects = rows[:per_page]
        has_next = len(rows) > per_page
        has_prev = bool(objects) and after is not None and qs.filter(pk__lt=objects[0]["pgc"]).exists()
    base = _query_string(request, drop=("after", "before", "last", "page"))
    join = f"?{base}&" if base else "?"
    nav = {
        "first": f"?{base}" if has_prev else None,
        "prev": f"{join}before={objects[0]['pgc']}" if has_prev else None,
        "next": f"{join}after={objects[-1]['pgc']}" if has_next else None,
        "last": f"{join}last=1" if has_next else None,
        "span": (objects[0]["pgc"], objects[-1]["pgc"]) if objects else None,
    }
    return objects, nav


def _list_context(request, fs, columns, page, rows) -> dict:
    ordering = request.GET.get("ordering", "")
    sort_links = []
    for c in columns:
        key = "distance" if c is DISTANCE else c.name
        new = f"-{key}" if ordering == key else key
        arrow = "▲" if ordering == key else ("▼" if ordering == f"-{key}" else "")
        sort_links.append((c, "?" + _query_string(request, drop=("page", "after", "before", "last"), ordering=new), arrow))
    chosen = {c.name for c in columns}
    downloads = [
        (
            fmt,
            reverse("catalog:galaxy-download", kwargs={"fmt": fmt})
            + "?"
            + _query_string(request, drop=("page", "per_page", "after", "before", "last")),
        )
        for fmt in FORMATS
    ]
    return {
        "filter": fs,
        "form": fs.form,
        "page": page,
        "rows": rows,
        "columns": columns,
        "sort_links": sort_links,
        "all_columns": [(c, c.name in chosen) for c in all_columns()],
        "downloads": downloads,
        "cone": fs.cone,
        "name_query": getattr(fs, "_name_query", None),
        "near_matches": near_matches(fs._name_query) if getattr(fs, "_name_query", None) and fs.name_match is None else [],
        "page_query": _query_string(request, drop=("page",)),
        "default_columns": ",".join(DEFAULT_LIST_COLUMNS),
        "unlocated": 0 if request.GET.get("include_unlocated") == "true" else Galaxy.objects.awaiting_position().count(),
        "errors": fs.error_text() if fs.is_bound and fs.form.errors else "",
    }


@require_GET
def galaxy_download(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in FORMATS:
        raise Http404(f"unknown format {fmt!r}")
    fs = _filtered(request)
    if fs.is_bound and not fs.is_valid():
        return HttpResponseBadRequest(fs.error_text(), content_type="text/plain; charset=utf-8")
    query = _query_string(request, drop=("columns", "col"))
    columns = request.GET.getlist("col") or request.GET.get("columns") or None
    list_path = reverse("catalog:galaxy-list")
    provenance = {
        "site": conf.SITE_NAME,
        "query": f"{list_path}?{query}" if query else f"{list_path} (all galaxies with positions)",
    }
    try:
        return export_response(fs.qs, fmt, columns, provenance, filename="galaxies")
    except ExportError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")


def galaxy_detail(request: HttpRequest, pgc: int) -> HttpResponse:
    try:
        galaxy = galaxy_with_related(pgc, request.user)
    except Galaxy.DoesNotExist:
        raise Http404(f"PGC {pgc} is not in the catalog") from None
    groups: dict[str, list] = {}
    for col in COLUMNS:
        groups.setdefault(GROUP_TITLES.get(col.group, col.group), []).append((col, getattr(galaxy, col.name)))
    try:
        radius_arcmin = float(request.GET.get("radius", NEIGHBOUR_RADIUS_ARCMIN))
        if not 0 < radius_arcmin <= 600:
            raise ValueError
    except ValueError:
        return _bad_request(request, f"radius={request.GET.get('radius')!r} must be a number of arcmin in (0, 600]")
    neighbours = []
    if galaxy.has_position:
        neighbours = list(galaxies_in_cone(galaxy.ra, galaxy.dec, radius_arcmin / 60).exclude(pk=galaxy.pk)[:NEIGHBOUR_LIMIT])
        for n in neighbours:
            n.distance_arcmin = n.distance_deg * 60
    return render(
        request,
        "catalog/galaxy_detail.html",
        {
            "galaxy": galaxy,
            "groups": groups,
            "panels": conf.GALAXY_PANELS,
            "neighbours": neighbours,
            "radius_arcmin": radius_arcmin,
            "radius_deg": radius_arcmin / 60,
        },
    )


# ---------------------------------------------------------------------------------------------
# Uploads by members
# ---------------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def upload_images(request: HttpRequest) -> HttpResponse:
    if not is_member(request.user):
        return _bad_request(request, "Uploading images needs a collaboration member account.", 403)
    form = ImageUploadForm(request.POST or None, request.FILES or None, initial={"pgc": request.GET.get("pgc")})
    results = form.store(request.user) if request.method == "POST" and form.is_valid() else []
    status = 400 if request.method == "POST" and (not form.is_valid() or any(r["error"] for r in results)) else 200
    return render(request, "catalog/upload.html", {"form": form, "results": results}, status=status)


# ---------------------------------------------------------------------------------------------
# Cross-match
# ---------------------------------------------------------------------------------------------
def _read_positions(upload) -> list[tuple[str, float, float]]:
    text = upload.read(5 * 1024 * 1024 + 1)
    if len(text) > 5 * 1024 * 1024:
        raise ValueError("the file is larger than 5 MB")
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    lines = [ln for ln in decoded.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError("the file has no rows")
    reader = csv.DictReader(lines)
    fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
    if "ra" not in fields or "dec" not in fields:
        raise ValueError(f"the header must name columns ra and dec (in degrees); found {', '.join(fields) or 'none'}")
    id_field = fields.get("id") or fields.get("name")
    out = []
    for i, row in enumerate(reader, start=2):
        if i - 1 > CROSSMATCH_MAX_ROWS:
            raise ValueError(f"more than {CROSSMATCH_MAX_ROWS} positions; split the file")
        try:
            ra, dec = float(row[fields["ra"]]), float(row[fields["dec"]])
        except (TypeError, ValueError):
            raise ValueError(f"line {i}: ra/dec {row[fields['ra']]!r}, {row[fields['dec']]!r} are not numbers of degrees") from None
        out.append((row[id_field] if id_field else str(i - 1), ra, dec))
    return out


@require_http_methods(["GET", "POST"])
def crossmatch_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "catalog/crossmatch.html", {"radius": 10})
    raw_radius = request.POST.get("radius", "10")
    try:
        radius_arcsec = float(raw_radius)
        if not 0 < radius_arcsec <= CROSSMATCH_MAX_RADIUS_ARCSEC:
            raise ValueError
    except ValueError:
        msg = f"radius {raw_radius!r} must be a number of arcsec in (0, {CROSSMATCH_MAX_RADIUS_ARCSEC:g}]"
        return render(request, "catalog/crossmatch.html", {"error": msg, "radius": raw_radius}, status=400)
    upload = request.FILES.get("file")
    if upload is None:
        return render(request, "catalog/crossmatch.html", {"error": "choose a CSV file of positions", "radius": raw_radius}, status=400)
    try:
        positions = _read_positions(upload)
        matches = crossmatch([(ra, dec) for _, ra, dec in positions], radius_arcsec / 3600, Galaxy.objects.located())
    except (ValueError, ConeError) as exc:
        return render(request, "catalog/crossmatch.html", {"error": str(exc), "radius": raw_radius}, status=400)
    out = io.StringIO()
    out.write(f"# cross-match of {len(positions)} positions within {radius_arcsec:g} arcsec; nearest galaxy per position\n")
    writer = csv.writer(out)
    writer.writerow(["id", "ra", "dec", "pgc", "pgc_ra", "pgc_dec", "distance_arcsec"])
    for (ident, ra, dec), m in zip(positions, matches, strict=True):
        g = m.galaxy
        writer.writerow(
            [ident, repr(ra), repr(dec)]
            + ([g.pgc, repr(g.ra), repr(g.dec), f"{m.distance_deg * 3600:.4f}"] if g is not None else ["", "", "", ""])
        )
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="crossmatch.csv"'
    return response


# ---------------------------------------------------------------------------------------------
# Releases
# ---------------------------------------------------------------------------------------------
def _release_or_404(request: HttpRequest, slug: str) -> Release:
    release = visible_releases(request.user).filter(slug=slug).first()
    if release is None:
        raise Http404(f"no release {slug!r} that you may see")
    return release


def release_list(request: HttpRequest) -> HttpResponse:
    return render(request, "catalog/release_list.html", {"releases": visible_releases(request.user), "formats": FORMATS})


def release_detail(request: HttpRequest, slug: str) -> HttpResponse:
    release = _release_or_404(request, slug)
    known = {c.name: c for c in all_columns()}
    columns = [known[n] for n in release.columns if n in known]
    sample = list(release.rows.order_by("galaxy_id")[:20])
    sample_rows = [[(c, r.galaxy_id if c.name == "pgc" else r.values.get(c.name)) for c in columns[:12]] for r in sample]
    return render(
        request,
        "catalog/release_detail.html",
        {"release": release, "columns": columns, "sample_columns": columns[:12], "sample_rows": sample_rows, "formats": FORMATS},
    )


@require_GET
def release_download(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    if fmt not in FORMATS:
        raise Http404(f"unknown format {fmt!r}")
    release = _release_or_404(request, slug)
    columns = request.GET.getlist("col") or request.GET.get("columns") or None
    try:
        return export_response(release, fmt, columns, release_provenance(release), filename=release.slug)
    except ExportError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")


# ---------------------------------------------------------------------------------------------
# IVOA Simple Cone Search
# ---------------------------------------------------------------------------------------------
@require_GET
def scs(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    release = None
    if slug is not None:
        release = visible_releases(request.user).filter(slug=slug, status=Release.Status.PUBLISHED).first()
        if release is None:
            return HttpResponse(scs_error(f"no published release {slug!r}"), content_type="text/xml", status=404)
    try:
        req = parse_scs(request.GET)
    except SCSError as exc:
        return HttpResponse(scs_error(str(exc)), content_type="text/xml", status=400)
    return StreamingHttpResponse(scs_stream(req, release), content_type="text/xml")
