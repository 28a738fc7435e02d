"""The jobs page: live progress bars (polling a small JSON endpoint), filters, cancel and retry."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from core.http import redirect_to_next
from jobs.models import Job
from jobs.services import JobError, cancel_job, job_progress, mark_lost_jobs, retry_job, visible_jobs

PAGE_SIZE = 50
MAX_IDS = 200


def filtered_jobs(request: HttpRequest):
    """Visible jobs with the page's filters (kind, status) applied; returns (queryset, filters)."""
    qs = visible_jobs(request.user)
    kind = request.GET.get("kind", "").strip()
    status = request.GET.get("status", "").strip()
    if kind:
        qs = qs.filter(kind=kind)
    if status in Job.Status.values:
        qs = qs.filter(status=status)
    elif status == "active":
        qs = qs.filter(status__in=Job.ACTIVE)
    return qs, {"kind": kind, "status": status}


@require_GET
def jobs_page(request: HttpRequest) -> HttpResponse:
    mark_lost_jobs()
    qs, filters = filtered_jobs(request)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    kinds = visible_jobs(request.user).order_by("kind").values_list("kind", flat=True).distinct()
    rows = [
        job_progress(j, request.user)
        | {"created_text": f"{j.created:%Y-%m-%d %H:%M:%S}", "finished_text": f"{j.finished:%Y-%m-%d %H:%M:%S}" if j.finished else ""}
        for j in page.object_list
    ]
    return render(
        request,
        "jobs/list.html",
        {
            "page": page,
            "rows": rows,
            "filters": filters,
            "kinds": list(kinds),
            "statuses": Job.Status.choices,
            "query": request.GET.urlencode(),
        },
    )


@require_GET
def job_page(request: HttpRequest, pk: int) -> HttpResponse:
    mark_lost_jobs()
    job = visible_jobs(request.user).filter(pk=pk).first()
    if job is None:
        raise Http404(f"no job {pk} that you may see")
    params = {k: v for k, v in (job.params or {}).items() if k != "items" and not k.startswith("_")}
    return render(request, "jobs/detail.html", {"job": job, "row": job_progress(job, request.user), "params": params})


@require_GET
def jobs_status(request: HttpRequest) -> JsonResponse:
    """Polling endpoint: ?ids=1,2,3 for given jobs, else the page's filters (kind, status, page)."""
    mark_lost_jobs()
    ids = request.GET.get("ids", "").strip()
    if ids:
        try:
            wanted = [int(x) for x in ids.split(",") if x.strip()][:MAX_IDS]
        except ValueError:
            return JsonResponse({"error": "ids must be comma-separated integers"}, status=400)
        jobs = list(visible_jobs(request.user).filter(pk__in=wanted))
    else:
        qs, _ = filtered_jobs(request)
        jobs = list(Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page")).object_list)
    rows = [job_progress(j, request.user) for j in jobs]
    return JsonResponse({"now": timezone.now().isoformat(), "active": sum(r["active"] for r in rows), "jobs": rows})


@require_GET
def job_status(request: HttpRequest, pk: int) -> JsonResponse:
    mark_lost_jobs()
    job = visible_jobs(request.user).filter(pk=pk).first()
    if job is None:
        return JsonResponse({"error": f"no job {pk} that you may see"}, status=404)
    return JsonResponse(job_progress(job, request.user))


def _act(request: HttpRequest, pk: int, action, verb: str) -> HttpResponse:
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        job = action(pk, request.user)
    except Job.DoesNotExist:
        if wants_json:
            return JsonResponse({"error": f"no job {pk}"}, status=404)
        raise Http404(f"no job {pk}") from None
    except PermissionDenied as exc:
        if wants_json:
            return JsonResponse({"error": str(exc)}, status=403)
        raise
    except JobError as exc:
        if wants_json:
            return JsonResponse({"error": str(exc)}, status=409)
        messages.error(request, str(exc))
    else:
        if wants_json:
            return JsonResponse(job_progress(job, request.user))
        messages.success(request, f"job {pk} {verb}: {job.message}")
    return redirect_to_next(request, reverse("jobs:list"))


@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, cancel_job, "cancel")


@require_POST
def job_retry(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, retry_job, "retry")
