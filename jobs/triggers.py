"""Automatic triggers: new rows queue work, collected into batches.

An app registers a *collector kind* with the steps it queues (``register_collector``) and, in
its signal receivers, adds the ids of new rows to the collector (``collect_quietly``): one
TriggerItem row per id (an INSERT, no lock shared between senders, so 50 volunteers voting at
once do not queue behind each other) and one queued Job per kind, the collector, that shows the
collection on the jobs page and gets the ids when it is flushed. The catalog collects new images
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
from django.db.models import Max, Min
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django.utils import timezone
from django.utils.module_loading import import_string

from jobs.conf import conf
from jobs.models import Job, TriggerItem

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
    items = sorted({int(i) for i in ids})
    with connection.cursor() as cur:  # one statement: atomic without a transaction of its own
        cur.execute(
            f"INSERT INTO {TriggerItem._meta.db_table} (kind, item, created) SELECT %s, unnest(%s::bigint[]), %s",
            [kind, items, timezone.now()],
        )
    return open_collector(kind)


def open_collector(kind: str) -> Job:
    """The queued collector Job of `kind`, created when there is none (one per kind, even with
    concurrent senders: the creation runs under an advisory lock of the kind)."""
    job = Job.objects.filter(kind=kind, status=Job.Status.QUEUED).order_by("pk").first()
    if job is not None:
        return job
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(kind.encode())])
        job = Job.objects.filter(kind=kind, status=Job.Status.QUEUED).order_by("pk").first()
        if job is None:
            message = f"collecting new ids, flushed {conf.TRIGGER_DEBOUNCE:.0f} s after the last"
            job = Job.objects.create(kind=kind, params={"first": timezone.now().isoformat()}, message=message)
    return job


def collect_quietly(kind: str, ids) -> None:
    """collect() for signal receivers, which never break the sender (an import): a failure is
    logged, the ids stay unqueued until the nightly recomputation finds them stale."""
    if not ids:
        return
    try:
        if connection.in_atomic_block:  # a savepoint keeps the sender's transaction usable
            with transaction.atomic():
                collect(kind, ids)
        else:  # autocommit: each statement of collect() stands alone
            collect(kind, ids)
    except Exception:
        logger.exception("could not collect %s ids for %s", len(ids), kind)


def _due(first: datetime, last: datetime, now: datetime) -> bool:
    return (now - last).total_seconds() >= conf.TRIGGER_DEBOUNCE or (now - first).total_seconds() >= conf.TRIGGER_MAX_WAIT


def flush(job_id: int, *, force: bool = False) -> list[int]:
    """Turn one collector and the ids collected for its kind into batch jobs; returns their ids
    ([] when not due, nothing was collected, or the collector was already flushed).

    The ids are taken with one DELETE ... RETURNING in the transaction that queues their jobs:
    each id is queued once; ids added meanwhile stay for the next flush.
    """
    from jobs.tasks import _cluster_retry, queue_for_task, run_batched

    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=Job.Status.QUEUED).first()
        if job is None:
            return []
        span = TriggerItem.objects.filter(kind=job.kind).aggregate(first=Min("created"), last=Max("created"))
        if span["last"] is None or not (force or _due(span["first"], span["last"], now)):
            return []
        with connection.cursor() as cur:
            cur.execute(f"DELETE FROM {TriggerItem._meta.db_table} WHERE kind = %s RETURNING item", [job.kind])
            ids = sorted({row[0] for row in cur.fetchall()})
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
        job.params = {**job.params, "ids": ids, "first": span["first"].isoformat(), "last": span["last"].isoformat()}
        job.status, job.started, job.finished, job.done, job.total = Job.Status.SUCCEEDED, now, timezone.now(), len(ids), len(ids)
        job.result = {"jobs": children, "skipped": skipped}
        job.message = f"{len(ids)} ids queued as jobs {children}" + (f"; skipped {len(skipped)} unavailable steps" if skipped else "")
        job.log_tail = "\n".join(skipped)
        job.save()
    return children


def flush_due(*, force: bool = False) -> dict:
    """Scheduled task: flush every collector that is due."""
    out = {}
    for kind in TriggerItem.objects.filter(kind__in=list(_COLLECTORS)).values_list("kind", flat=True).distinct():
        open_collector(kind)  # ids added while their collector was being flushed
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
