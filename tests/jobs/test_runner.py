"""The batch runner, cancel/retry rules and liveness, with tasks run inline (real PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from jobs.models import Job
from jobs.services import JobError, cancel_job, create_job, mark_lost_jobs, retry_job, tracked, visible_jobs
from jobs.tasks import demo_job, demo_rows, enqueue_job, queue_for, queue_for_task, run_batch, run_batched
from tests.jobs import funcs


def test_batch_job_runs_every_item_once_and_sums_results(db, sync_tasks, member):
    job = demo_job(250, batch_size=40, user=member)
    assert job.status == Job.Status.SUCCEEDED
    assert (job.done, job.total) == (250, 250)
    assert job.result["batches"]["n"] == 7
    assert sorted(job.result["batches"]["done"]) == list(range(7))
    assert job.result["summary"] == {"items": 250, "sum_of_squares": sum(x * x for x in range(250))}
    rows = demo_rows(job.params["run"])
    assert [r[0] for r in rows] == list(range(250))
    assert all(value == item * item and runs == 1 for item, value, runs in rows)
    assert job.attempts == 1 and job.created_by == member


def test_items_are_stored_compactly_and_split_exactly(db, sync_tasks):
    funcs.CALLS.clear()
    job = run_batched("record", "tests.jobs.funcs.record", [5, 3, 9, 1, 7], batch_size=2)
    assert job.params["items"] == [5, 3, 9, 1, 7]
    assert funcs.CALLS == [[5, 3], [9, 1], [7]]
    assert job.result["summary"] == {"seen": 5}
    funcs.CALLS.clear()
    job = run_batched("record", funcs.record, range(10, 15), batch_size=3)
    assert job.params["items"] == {"range": [10, 15]}
    assert funcs.CALLS == [[10, 11, 12], [13, 14]]


def test_a_failing_batch_is_recorded_and_retry_runs_only_it(db, sync_tasks, member, tmp_path):
    job = demo_job(50, batch_size=10, user=member, fail_on=[23], fail_once_dir=str(tmp_path))
    assert job.status == Job.Status.FAILED
    assert "demo failure on item 23" in job.error and "batch 2" in job.error
    assert job.done == 40, "the other four batches still ran"
    assert job.result["batches"]["failed"].keys() == {"2"}
    assert "batch 2 failed" in job.log_tail
    rows = demo_rows(job.params["run"])
    assert len(rows) == 40 and not any(20 <= r[0] < 30 for r in rows), "the failed batch wrote nothing"

    job = retry_job(job.pk, member)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.done == 50 and job.params["_generation"] == 2
    rows = demo_rows(job.params["run"])
    assert [r[0] for r in rows] == list(range(50)) and {r[2] for r in rows} == {1}


def test_a_batch_delivered_twice_is_written_and_counted_once(db, sync_tasks):
    job = demo_job(30, batch_size=10)
    assert job.status == Job.Status.SUCCEEDED
    out = run_batch(job.pk, 1, 1)
    assert "skipped" in out
    job.refresh_from_db()
    assert job.done == 30
    assert {r[2] for r in demo_rows(job.params["run"])} == {1}


def test_superseded_generation_is_skipped(db):
    job = demo_job(20, batch_size=10)  # not sync: queued in the ORM broker, nothing ran
    Job.objects.filter(pk=job.pk).update(params={**job.params, "_generation": 2})
    assert run_batch(job.pk, 0, 1) == {"skipped": "superseded by a retry"}
    assert run_batch(job.pk, 0, 2) == {"job": job.pk, "batch": 0, "items": 10}
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.done == 10


def test_cancel_stops_the_remaining_batches(db, member):
    job = demo_job(40, batch_size=10, user=member)
    run_batch(job.pk, 0, 1)
    cancelled = cancel_job(job.pk, member)
    assert cancelled.status == Job.Status.CANCELLED, "no batch in a worker's hands: cancelled at once"
    for index in (1, 2, 3):
        assert run_batch(job.pk, index, 1)["skipped"]
    job.refresh_from_db()
    assert job.done == 10 and job.status == Job.Status.CANCELLED
    assert len(demo_rows(job.params["run"])) == 10


def test_cancel_of_a_running_batch_job_waits_for_the_batch(db, member):
    job = demo_job(40, batch_size=10, user=member)
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING, result={"batches": {"n": 4, "done": [], "failed": {}, "running": {"0": "w:1"}}}
    )
    job = cancel_job(job.pk, member)
    assert job.status == Job.Status.RUNNING and job.cancel_requested
    assert "after the current batch" in job.message


def test_only_owners_and_curators_cancel_or_retry(db, member, other_member, curator):
    job = create_job("demo", user=member)
    with pytest.raises(PermissionDenied):
        cancel_job(job.pk, other_member)
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(PermissionDenied):
        cancel_job(job.pk, AnonymousUser())
    with pytest.raises(PermissionDenied):
        cancel_job(job.pk, None)
    assert cancel_job(job.pk, curator).status == Job.Status.CANCELLED
    with pytest.raises(JobError, match="already ended"):
        cancel_job(job.pk, member)
    with pytest.raises(PermissionDenied):
        retry_job(job.pk, other_member)


def test_retry_refuses_active_succeeded_and_terminal_jobs(db, sync_tasks, member):
    queued = demo_job(10, batch_size=10, user=member)
    assert queued.status == Job.Status.SUCCEEDED
    with pytest.raises(JobError, match="only failed, cancelled or lost"):
        retry_job(queued.pk, member)
    with pytest.raises(RuntimeError), tracked("import_catalog", user=member) as rep:
        raise RuntimeError("disk full")
    terminal = Job.objects.get(pk=rep.job.pk)
    assert terminal.status == Job.Status.FAILED and "disk full" in terminal.error
    with pytest.raises(JobError, match="outside the task queue"):
        retry_job(terminal.pk, member)


def test_stale_heartbeat_marks_a_running_job_lost_and_it_can_be_retried(db, settings, member):
    settings.GALCAT_JOB_LOST_AFTER = 60
    job = demo_job(20, batch_size=10, user=member)
    run_batch(job.pk, 0, 1)
    old = timezone.now() - timedelta(seconds=120)
    # Batch 1 was in a worker's hands when its heartbeat stopped.
    job.refresh_from_db()
    job.result["batches"]["running"] = {"1": "gone:1"}
    Job.objects.filter(pk=job.pk).update(heartbeat=old, result=job.result)
    waiting = demo_job(20, batch_size=10)
    Job.objects.filter(pk=waiting.pk).update(status=Job.Status.RUNNING, heartbeat=old)
    assert mark_lost_jobs() == 1
    job.refresh_from_db()
    assert job.status == Job.Status.LOST and "lost" in job.message
    assert Job.objects.get(pk=waiting.pk).status == Job.Status.RUNNING, "queued batches are waiting, not lost"

    job = retry_job(job.pk, member)
    assert job.status == Job.Status.QUEUED and job.params["_generation"] == 2
    assert run_batch(job.pk, 1, 1)["skipped"], "the lost delivery is superseded"
    run_batch(job.pk, 1, 2)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.done == 20


def test_single_task_job_reports_progress_and_result(db, sync_tasks, member):
    job = enqueue_job("nightly:step", "tests.jobs.funcs.nightly_step", user=member)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert (job.done, job.total) == (3, 3) and job.result == {"stale": 3}


def test_bad_input_is_refused_and_writes_nothing(db, settings):
    before = Job.objects.count()
    with pytest.raises(JobError, match="batch_size"):
        run_batched("x", "tests.jobs.funcs.record", [1], batch_size=0)
    with pytest.raises(JobError, match="queue"):
        run_batched("x", "tests.jobs.funcs.record", [1], queue="tpu")
    with pytest.raises(JobError, match="timeout"):
        run_batched("x", "tests.jobs.funcs.record", [1], timeout=settings.Q_CLUSTER["retry"])
    with pytest.raises(ImportError):
        run_batched("x", "tests.jobs.funcs.nope", [1])
    assert Job.objects.count() == before


def test_queues(settings):
    settings.GALCAT_GPU_QUEUE = False
    assert queue_for("gpu") == "cpu"
    settings.GALCAT_GPU_QUEUE = True
    assert queue_for("gpu") == "gpu" and queue_for("cpu") == "cpu"


def test_gpu_tasks_go_to_the_gpu_queue_only_when_a_gpu_cluster_runs(settings):
    settings.GALCAT_GPU_TASKS = ["fitting.tasks.fit_images", "fitting.tasks.fit_stale"]
    settings.GALCAT_GPU_QUEUE = False
    assert queue_for_task("fitting.tasks.fit_images") == "cpu"  # nobody would serve a gpu queue
    settings.GALCAT_GPU_QUEUE = True
    assert queue_for_task("fitting.tasks.fit_images") == "gpu"
    assert queue_for_task("zoo.consensus.run_consensus_task") == "cpu"


def test_visibility(db, member, other_member, curator):
    mine = create_job("a", user=member)
    theirs = create_job("b", user=other_member)
    system = create_job("c")
    assert set(visible_jobs(member)) == {mine, system}
    assert set(visible_jobs(curator)) == {mine, theirs, system}
    from django.contrib.auth.models import AnonymousUser

    assert not visible_jobs(AnonymousUser()).exists()
