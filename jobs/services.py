"""Jobs: every long operation records its status and progress in a Job row.

Functions here are the one way to create jobs, report progress, cancel and retry them, for
views, the API, management commands and worker tasks alike. The worker side (batches run as
django-q2 tasks) lives in ``jobs.tasks``.

Liveness: a running job's worker writes ``heartbeat`` every ``GALCAT_JOB_HEARTBEAT`` seconds
(from a small thread, so a long batch without progress still counts as alive). A running job
whose heartbeat is older than ``GALCAT_JOB_LOST_AFTER`` seconds is shown as ``lost`` and can be
retried; a worker that comes back (the broker re-delivers its task) sets it running again.
Work whose worker died is queued again without anyone's help, within seconds of a worker's
replacement and at most a minute later otherwise (``jobs.tasks.recover_lost_work``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from core.roles import is_curator
from jobs.conf import conf
from jobs.models import Job

LOG_TAIL_LINES = 40
logger = logging.getLogger("galcat.jobs")

# Job.params keys the job machinery owns (how to run the job again).
RUNNER_KEY = "_runner"


class JobCancelled(Exception):
    """Raised between batches when a job's owner asked to cancel it."""


class JobError(ValueError):
    """A job operation that does not apply (e.g. retrying a job that is still running)."""


def create_job(kind: str, params: dict | None = None, *, user=None, total: int = 0, queue: str = "cpu") -> Job:
    """A new queued job."""
    owner = user if getattr(user, "is_authenticated", False) else None
    return Job.objects.create(kind=kind, params=params or {}, created_by=owner, total=total, queue=queue)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat_interval() -> float:
    """Seconds between heartbeats of a running job (GALCAT_JOB_HEARTBEAT)."""
    return float(conf.JOB_HEARTBEAT)


def lost_after() -> float:
    """Seconds without heartbeat after which a running job counts as lost (GALCAT_JOB_LOST_AFTER)."""
    return float(conf.JOB_LOST_AFTER)


class Heartbeat:
    """Touches a job's heartbeat from a thread with its own connection while a block runs.

    Skipped inside an atomic block (tests running tasks inline), where the thread could not see
    the uncommitted row and might wait on its lock.
    """

    def __init__(self, job_id: int | None, interval: float | None = None):
        self.job_id = job_id
        self.interval = heartbeat_interval() if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.job_id is not None and self.interval > 0 and transaction.get_autocommit():
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{self.job_id}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    with transaction.atomic():
                        with connection.cursor() as cur:
                            cur.execute("SET LOCAL lock_timeout = '2s'")
                        now = timezone.now()
                        Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(heartbeat=now)
                        # Marked lost while only slow: alive after all.
                        Job.objects.filter(pk=self.job_id, status=Job.Status.LOST).update(heartbeat=now, status=Job.Status.RUNNING)
                except DatabaseError as exc:  # a busy row or a blip: try again next beat
                    logger.debug("heartbeat of job %s skipped: %s", self.job_id, exc)
        finally:
            connection.close()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class JobReporter:
    """Writes progress of one job to its row, at most every `min_interval` seconds.

    With job=None it only forwards progress to `on_progress` (terminal progress bars).
    """

    def __init__(self, job: Job | None, *, on_progress: Callable[[int, int], None] | None = None, min_interval: float = 0.5):
        self.job = job
        self.on_progress = on_progress
        self.min_interval = min_interval
        self.done = job.done if job else 0
        self.total = job.total if job else 0
        self._last_write = 0.0
        self._log: list[str] = job.log_tail.splitlines() if job and job.log_tail else []

    def start(self, total: int | None = None, message: str = "") -> None:
        if total is not None:
            self.total = total
        if self.job is not None:
            now = timezone.now()
            Job.objects.filter(pk=self.job.pk).update(
                status=Job.Status.RUNNING,
                started=now,
                heartbeat=now,
                total=self.total,
                message=message[:500],
                attempts=F("attempts") + 1,
                worker=worker_name(),
            )
        self._emit(force=True)

    def set_total(self, total: int) -> None:
        self.total = total
        self._emit(force=True)

    def update(self, done: int, message: str = "") -> None:
        self.done = done
        self._emit(message=message)

    def progress(self, done: int, total: int) -> None:
        """A (done, total) callback, as the catalog's functions report progress."""
        self.total = total
        self.done = done
        self._emit()

    def log(self, line: str) -> None:
        self._log = (self._log + [line])[-LOG_TAIL_LINES:]
        self._emit(force=True)

    def _emit(self, message: str = "", force: bool = False) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
        if self.job is None:
            return
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval and self.done < self.total:
            return
        self._last_write = now
        fields: dict[str, Any] = {"done": self.done, "total": max(self.total, self.done), "heartbeat": timezone.now()}
        if message:
            fields["message"] = message[:500]
        if self._log:
            fields["log_tail"] = "\n".join(self._log)
        Job.objects.filter(pk=self.job.pk).update(**fields)

    def finish(self, result: dict | None = None, message: str = "done") -> None:
        self._emit(force=True)
        if self.job is not None:
            Job.objects.filter(pk=self.job.pk).update(
                status=Job.Status.SUCCEEDED, finished=timezone.now(), message=message[:500], result=result or {}
            )

    def fail(self, exc: BaseException) -> None:
        if self.job is None:
            return
        status = Job.Status.CANCELLED if isinstance(exc, JobCancelled) else Job.Status.FAILED
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        Job.objects.filter(pk=self.job.pk).update(
            status=status, finished=timezone.now(), error=text[:20000], message=text.splitlines()[0][:500] if text else ""
        )


@contextmanager
def tracked(kind: str, params: dict | None = None, *, user=None, total: int = 0, on_progress=None, job: Job | None = None):
    """Run a block as a job: yields a JobReporter; success or failure is recorded on the row."""
    job = job or create_job(kind, params, user=user, total=total)
    reporter = JobReporter(job, on_progress=on_progress)
    reporter.start(total or None)
    try:
        with Heartbeat(job.pk):
            yield reporter
    except BaseException as exc:
        reporter.fail(exc)
        raise
    else:
        job.refresh_from_db(fields=["status"])
        if job.status == Job.Status.RUNNING:
            reporter.finish()


# ---------------------------------------------------------------------------------------------
# Who sees and manages which jobs
# ---------------------------------------------------------------------------------------------
def visible_jobs(user) -> QuerySet[Job]:
    """Jobs a user may see: curators all; other signed-in users their own and the system's
    (jobs without an owner: triggers, schedules, terminal commands); anonymous users none."""
    qs = Job.objects.select_related("created_by")
    if is_curator(user):
        return qs
    if not getattr(user, "is_authenticated", False):
        return qs.none()
    return qs.filter(Q(created_by=user) | Q(created_by__isnull=True))


def can_manage(job: Job, user) -> bool:
    """Owners and curators may cancel or retry a job."""
    if is_curator(user):
        return True
    return bool(getattr(user, "is_authenticated", False) and job.created_by_id == user.pk)


def _check_manage(job: Job, user, system: bool) -> None:
    if not system and not can_manage(job, user):
        raise PermissionDenied(f"only the owner of job {job.pk} or a curator may change it")


def cancel_job(job_id: int | Job, user, *, system: bool = False) -> Job:
    """Ask a job to stop before its next batch; a job no worker holds is cancelled at once.

    `job_id` may be a Job. `system=True` is for trusted callers (the terminal command).
    Raises PermissionDenied,
    Job.DoesNotExist, or JobError when the job has already ended.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=getattr(job_id, "pk", job_id))
        _check_manage(job, user, system)
        if job.status not in (Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.LOST):
            raise JobError(f"job {job.pk} has already ended ({job.status})")
        job.cancel_requested = True
        fields = ["cancel_requested"]
        running = (job.result or {}).get("batches", {}).get("running") or {}
        if job.status in (Job.Status.QUEUED, Job.Status.LOST) or (is_batched(job) and not running):
            job.status = Job.Status.CANCELLED
            job.finished = timezone.now()
            job.message = "cancelled"
            fields += ["status", "finished", "message"]
        else:
            job.message = "cancel requested: stopping after the current batch"
            fields.append("message")
        job.save(update_fields=fields)
    return job


def retry_job(job_id: int | Job, user, *, system: bool = False) -> Job:
    """Run a failed, cancelled or lost job again; for batch jobs only the batches not done.

    Raises PermissionDenied, Job.DoesNotExist, or JobError when the job cannot be retried
    (still active and not lost, finished successfully, or started from a terminal).
    """
    from jobs import tasks

    job = Job.objects.get(pk=getattr(job_id, "pk", job_id))
    _check_manage(job, user, system)
    mark_lost_jobs()
    job.refresh_from_db()
    if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED, Job.Status.LOST):
        raise JobError(f"job {job.pk} is {job.status}: only failed, cancelled or lost jobs can be retried")
    runner = (job.params or {}).get(RUNNER_KEY)
    if runner not in tasks.RUNNERS:
        raise JobError(f"job {job.pk} ({job.kind}) was started outside the task queue: run its command again")
    return tasks.RUNNERS[runner](job)


def is_batched(job: Job) -> bool:
    return (job.params or {}).get(RUNNER_KEY) == "batched"


# ---------------------------------------------------------------------------------------------
# Liveness
# ---------------------------------------------------------------------------------------------
def mark_lost_jobs(now=None) -> int:
    """Mark running jobs whose heartbeat is stale as lost; returns how many.

    A batch job with no batch in a worker's hands is waiting in the queue, not lost.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=lost_after())
    stale = Job.objects.filter(status=Job.Status.RUNNING).filter(Q(heartbeat__lt=cutoff) | Q(heartbeat__isnull=True, started__lt=cutoff))
    count = 0
    for job in stale.only("pk", "params", "result", "heartbeat", "worker"):
        running = (job.result or {}).get("batches", {}).get("running") or {}
        if is_batched(job) and not running:
            continue
        # The workers that held its batches (job.worker is only the last one that started one).
        workers = ", ".join(sorted(set(running.values()))) if running else job.worker or "?"
        seen = job.heartbeat.isoformat(timespec="seconds") if job.heartbeat else "never"
        count += (
            Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING)
            .filter(Q(heartbeat__lt=cutoff) | Q(heartbeat__isnull=True))
            .update(status=Job.Status.LOST, message=f"worker {workers} lost: last heartbeat {seen}"[:500])
        )
    return count


def wait_for_job(
    job_id: int, *, on_progress: Callable[[int, int], None] | None = None, interval: float = 0.5, timeout: float | None = None
) -> Job:
    """Follow a queued job until it ends (or `timeout` s pass), feeding on_progress(done, total):
    terminal progress bars for commands that queue work (``ProgressBar`` is such a callback)."""
    start = time.monotonic()
    while True:
        mark_lost_jobs()
        job = Job.objects.get(pk=job_id)
        if on_progress is not None:
            on_progress(job.done, job.total)
        if job.status not in Job.ACTIVE or (timeout is not None and time.monotonic() - start > timeout):
            return job
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# What the jobs page and its polling endpoint show
# ---------------------------------------------------------------------------------------------
def job_progress(job: Job, user=None) -> dict[str, Any]:
    """A small JSON-able view of a job: status, progress and what the user may do with it."""
    percent = round(100.0 * job.done / job.total, 1) if job.total else (100.0 if job.status == Job.Status.SUCCEEDED else None)
    manage = user is not None and can_manage(job, user)
    retryable = job.status in (Job.Status.FAILED, Job.Status.CANCELLED, Job.Status.LOST) and (job.params or {}).get(RUNNER_KEY)
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "status_label": job.get_status_display(),
        "queue": job.queue,
        "done": job.done,
        "total": job.total,
        "percent": percent,
        "message": job.message,
        "error": job.error[-2000:],
        "log_tail": job.log_tail,
        "attempts": job.attempts,
        "worker": job.worker,
        "cancel_requested": job.cancel_requested,
        "owner": job.created_by.username if job.created_by_id else None,
        "created": job.created.isoformat() if job.created else None,
        "started": job.started.isoformat() if job.started else None,
        "finished": job.finished.isoformat() if job.finished else None,
        "heartbeat": job.heartbeat.isoformat() if job.heartbeat else None,
        "active": job.status in Job.ACTIVE,
        "can_cancel": bool(manage and job.status in (Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.LOST)),
        "can_retry": bool(manage and retryable),
    }
