"""Worker tasks: the generic batch runner and the catalog's own scheduled tasks.

A batch job is one Job row whose items (ids) are split into batches; each batch is one
django-q2 task (``run_batch``). A batch runs the job's function on its items inside one
database transaction and, in the same transaction, records the batch as done on the Job row
(under a row lock). So a batch's writes and its count in done/total commit together or not at
all: a worker killed mid-batch leaves nothing behind, the batch is queued again within seconds
(recover_lost_work, below; the broker's own re-delivery after `retry` is only a backstop), and a
batch delivered twice (two clusters, a retry racing a slow worker) is counted and written once.
Functions the runner calls must write only to the database (idempotent upserts are still
welcome: files or other side effects are not covered by the transaction).

Contract of a batch function: ``func(items, **kwargs) -> dict | None``, where ``items`` is the
batch's list of ids and ``kwargs`` the job's fixed keyword arguments. The runner owns the Job
row (status, done/total, heartbeat): the function gets no job id and must not report on it.
A returned dict of numbers is summed over batches into ``Job.result["summary"]``.

Queues: every task goes to the ``cpu`` cluster unless it asks for ``gpu`` and a GPU cluster is
configured (GALCAT_GPU_QUEUE), see ``queue_for``.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from jobs.conf import conf
from jobs.models import Job
from jobs.services import (
    LOG_TAIL_LINES,
    RUNNER_KEY,
    Heartbeat,
    JobError,
    JobReporter,
    create_job,
    mark_lost_jobs,
    worker_name,
)

logger = logging.getLogger("galcat.tasks")

DEFAULT_BATCH_SIZE = 100
ENDED = (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED)


# ---------------------------------------------------------------------------------------------
# Queues and enqueueing
# ---------------------------------------------------------------------------------------------
def queue_for(preferred: str = "cpu") -> str:
    """The queue a task goes to: ``gpu`` only when asked for and a GPU cluster runs somewhere."""
    if preferred == "gpu" and conf.GPU_QUEUE:
        return "gpu"
    return "cpu"


def queue_for_task(path: str) -> str:
    """The queue for the task at dotted ``path``: ``gpu`` when it is one of GALCAT_GPU_TASKS and a
    GPU cluster runs somewhere (:func:`queue_for`), else ``cpu``."""
    return queue_for("gpu") if path in conf.GPU_TASKS else "cpu"


def _sync() -> bool:
    """Run tasks inline (tests): GALCAT_TASKS_SYNC."""
    return bool(conf.TASKS_SYNC)


def _cluster_retry(queue: str) -> int:
    conf = dict(settings.Q_CLUSTER)
    conf.update((conf.get("ALT_CLUSTERS") or {}).get(queue) or {})
    return int(conf.get("retry", 60))


def _enqueue(func: str, *args, job: Job, name: str, timeout: int | None) -> None:
    """Queue one task of a job. On the ORM broker the task row is written in the caller's
    transaction (it commits with the job's state); other brokers enqueue after commit."""
    from django_q.tasks import async_task

    if _sync():  # as a worker would: run it, log a failure, go on with the next task
        try:
            import_string(func)(*args)
        except Exception:
            logger.exception("task %s failed", name)
        return
    options: dict[str, Any] = {"cluster": job.queue, "task_name": name, "group": f"job-{job.pk}"}
    if timeout:
        options["timeout"] = timeout

    def push() -> None:
        async_task(func, *args, q_options=dict(options))

    if "orm" in settings.Q_CLUSTER:
        push()
    else:
        transaction.on_commit(push)


def _check_timeout(timeout: int | None, queue: str) -> None:
    if timeout is not None:
        retry = _cluster_retry(queue)
        if timeout <= 0 or timeout >= retry:
            raise JobError(f"task timeout must be between 1 s and the {queue} cluster's retry ({retry} s), got {timeout}")


def _func_path(func: str | Callable) -> str:
    path = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    import_string(path)  # fail now, with a clear error, rather than in a worker
    return path


# ---------------------------------------------------------------------------------------------
# Items of a batch job
# ---------------------------------------------------------------------------------------------
def _pack_items(items: Sequence[int]) -> list | dict:
    """A contiguous run of ints is stored as a range, anything else as a list."""
    items = list(items)
    if items and all(isinstance(x, int) for x in items) and items == list(range(items[0], items[0] + len(items))):
        return {"range": [items[0], items[0] + len(items)]}
    return items


def _batch_items(params: dict, index: int) -> list:
    size = params["batch_size"]
    packed = params["items"]
    if isinstance(packed, dict):
        start, stop = packed["range"]
        lo = start + index * size
        return list(range(lo, min(lo + size, stop)))
    return packed[index * size : (index + 1) * size]


def _batches(job: Job) -> dict:
    return (job.result or {}).setdefault("batches", {"n": 0, "done": [], "failed": {}, "running": {}})


def _append_log(job: Job, line: str) -> None:
    lines = (job.log_tail.splitlines() if job.log_tail else []) + [f"{timezone.now():%H:%M:%S} {line}"]
    job.log_tail = "\n".join(lines[-LOG_TAIL_LINES:])


# ---------------------------------------------------------------------------------------------
# Batch jobs
# ---------------------------------------------------------------------------------------------
def run_batched(
    kind: str,
    func: str | Callable,
    items: Iterable[int],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    user=None,
    queue: str = "cpu",
    func_kwargs: dict | None = None,
    params: dict | None = None,
    timeout: int | None = None,
) -> Job:
    """Create a batch job over `items` and queue its batches; returns the queued Job.

    `func` is a dotted path (or a module-level function) called as func(batch, **func_kwargs);
    `queue` is "cpu" or "gpu" (see queue_for); `timeout` (s) bounds one batch and must be
    shorter than the cluster's retry.
    """
    items = list(items)
    if batch_size < 1:
        raise JobError(f"batch_size must be at least 1, got {batch_size}")
    if queue not in ("cpu", "gpu"):
        raise JobError(f"queue must be cpu or gpu, got {queue!r}")
    _check_timeout(timeout, queue)
    path = _func_path(func)
    n = (len(items) + batch_size - 1) // batch_size
    job_params = dict(params or {})
    job_params.update(
        {
            RUNNER_KEY: "batched",
            "_generation": 1,
            "func": path,
            "kwargs": func_kwargs or {},
            "items": _pack_items(items),
            "batch_size": batch_size,
            "timeout": timeout,
        }
    )
    with transaction.atomic():
        job = create_job(kind, job_params, user=user, total=len(items), queue=queue)
        job.result = {"batches": {"n": n, "done": [], "failed": {}, "running": {}}}
        job.message = f"{n} batches of up to {batch_size} queued"
        if n == 0:
            job.status, job.finished, job.message = Job.Status.SUCCEEDED, timezone.now(), "nothing to do"
        job.save(update_fields=["result", "message", "status", "finished"])
        for index in range(n):
            _enqueue("jobs.tasks.run_batch", job.pk, index, 1, job=job, name=f"job{job.pk}-b{index}-g1", timeout=timeout)
    job.refresh_from_db()
    return job


def _finalize(job: Job, now) -> None:
    """Set the final status once every batch is accounted for (or a cancel has drained)."""
    b = _batches(job)
    if b["running"]:
        return
    if job.cancel_requested and len(b["done"]) < b["n"]:
        job.status, job.finished, job.message = Job.Status.CANCELLED, now, f"cancelled after {len(b['done'])} of {b['n']} batches"
        return
    if len(b["done"]) + len(b["failed"]) < b["n"]:
        return
    job.finished = now
    if b["failed"]:
        job.status = Job.Status.FAILED
        job.message = f"{len(b['failed'])} of {b['n']} batches failed; retry runs only those"
        job.error = "\n\n".join(f"batch {i}: {err}" for i, err in sorted(b["failed"].items(), key=lambda kv: int(kv[0])))[:20000]
    else:
        job.status, job.message = Job.Status.SUCCEEDED, f"done: {job.done} items in {b['n']} batches"


def _merge_summary(job: Job, out: Any) -> None:
    if not isinstance(out, dict):
        return
    summary = job.result.setdefault("summary", {})
    for key, value in out.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            summary[key] = summary.get(key, 0) + value


def database_lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection to PostgreSQL went away (a restart, kill -9 of the
    postmaster), which is no fault of the work that was running: an OperationalError or
    InterfaceError that the server sent no error code for (the client saw the connection
    close), or one of class 08 (connection exception) or 57P (shutdown, crash, starting up), or
    any of them while the connection is unusable. Not is_usable() alone: the embedded server is
    back about a second after a kill, and a handler asking then found the connection usable and
    failed a batch that only needed running again."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P")) or not connection.is_usable()


def run_batch(job_id: int, index: int, generation: int) -> dict:
    """The django-q2 task of one batch (see the module docstring). Its worker holds the batch's
    lock (work_key) while it runs: a second delivery meanwhile is skipped."""
    me = worker_name()
    key = work_key(job_id, index)
    # Until the batch is claimed nothing records it: a task that failed here for want of a
    # database (a restart) would be acknowledged and lost, so it waits for the database instead.
    for attempt in range(CLAIM_TRIES):
        try:
            if not _take_work_lock(key):
                return {"skipped": f"batch {index} is running in another worker"}
            break
        except (OperationalError, InterfaceError):
            if attempt == CLAIM_TRIES - 1:
                raise
            connection.close()
            time.sleep(RECOVER_DELAY)
    try:
        claimed = _claim_batch(job_id, index, generation, me)
        return claimed if isinstance(claimed, dict) else _run_taken_batch(claimed, index)
    finally:
        _release_work_lock(key)


def _claim_batch(job_id: int, index: int, generation: int, me: str) -> Job | dict:
    """Mark the batch running by `me` under the Job row lock; a dict says why it is skipped."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return {"skipped": "job deleted"}
        b = _batches(job)
        if job.params.get("_generation") != generation:
            return {"skipped": "superseded by a retry"}
        if job.status in ENDED or index in b["done"]:
            return {"skipped": f"job {job.status}, batch done: {index in b['done']}"}
        now = timezone.now()
        if job.cancel_requested:
            _finalize(job, now)
            job.save()
            return {"skipped": "cancel requested"}
        if job.status == Job.Status.QUEUED:
            job.attempts += 1
            job.started = job.started or now
            if not b["done"]:
                job.message = f"running: first of {b['n']} batches started"
        job.status = Job.Status.RUNNING
        b["running"][str(index)] = me
        b["failed"].pop(str(index), None)
        job.heartbeat, job.worker = now, me
        job.save()
    return job


def _run_taken_batch(job: Job, index: int) -> dict:
    """Run a batch this worker holds (run_batch took its lock); record it done or failed."""
    job_id = job.pk
    params = job.params
    items = _batch_items(params, index)
    func = import_string(params["func"])
    try:
        with Heartbeat(job_id):
            with transaction.atomic():
                out = func(items, **params.get("kwargs", {}))
                job = Job.objects.select_for_update().get(pk=job_id)
                b = _batches(job)
                if index in b["done"]:
                    # Another delivery of this batch committed first: undo this one's writes.
                    transaction.set_rollback(True)
                    return {"skipped": "duplicate delivery rolled back"}
                now = timezone.now()
                b["done"].append(index)
                b["running"].pop(str(index), None)
                job.done = min(job.done + len(items), job.total) if job.total else job.done + len(items)
                job.heartbeat = now
                job.message = f"{len(b['done'])} of {b['n']} batches done (last: batch {index + 1})"
                _merge_summary(job, out)
                _finalize(job, now)
                job.save()
    except Exception as exc:
        if database_lost(exc):
            # The database went away (a restart): not the batch's fault. Its lock went with the
            # connection, so recover_lost_work queues it again.
            logger.warning("batch %s of job %s lost its database connection: %s", index, job_id, exc)
            recover_soon()
            raise
        text = f"{type(exc).__name__}: {exc}"
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            b = _batches(job)
            if index not in b["done"]:
                b["failed"][str(index)] = text[:2000]
                b["running"].pop(str(index), None)
                _append_log(job, f"batch {index} failed: {text}"[:1000])
                job.error = (job.error + "\n" if job.error else "") + f"batch {index}: {text}"
                job.error = job.error[-20000:]
                job.heartbeat = timezone.now()
                _finalize(job, timezone.now())
                job.save()
        raise
    return {"job": job_id, "batch": index, "items": len(items)}


def _retry_batched(job: Job) -> Job:
    """Queue again the batches of a job that are not done (a new generation)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED, Job.Status.LOST):
            raise JobError(f"job {job.pk} is {job.status}: it cannot be retried now")
        b = _batches(job)
        generation = int(job.params.get("_generation", 1)) + 1
        job.params["_generation"] = generation
        b["failed"], b["running"] = {}, {}
        todo = [i for i in range(b["n"]) if i not in set(b["done"])]
        job.status, job.cancel_requested, job.finished, job.error = Job.Status.QUEUED, False, None, ""
        job.message = f"retry {generation - 1}: {len(todo)} of {b['n']} batches queued"
        _append_log(job, job.message)
        if not todo:
            job.status, job.finished, job.message = Job.Status.SUCCEEDED, timezone.now(), "all batches were already done"
        job.save()
        for index in todo:
            _enqueue(
                "jobs.tasks.run_batch",
                job.pk,
                index,
                generation,
                job=job,
                name=f"job{job.pk}-b{index}-g{generation}",
                timeout=job.params.get("timeout"),
            )
    job.refresh_from_db()
    return job


# ---------------------------------------------------------------------------------------------
# Single-task jobs (training, exports, nightly steps)
# ---------------------------------------------------------------------------------------------
def enqueue_job(
    kind: str,
    func: str | Callable,
    *,
    kwargs: dict | None = None,
    user=None,
    queue: str = "cpu",
    timeout: int | None = None,
    params: dict | None = None,
) -> Job:
    """Create a job that runs func(**kwargs) in one task; returns the queued Job.

    When func accepts a `progress` argument it gets a (done, total) callback that moves the
    job's progress bar, as the catalog's functions report progress.
    """
    _check_timeout(timeout, queue)
    path = _func_path(func)
    job_params = dict(params or {})
    job_params.update({RUNNER_KEY: "single", "_generation": 1, "func": path, "kwargs": kwargs or {}, "timeout": timeout})
    with transaction.atomic():
        job = create_job(kind, job_params, user=user, queue=queue)
        _enqueue("jobs.tasks.run_single", job.pk, 1, job=job, name=f"job{job.pk}-g1", timeout=timeout)
    job.refresh_from_db()
    return job


def run_single(job_id: int, generation: int) -> Any:
    """The django-q2 task of a single-task job."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.params.get("_generation") != generation or job.status in ENDED:
        return {"skipped": "job ended, deleted or superseded"}
    if job.cancel_requested:
        Job.objects.filter(pk=job_id).update(status=Job.Status.CANCELLED, finished=timezone.now(), message="cancelled")
        return {"skipped": "cancel requested"}
    key = work_key(job_id, SINGLE_INDEX)
    if not _take_work_lock(key):
        return {"skipped": "running in another worker"}
    try:
        func = import_string(job.params["func"])
        kwargs = dict(job.params.get("kwargs") or {})
        reporter = JobReporter(job)
        reporter.start()
        if "progress" in inspect.signature(func).parameters:
            kwargs["progress"] = reporter.progress
        try:
            with Heartbeat(job_id):
                out = func(**kwargs)
        except BaseException as exc:
            if database_lost(exc):
                recover_soon()  # the database went away: not the job's fault, run it again
                raise
            reporter.fail(exc)
            raise
        reporter.finish(out if isinstance(out, dict) else {"value": out} if out is not None else {}, message="done")
        return out
    finally:
        _release_work_lock(key)


def _retry_single(job: Job) -> Job:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED, Job.Status.LOST):
            raise JobError(f"job {job.pk} is {job.status}: it cannot be retried now")
        generation = int(job.params.get("_generation", 1)) + 1
        job.params["_generation"] = generation
        job.status, job.cancel_requested, job.finished, job.error = Job.Status.QUEUED, False, None, ""
        job.message = f"retry {generation - 1} queued"
        job.save()
        _enqueue("jobs.tasks.run_single", job.pk, generation, job=job, name=f"job{job.pk}-g{generation}", timeout=job.params.get("timeout"))
    job.refresh_from_db()
    return job


RUNNERS: dict[str, Callable[[Job], Job]] = {"batched": _retry_batched, "single": _retry_single}


# ---------------------------------------------------------------------------------------------
# Demo work (tests, the jobs-page demo, `manage.py jobs demo`)
# ---------------------------------------------------------------------------------------------
DEMO_TABLE = "galcat_demo_square"


def ensure_demo_table() -> None:
    """The demo's result table (outside the models: it holds throwaway demo rows only)."""
    with connection.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {DEMO_TABLE} ("
            " run varchar(64) NOT NULL, item bigint NOT NULL, value bigint NOT NULL,"
            " runs integer NOT NULL DEFAULT 1, worker varchar(120) NOT NULL DEFAULT '',"
            " PRIMARY KEY (run, item))"
        )


def demo_square(
    items: list[int],
    *,
    run: str,
    delay: float = 0.0,
    fail_on: Sequence[int] = (),
    fail_once_dir: str | None = None,
    trace: str | None = None,
) -> dict:
    """Square each item and upsert (run, item, item**2); `runs` counts committed writes.

    delay: seconds per item; fail_on: items that raise (only the first time when
    fail_once_dir names a folder for marker files); trace: a file that gets one line per
    execution of a batch ("pid first_item"), written outside the transaction.
    """
    if trace:
        with open(trace, "a") as fh:
            fh.write(f"{os.getpid()} {items[0] if items else -1}\n")
    bad = sorted(set(items) & set(fail_on))
    if bad:
        marker = os.path.join(fail_once_dir, f"{run}-{bad[0]}") if fail_once_dir else None
        if marker is None or not os.path.exists(marker):
            if marker:
                open(marker, "w").close()
            raise ValueError(f"demo failure on item {bad[0]}")
    if delay:
        time.sleep(delay * len(items))
    me = worker_name()
    with connection.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {DEMO_TABLE} (run, item, value, worker) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (run, item) DO UPDATE SET value = EXCLUDED.value, runs = {DEMO_TABLE}.runs + 1, worker = EXCLUDED.worker",
            [(run, x, x * x, me) for x in items],
        )
    return {"items": len(items), "sum_of_squares": sum(x * x for x in items)}


def demo_job(n: int, *, batch_size: int = 100, delay: float = 0.0, user=None, run: str | None = None, **kwargs) -> Job:
    """A demo batch job over items 0..n-1 (see demo_square for kwargs)."""
    import uuid

    ensure_demo_table()
    run = run or uuid.uuid4().hex
    return run_batched(
        "demo",
        "jobs.tasks.demo_square",
        range(n),
        batch_size=batch_size,
        user=user,
        func_kwargs={"run": run, "delay": delay, **kwargs},
        params={"run": run},
    )


def demo_rows(run: str) -> list[tuple[int, int, int]]:
    """(item, value, runs) of a demo run, by item."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT item, value, runs FROM {DEMO_TABLE} WHERE run = %s ORDER BY item", [run])
        return cur.fetchall()


# ---------------------------------------------------------------------------------------------
# Scheduled tasks
# ---------------------------------------------------------------------------------------------
def prune_results(days: float | None = None, failed_days: float | None = None, chunk: int = 5000) -> dict:
    """Delete old django-q2 task results (the cluster keeps all: save_limit 0), in small chunks
    so no long lock is held; successes after `days`, failures after `failed_days`."""
    from django_q.models import Task

    days = conf.Q_KEEP_DAYS if days is None else days
    failed_days = conf.Q_KEEP_FAILED_DAYS if failed_days is None else failed_days
    now = timezone.now()
    deleted = {}
    for label, success, age in (("succeeded", True, days), ("failed", False, failed_days)):
        cutoff = now - timedelta(days=age)
        count = 0
        while True:
            pks = list(Task.objects.filter(success=success, stopped__lt=cutoff).values_list("pk", flat=True)[:chunk])
            if not pks:
                break
            count += Task.objects.filter(pk__in=pks).delete()[0]
        deleted[label] = count
    return deleted


def nightly() -> dict:
    """Queue the nightly recomputation of stale derived data: each dotted path in
    GALCAT_NIGHTLY_TASKS becomes a single-task job; paths that do not import are
    reported and skipped (the app that owns them is not installed here)."""
    queued, missing = {}, {}
    for path in conf.NIGHTLY_TASKS:
        try:
            import_string(path)
        except ImportError as exc:
            missing[path] = str(exc)
            logger.warning("nightly: %s is not available: %s", path, exc)
            continue
        queue = queue_for_task(path)
        queued[path] = enqueue_job(f"nightly:{path.rsplit('.', 1)[-1]}", path, queue=queue).pk
    return {"queued": queued, "missing": missing}


def mark_lost() -> dict:
    """Scheduled sweep (every minute): work of dead workers is queued again (recover_lost_work),
    then running jobs without heartbeat become `lost` (jobs.services.mark_lost_jobs)."""
    out = recover_lost_work()
    out["marked_lost"] = mark_lost_jobs()
    return out


# ---------------------------------------------------------------------------------------------
# Recovery of work whose worker died
# ---------------------------------------------------------------------------------------------
# A worker running a batch (or a single-task job) holds a session-level PostgreSQL advisory lock
# on work_key(job, batch) from the moment it marks the batch running (under the Job row lock)
# until the batch is recorded. A worker that dies (kill -9, out of memory, its machine or the
# database restarting) loses its connection and with it the lock, at once. recover_lost_work
# finds running batches whose lock nobody holds and queues them again; the batch runner's
# done-check under the Job row lock keeps every batch written once, whatever is delivered twice.
# It runs from the schedule every minute, in each freshly spawned worker (a worker replaced after
# a kill, a restarted cluster) and in a worker whose batch lost the database (recover_soon).
SINGLE_INDEX = 2**31 - 1  # the "batch" of a single-task job
RECOVER_DELAY = 2.0
RECOVER_LATER = 3
CLAIM_TRIES = 30  # RECOVER_DELAY s apart: how long a batch task waits for the database


def work_key(job_id: int, index: int) -> tuple[int, int]:
    """The advisory lock (two int4 keys: objsubid 2 in pg_locks, apart from the one-bigint locks
    of jobs.triggers) of batch `index` of a job."""
    return (job_id, index)


def _take_work_lock(key: tuple[int, int]) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", list(key))
        return bool(cur.fetchone()[0])


def _release_work_lock(key: tuple[int, int]) -> None:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", list(key))
    except DatabaseError:  # connection gone: so is the lock
        pass


def held_work_locks() -> set[tuple[int, int]]:
    """Work locks some session of this database holds."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
            " AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return {(row[0], row[1]) for row in cur.fetchall()}


def _max_attempts() -> int:
    return int(settings.Q_CLUSTER.get("max_attempts") or 3)


def _taken_tasks(older_than: float) -> dict[tuple, Any]:
    """ORM broker: queued rows of job tasks that a cluster took more than `older_than` s ago and
    still holds (lock in the future), by (func, args)."""
    if "orm" not in settings.Q_CLUSTER:
        return {}
    from django_q.models import OrmQ

    now = timezone.now()
    found = {}
    for row in OrmQ.objects.filter(lock__gt=now):
        taken_at = row.lock - timedelta(seconds=_cluster_retry(row.key))
        task = row.task
        if task.get("func") in ("jobs.tasks.run_batch", "jobs.tasks.run_single") and taken_at < now - timedelta(seconds=older_than):
            found[(task["func"], tuple(task.get("args") or ()))] = row
    return found


def _release_task(row) -> bool:
    """Make a taken ORM task deliverable now (unless someone changed it meanwhile)."""
    from django_q.models import OrmQ

    return bool(OrmQ.objects.filter(pk=row.pk, lock=row.lock).update(lock=timezone.now()))


def _requeue(job: Job, func: str, args: tuple, taken: dict, name: str) -> None:
    row = taken.pop((func, args), None)
    if row is not None and _release_task(row):
        return
    _enqueue(func, *args, job=job, name=name, timeout=job.params.get("timeout"))


def recover_lost_work() -> dict:
    """Queue again the batches and single-task jobs whose worker died (their lock is free), and
    release job tasks a cluster took GALCAT_Q_RELEASE_AFTER s ago but has not started (a
    killed pusher's). A batch whose workers died GALCAT_Q_MAX_ATTEMPTS times is failed instead.
    Returns counts; the job's message and log name the dead worker."""
    taken = _taken_tasks(float(conf.Q_RELEASE_AFTER))
    out = {"requeued": 0, "failed": 0, "released": 0}
    active = Job.objects.filter(status__in=(Job.Status.RUNNING, Job.Status.LOST)).values_list("pk", flat=True)
    for pk in list(active):
        with transaction.atomic():
            job = Job.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if job is None or job.status not in (Job.Status.RUNNING, Job.Status.LOST):
                continue
            # Read under the row lock: a worker takes its lock before it marks a batch running.
            held = held_work_locks()
            runner = (job.params or {}).get(RUNNER_KEY)
            generation = job.params.get("_generation")
            if runner == "batched":
                b = _batches(job)
                dead = {i: w for i, w in b["running"].items() if work_key(job.pk, int(i)) not in held}
                if not dead:
                    continue
                lost = b.setdefault("lost", {})
                for i, w in dead.items():
                    b["running"].pop(i)
                    lost[i] = lost.get(i, 0) + 1
                    if lost[i] >= _max_attempts():
                        b["failed"][i] = f"worker {w} died running it ({lost[i]} times)"
                        _append_log(job, f"batch {i}: worker {w} died, {lost[i]} times: failed")
                        out["failed"] += 1
                        continue
                    _append_log(job, f"batch {i}: worker {w} lost; batch queued again")
                    name = f"job{job.pk}-b{i}-g{generation}-r{lost[i]}"
                    _requeue(job, "jobs.tasks.run_batch", (job.pk, int(i), generation), taken, name)
                    out["requeued"] += 1
                job.message = f"worker {', '.join(sorted(set(dead.values())))} lost; batch {', '.join(sorted(dead, key=int))} queued again"
                _finalize(job, timezone.now())
                job.save()
            elif runner == "single" and job.status == Job.Status.RUNNING and work_key(job.pk, SINGLE_INDEX) not in held:
                if job.attempts >= _max_attempts():
                    job.status, job.finished = Job.Status.FAILED, timezone.now()
                    job.error = job.message = f"worker {job.worker} died running it ({job.attempts} attempts)"
                    out["failed"] += 1
                else:
                    job.message = f"worker {job.worker} lost; queued again"
                    _append_log(job, job.message)
                    _requeue(job, "jobs.tasks.run_single", (job.pk, generation), taken, f"job{job.pk}-g{generation}-r{job.attempts}")
                    out["requeued"] += 1
                job.save()
    if "orm" not in settings.Q_CLUSTER:
        out["released"] += _requeue_popped_batches()
    # Taken long ago, never started, their batch neither running nor done: a dead pusher's.
    held = held_work_locks()
    for (func, args), row in taken.items():
        key = work_key(args[0], args[1] if func == "jobs.tasks.run_batch" else SINGLE_INDEX)
        if key not in held and _release_task(row):
            out["released"] += 1
    if any(out.values()):
        logger.warning("recovered lost work: %s", out)
    return out


def _queued_in_broker(queue: str) -> set[tuple]:
    """(func, args) of the tasks waiting in a Redis-like broker's list for `queue`."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = get_broker(queue)
    found = set()
    for payload in broker.connection.lrange(broker.list_key, 0, -1):
        try:
            task = SignedPackage.loads(payload)
        except Exception:  # noqa: BLE001 - a foreign or corrupt entry is not ours
            continue
        found.add((task.get("func"), tuple(task.get("args") or ())))
    return found


def _requeue_popped_batches() -> int:
    """Brokers without acknowledgement (Redis): a cluster that died took its popped tasks with
    it. Batches of a job that has not moved for GALCAT_Q_RELEASE_AFTER s, neither done, running,
    failed nor waiting in the broker, are queued again (a live cluster's copy is then skipped)."""
    quiet = timezone.now() - timedelta(seconds=float(conf.Q_RELEASE_AFTER))
    stalled = Job.objects.filter(status__in=(Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.LOST), params__has_key=RUNNER_KEY)
    stalled = stalled.filter(Q(heartbeat__lt=quiet) | Q(heartbeat__isnull=True, created__lt=quiet))
    queued: dict[str, set[tuple]] = {}
    count = 0
    for pk in list(stalled.values_list("pk", flat=True)):
        with transaction.atomic():
            job = Job.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if job is None or job.status in ENDED or job.params.get(RUNNER_KEY) != "batched":
                continue
            b = _batches(job)
            if b["running"]:
                continue
            generation = job.params.get("_generation")
            if job.queue not in queued:
                queued[job.queue] = _queued_in_broker(job.queue)
            settled = set(b["done"]) | {int(i) for i in b["failed"]}
            missing = [
                i for i in range(b["n"]) if i not in settled and ("jobs.tasks.run_batch", (job.pk, i, generation)) not in queued[job.queue]
            ]
            for i in missing:
                _enqueue(
                    "jobs.tasks.run_batch",
                    job.pk,
                    i,
                    generation,
                    job=job,
                    name=f"job{job.pk}-b{i}-g{generation}-p",
                    timeout=job.params.get("timeout"),
                )
            if missing:
                job.heartbeat = timezone.now()  # one release per quiet period
                _append_log(job, f"batches {', '.join(map(str, missing))} lost in a cluster's hands; queued again")
                job.save(update_fields=["heartbeat", "log_tail"])
                count += len(missing)
    return count


def recover_soon(**kwargs) -> None:
    """django-q2 post_spawn receiver, also called by a batch that lost its database: a thread of
    this worker runs recover_lost_work after RECOVER_DELAY s (time for a dead backend to go, or
    for the database to come back; tried again every RECOVER_DELAY s for a minute while it is
    down), then RECOVER_LATER times GALCAT_Q_RELEASE_AFTER s apart, for what a dead pusher took."""

    def run() -> None:
        for delay in [RECOVER_DELAY] * int(60 / RECOVER_DELAY):
            time.sleep(delay)
            try:
                recover_lost_work()
                break
            except DatabaseError as exc:
                logger.info("recovery postponed: %s", exc)
            finally:
                connection.close()
        for _ in range(RECOVER_LATER):
            time.sleep(float(conf.Q_RELEASE_AFTER) + RECOVER_DELAY)
            try:
                recover_lost_work()
            except DatabaseError as exc:
                logger.info("recovery skipped: %s", exc)
            finally:
                connection.close()

    threading.Thread(target=run, name="recover-lost-work", daemon=True).start()
