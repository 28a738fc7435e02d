"""Jobs: every long operation records its status and progress in a Job row.

Functions here are the one way to create jobs and report progress, for views, the API,
management commands and worker tasks alike.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from django.db.models import F
from django.utils import timezone

from catalog.models import Job

LOG_TAIL_LINES = 40


class JobCancelled(Exception):
    """Raised between batches when a job's owner asked to cancel it."""


def create_job(kind: str, params: dict | None = None, *, user=None, total: int = 0, queue: str = "cpu") -> Job:
    """A new queued job."""
    owner = user if getattr(user, "is_authenticated", False) else None
    return Job.objects.create(kind=kind, params=params or {}, created_by=owner, total=total, queue=queue)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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

    def advance(self, n: int = 1, message: str = "") -> None:
        self.done += n
        self._emit(message=message)

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

    def cancelled(self) -> bool:
        if self.job is None:
            return False
        return Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists()

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled(f"job {self.job.pk} was cancelled")

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
        yield reporter
    except BaseException as exc:
        reporter.fail(exc)
        raise
    else:
        job.refresh_from_db(fields=["status"])
        if job.status == Job.Status.RUNNING:
            reporter.finish()
