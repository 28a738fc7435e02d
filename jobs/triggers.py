"""Automatic triggers: new rows queue work, collected into batches.

An app registers a *collector kind* with the steps it queues (``register_collector``) and, in
its signal receivers, adds the ids of new rows to the collector (``collect_quietly``): one queued
Job per kind whose params hold the ids gathered so far. The catalog collects new images
(``collect_images``: one batch job per function of ``GALCAT_IMAGE_PIPELINE``), the zoo new votes
(``collect_votes``: one ``GALCAT_CONSENSUS_TASK`` run). A scheduled task (``flush_due``, every
minute) turns each collector whose last addition is ``GALCAT_TRIGGER_DEBOUNCE`` s old (or that is
``GALCAT_TRIGGER_MAX_WAIT`` s old) into those batch jobs. So an import of 10,000 images queues a
few hundred batch tasks, not 10,000, and a burst of votes queues one consensus run.

The schedules (flush, nightly recomputation, result pruning, lost-job sweep) are created or
updated after every ``migrate`` (``ensure_schedules``).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django.utils import timezone
from django.utils.module_loading import import_string

from jobs.conf import conf
from jobs.models import Job

logger = logging.getLogger("galcat.triggers")

# A step of a flushed collector: (dotted path of the batch function, batch size, job kind).
Step = tuple[str, int, str]
# Collector kind -> fn(ids) -> the steps to queue for those ids; filled by register_collector.
_COLLECTORS: dict[str, Callable[[list[int]], list[Step]]] = {}


def register_collector(kind: str, steps: Callable[[list[int]], list[Step]]) -> None:
    """Declare a collector kind (a Job kind) and the batch jobs its ids become when flushed."""
    _COLLECTORS[kind] = steps


def collect(kind: str, ids) -> Job:
    """Add ids to the open collector of `kind` (creating it); returns the collector."""
    ids = sorted({int(i) for i in ids})
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cur:  # one collector per kind, even with concurrent senders
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(kind.encode())])
        job = Job.objects.select_for_update().filter(kind=kind, status=Job.Status.QUEUED).order_by("pk").first()
        if job is None:
            job = Job.objects.create(kind=kind, params={"ids": [], "first": now.isoformat()}, message="collecting")
        merged = sorted(set(job.params.get("ids", [])) | set(ids))
        job.params["ids"] = merged
        job.params["last"] = now.isoformat()
        job.total = len(merged)
        job.message = f"collecting: {len(merged)} ids, flushed {conf.TRIGGER_DEBOUNCE:.0f} s after the last"
        job.save(update_fields=["params", "total", "message"])
    return job


def collect_quietly(kind: str, ids) -> None:
    """collect() for signal receivers, which never break the sender (an import): a failure is
    logged, the ids stay unqueued until the nightly recomputation finds them stale."""
    if not ids:
        return
    try:
        with transaction.atomic():
            collect(kind, ids)
    except Exception:
        logger.exception("could not collect %s ids for %s", len(ids), kind)


def _due(job: Job, now: datetime) -> bool:
    last = datetime.fromisoformat(job.params.get("last", job.created.isoformat()))
    first = datetime.fromisoformat(job.params.get("first", job.created.isoformat()))
    return (now - last).total_seconds() >= conf.TRIGGER_DEBOUNCE or (now - first).total_seconds() >= conf.TRIGGER_MAX_WAIT


def flush(job_id: int, *, force: bool = False) -> list[int]:
    """Turn one collector into batch jobs; returns their ids ([] when not due or already taken)."""
    from jobs.tasks import _cluster_retry, queue_for_task, run_batched

    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=Job.Status.QUEUED).first()
        if job is None or not (force or _due(job, now)):
            return []
        ids = job.params.get("ids", [])
        steps = _COLLECTORS[job.kind](ids) if job.kind in _COLLECTORS else []
        children, skipped = [], []
        for path, size, kind in steps:
            try:
                import_string(path)
            except ImportError as exc:
                skipped.append(f"{path}: {exc}")
                continue
            queue = queue_for_task(path)
            timeout = min(int(conf.PIPELINE_TIMEOUT), _cluster_retry(queue) - 1)
            child = run_batched(kind, path, ids, batch_size=size, queue=queue, params={"trigger": job.pk}, timeout=timeout)
            children.append(child.pk)
        job.status, job.started, job.finished, job.done = Job.Status.SUCCEEDED, now, timezone.now(), len(ids)
        job.result = {"jobs": children, "skipped": skipped}
        job.message = f"{len(ids)} ids queued as jobs {children}" + (f"; skipped {len(skipped)} unavailable steps" if skipped else "")
        job.log_tail = "\n".join(skipped)
        job.save()
    return children


def flush_due(*, force: bool = False) -> dict:
    """Scheduled task: flush every collector that is due."""
    out = {}
    for pk in Job.objects.filter(kind__in=list(_COLLECTORS), status=Job.Status.QUEUED).values_list("pk", flat=True):
        children = flush(pk, force=force)
        if children:
            out[pk] = children
    return out


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------
def _next_daily(hour: int, minute: int = 0) -> datetime:
    now = timezone.now()  # UTC (USE_TZ)
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def schedule_specs() -> list[dict]:
    """The site's recurring tasks (name, func, type, minutes, first run)."""
    from django_q.models import Schedule

    now = timezone.now()
    return [
        {
            "name": "galcat: flush triggers",
            "func": "jobs.triggers.flush_due",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "next_run": now,
        },
        {
            "name": "galcat: mark lost jobs",
            "func": "jobs.tasks.mark_lost",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "next_run": now,
        },
        {
            "name": "galcat: nightly recompute",
            "func": "jobs.tasks.nightly",
            "schedule_type": Schedule.DAILY,
            "next_run": _next_daily(conf.NIGHTLY_HOUR),
        },
        {
            "name": "galcat: prune task results",
            "func": "jobs.tasks.prune_results",
            "schedule_type": Schedule.DAILY,
            "next_run": _next_daily(conf.NIGHTLY_HOUR, 45),
        },
    ]


def ensure_schedules() -> list[str]:
    """Create the schedules that are missing and fix changed ones (keeping their next run)."""
    from django_q.models import Schedule

    names = []
    for spec in schedule_specs():
        spec = dict(spec)
        name = spec.pop("name")
        next_run = spec.pop("next_run")
        sched = Schedule.objects.filter(name=name).first()
        if sched is None:
            Schedule.objects.create(name=name, next_run=next_run, repeats=-1, cluster="cpu", **spec)
        else:
            changed = {k: v for k, v in spec.items() if getattr(sched, k) != v}
            if changed or sched.cluster != "cpu":
                Schedule.objects.filter(pk=sched.pk).update(cluster="cpu", **changed)
        names.append(name)
    return names


@receiver(post_migrate, dispatch_uid="galcat.triggers.schedules")
def _schedules_after_migrate(sender, app_config=None, using="default", **kwargs) -> None:
    if app_config is None or app_config.label != "jobs":
        return
    from django.db import DatabaseError

    try:
        ensure_schedules()
    except DatabaseError:  # django_q's tables not migrated yet (a partial migrate)
        logger.warning("schedules not created: django_q tables missing")
