"""Work whose worker died comes back without anyone's help, long before the broker's retry, and
is still written once: a killed worker, a killed cluster, tasks a dead pusher took."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone
from django_q.models import OrmQ

from jobs.models import Job
from jobs.tasks import database_lost, demo_job, demo_rows, recover_lost_work, work_key
from tests.jobs.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

# The broker's own re-delivery is far away: whatever finishes these jobs is the recovery.
SLOW_RETRY = {"GALCAT_Q_TIMEOUT": "300", "GALCAT_Q_RETRY": "600", "GALCAT_JOB_LOST_AFTER": "2", "GALCAT_Q_RELEASE_AFTER": "2"}


def job(pk: int) -> Job:
    return Job.objects.get(pk=pk)


def batch_starts(path) -> list[tuple[int, int]]:
    """(pid, first item) per batch execution, from demo_square's trace file."""
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines() if line.strip()]


def assert_written_once(j: Job, n: int) -> None:
    rows = demo_rows(j.params["run"])
    assert [r[0] for r in rows] == list(range(n)), "every item has a row"
    assert {r[2] for r in rows} == {1}, "every item was written (committed) exactly once"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killed_worker_batch_is_requeued_within_seconds_naming_the_dead_worker(clusters, tmp_path):
    trace = tmp_path / "trace.txt"
    c = clusters("a", **SLOW_RETRY)
    c.wait_ready()
    j = demo_job(60, batch_size=10, delay=0.2, trace=str(trace))  # 6 batches of 2 s
    starts = wait_for(lambda: batch_starts(trace), 60, 0.05, what="a batch to start")
    victim, first_item = starts[0]
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: job(j.pk).status == Job.Status.SUCCEEDED, 90, 0.2, what="the job to complete")
    assert time.monotonic() - killed_at < 60, "recovered long before the broker's 600 s retry"
    final = job(j.pk)
    assert (final.done, final.total) == (60, 60)
    assert f":{victim} lost" in final.log_tail, final.log_tail  # names the killed worker
    assert final.result["batches"]["lost"] == {str(first_item // 10): 1}
    assert [first for _, first in batch_starts(trace)].count(first_item) == 2, "the killed batch ran again"
    assert_written_once(final, 60)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killed_cluster_work_is_picked_up_by_a_new_cluster_without_retry(clusters, settings, tmp_path):
    settings.GALCAT_JOB_LOST_AFTER = 2.0
    trace = tmp_path / "trace.txt"
    first = clusters("a", **SLOW_RETRY)
    j = demo_job(80, batch_size=10, delay=0.05, trace=str(trace))  # 8 batches of 0.5 s
    wait_for(lambda: job(j.pk).done >= 20, 60, what="two batches done")
    wait_for(lambda: job(j.pk).result["batches"]["running"], 10, 0.02, what="a batch in flight")
    first.kill9()  # worker, pusher (with the tasks it took) and all
    dead = set(job(j.pk).result["batches"]["running"].values())
    clusters("b", **SLOW_RETRY)
    wait_for(lambda: job(j.pk).status == Job.Status.SUCCEEDED, 90, 0.2, what="the job to complete")
    final = job(j.pk)
    assert (final.done, final.total) == (80, 80)
    assert any(f"worker {w} lost" in final.log_tail for w in dead), final.log_tail
    assert_written_once(final, 80)


def test_tasks_a_dead_cluster_took_are_released_and_dead_batches_requeued(settings):
    """No cluster runs: the rows of a job look as a killed cluster leaves them."""
    settings.GALCAT_Q_RELEASE_AFTER = 2.0
    j = demo_job(30, batch_size=10)
    rows = list(OrmQ.objects.all())
    assert len(rows) == 3
    # Batch 0 was running in a worker that died (its lock is free); batches 1 and 2 were taken
    # by its pusher 10 s ago and never started.
    taken_lock = timezone.now() + timedelta(seconds=settings.Q_CLUSTER["retry"] - 10)
    OrmQ.objects.update(lock=taken_lock)
    Job.objects.filter(pk=j.pk).update(
        status=Job.Status.RUNNING, result={"batches": {"n": 3, "done": [], "failed": {}, "running": {"0": "deadhost:4242"}}}
    )
    out = recover_lost_work()
    assert out == {"requeued": 1, "failed": 0, "released": 2}
    assert OrmQ.objects.filter(lock__lte=timezone.now()).count() == 3, "every task is deliverable again"
    after = job(j.pk)
    assert after.result["batches"]["running"] == {}
    assert "worker deadhost:4242 lost" in after.message
    # A second sweep finds nothing more to do.
    assert recover_lost_work() == {"requeued": 0, "failed": 0, "released": 0}


def test_a_batch_whose_worker_holds_its_lock_is_left_alone(settings):
    j = demo_job(10, batch_size=10)
    Job.objects.filter(pk=j.pk).update(
        status=Job.Status.RUNNING, result={"batches": {"n": 1, "done": [], "failed": {}, "running": {"0": "livehost:1"}}}
    )
    import psycopg

    db = settings.DATABASES["default"]
    # Another session (a live worker) holds the batch's lock.
    with psycopg.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", list(work_key(j.pk, 0)))
        assert recover_lost_work()["requeued"] == 0
        assert job(j.pk).result["batches"]["running"] == {"0": "livehost:1"}
    assert recover_lost_work()["requeued"] == 1  # its session ended: the worker is gone


def test_a_batch_that_keeps_killing_its_worker_fails_after_max_attempts(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "max_attempts": 2}
    j = demo_job(10, batch_size=10)
    for attempt in (1, 2):
        Job.objects.filter(pk=j.pk).update(status=Job.Status.RUNNING)
        jj = job(j.pk)
        jj.result["batches"]["running"] = {"0": f"host:{attempt}"}
        jj.save(update_fields=["result"])
        recover_lost_work()
    final = job(j.pk)
    assert final.status == Job.Status.FAILED
    assert "worker host:2 died running it (2 times)" in final.error


def _wrapped(cause: Exception) -> Exception:
    """A Django database error raised from `cause`, as Django's wrapper raises them."""
    from django.db import utils

    kind = utils.InterfaceError if isinstance(cause, psycopg.InterfaceError) else utils.OperationalError
    try:
        raise kind(str(cause)) from cause
    except kind as exc:
        return exc


def test_a_connection_closed_by_the_server_is_a_lost_database_even_with_the_server_back():
    from django.db import connection

    connection.ensure_connection()  # usable now, as after a fast restart
    # no error code: the client saw the connection close
    assert database_lost(_wrapped(psycopg.OperationalError("consuming input failed: server closed the connection")))
    assert database_lost(_wrapped(psycopg.errors.AdminShutdown("terminating connection due to administrator command")))
    assert database_lost(_wrapped(psycopg.errors.ConnectionFailure("connection failure")))


def test_errors_the_server_reports_on_a_live_connection_are_the_work_s_own():
    from django.db import connection

    connection.ensure_connection()
    assert not database_lost(_wrapped(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")))
    assert not database_lost(_wrapped(psycopg.errors.LockNotAvailable("could not obtain lock")))
    assert not database_lost(ValueError("a bug in the batch"))
