"""Automatic triggers (debounced collectors), schedules, result pruning, nightly run, the
`jobs` command and the clusters `make run` starts."""

from __future__ import annotations

import importlib.util
import io
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import Schedule, Task

from catalog.signals import IMAGES, images_added, pipeline_job_kind
from jobs import triggers
from jobs.models import Job, TriggerItem
from jobs.tasks import demo_job, nightly, prune_results
from tests.jobs import funcs
from zoo.signals import VOTES, votes_added


@pytest.fixture
def pipeline(settings, sync_tasks):
    settings.GALCAT_IMAGE_PIPELINE = ["tests.jobs.funcs.record", "nowhere.tasks.fit_images"]
    settings.GALCAT_CONSENSUS_TASK = "tests.jobs.funcs.record"
    settings.GALCAT_IMAGE_BATCH_SIZE = 4
    settings.GALCAT_TRIGGER_DEBOUNCE = 10
    settings.GALCAT_TRIGGER_MAX_WAIT = 300
    funcs.CALLS.clear()


def test_new_images_are_collected_then_queued_in_batches(db, pipeline):
    images_added.send(sender=None, image_ids=[3, 1, 2])
    images_added.send(sender=None, image_ids=[2, 4, 5, 6, 7, 8, 9, 10])
    collectors = Job.objects.filter(kind=IMAGES)
    assert collectors.count() == 1, "one collector, not one job per image"
    collector = collectors.get()
    assert _pending(IMAGES) == list(range(1, 11))
    assert triggers.flush_due() == {}, "not due before the debounce"
    assert funcs.CALLS == []

    TriggerItem.objects.filter(kind=IMAGES).update(created=timezone.now() - timedelta(seconds=11))
    flushed = triggers.flush_due()
    assert list(flushed) == [collector.pk]
    (child_id,) = flushed[collector.pk]
    child = Job.objects.get(pk=child_id)
    assert child.params["timeout"] == 900
    assert child.kind == "record" and child.params["trigger"] == collector.pk and child.status == Job.Status.SUCCEEDED and child.total == 10
    assert funcs.CALLS == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    collector.refresh_from_db()
    assert collector.status == Job.Status.SUCCEEDED and collector.params["ids"] == list(range(1, 11)) and collector.total == 10
    assert "nowhere.tasks.fit_images" in collector.result["skipped"][0]
    assert _pending(IMAGES) == [], "flushed ids are taken"

    images_added.send(sender=None, image_ids=[11])
    assert Job.objects.filter(kind=IMAGES, status=Job.Status.QUEUED).get().pk != collector.pk
    assert _pending(IMAGES) == [11]


def _pending(kind: str) -> list[int]:
    return sorted(set(TriggerItem.objects.filter(kind=kind).values_list("item", flat=True)))


def test_ids_added_while_a_collector_is_flushed_get_a_collector_of_their_own(db, pipeline):
    images_added.send(sender=None, image_ids=[1, 2])
    first = Job.objects.get(kind=IMAGES)
    # A sender that saw the open collector just before the flush took it: its id has no queued
    # collector; the next scheduled flush_due opens one and queues the id once.
    Job.objects.filter(pk=first.pk).update(status=Job.Status.SUCCEEDED)
    TriggerItem.objects.create(kind=IMAGES, item=3, created=timezone.now() - timedelta(seconds=11))
    TriggerItem.objects.filter(kind=IMAGES).update(created=timezone.now() - timedelta(seconds=11))
    flushed = triggers.flush_due()
    (collector_pk,) = flushed
    assert collector_pk != first.pk
    assert funcs.CALLS == [[1, 2, 3]] and _pending(IMAGES) == []
    assert triggers.flush_due() == {} and funcs.CALLS == [[1, 2, 3]], "each id queued once"


def test_concurrent_senders_share_one_collector_and_lose_no_id(transactional_db, pipeline):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def send(i: int) -> None:
        try:
            votes_added.send(sender=None, galaxy_ids=[i])
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(200)))
    assert Job.objects.filter(kind=VOTES, status=Job.Status.QUEUED).count() == 1
    assert _pending(VOTES) == list(range(200))
    triggers.flush(Job.objects.get(kind=VOTES).pk, force=True)
    assert funcs.CALLS == [list(range(200))]


def test_a_collector_is_flushed_after_max_wait_even_while_ids_keep_coming(db, pipeline, settings):
    settings.GALCAT_TRIGGER_MAX_WAIT = 0
    images_added.send(sender=None, image_ids=[1])
    assert len(triggers.flush_due()) == 1


def test_new_votes_queue_one_consensus_run(db, pipeline):
    for gid in (7, 8, 7, 9):
        votes_added.send(sender=None, galaxy_ids=[gid])
    collector = Job.objects.get(kind=VOTES)
    triggers.flush(collector.pk, force=True)
    assert funcs.CALLS == [[7, 8, 9]], "one consensus run over every galaxy that got votes"
    assert triggers.flush(collector.pk, force=True) == [], "a collector flushes once"
    assert Job.objects.filter(kind="consensus").count() == 1
    assert pipeline_job_kind("fitting.tasks.fit_images") == "fit" and pipeline_job_kind("ml.tasks.predict_images") == "predict"


def test_schedules_exist_after_migrate_and_are_idempotent(db):
    names = set(Schedule.objects.filter(name__startswith="galcat:").values_list("name", flat=True))
    assert names == {"galcat: flush triggers", "galcat: mark lost jobs", "galcat: nightly recompute", "galcat: prune task results"}
    triggers.ensure_schedules()
    assert Schedule.objects.filter(name__startswith="galcat:").count() == 4
    nightly_schedule = Schedule.objects.get(name="galcat: nightly recompute")
    assert nightly_schedule.schedule_type == Schedule.DAILY and nightly_schedule.cluster == "cpu"
    assert nightly_schedule.func == "jobs.tasks.nightly"


def test_prune_deletes_only_old_results(db):
    now = timezone.now()

    def task(name, success, age_days):
        t = now - timedelta(days=age_days)
        return Task.objects.create(id=name, name=name, func="x", started=t, stopped=t, success=success)

    task("old-ok", True, 10)
    task("new-ok", True, 1)
    task("old-failed", False, 10)
    task("ancient-failed", False, 40)
    assert prune_results(days=7, failed_days=30, chunk=1) == {"succeeded": 1, "failed": 1}
    assert set(Task.objects.values_list("name", flat=True)) == {"new-ok", "old-failed"}


def test_nightly_queues_available_steps_and_reports_missing_ones(db, settings, sync_tasks):
    settings.GALCAT_NIGHTLY_TASKS = ["tests.jobs.funcs.nightly_step", "nowhere.tasks.fit_stale"]
    out = nightly()
    assert list(out["missing"]) == ["nowhere.tasks.fit_stale"]
    job = Job.objects.get(pk=out["queued"]["tests.jobs.funcs.nightly_step"])
    assert job.kind == "nightly:nightly_step" and job.status == Job.Status.SUCCEEDED and job.result == {"stale": 3}


def test_jobs_command(db, sync_tasks, tmp_path):
    out = io.StringIO()
    call_command("jobs", "demo", "25", "--batch-size", "10", stdout=out)
    pk = int(out.getvalue().split("queued job ")[1].split(":")[0])
    out = io.StringIO()
    call_command("jobs", "list", "--kind", "demo", stdout=out)
    assert f"{pk}" in out.getvalue() and "succeeded" in out.getvalue() and "25/25 100.0%" in out.getvalue()
    out = io.StringIO()
    call_command("jobs", "watch", str(pk), stdout=out, stderr=io.StringIO())
    assert "succeeded (25/25)" in out.getvalue()
    with pytest.raises(CommandError, match="already ended"):
        call_command("jobs", "cancel", str(pk))
    failing = demo_job(20, batch_size=10, fail_on=[3], fail_once_dir=str(tmp_path))
    with pytest.raises(CommandError, match="demo failure on item 3"):
        call_command("jobs", "watch", str(failing.pk), stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    call_command("jobs", "retry", str(failing.pk), stdout=out)
    assert "succeeded" in out.getvalue()
    out = io.StringIO()
    call_command("jobs", "show", str(failing.pk), stdout=out)
    assert "batch 0 failed" in out.getvalue() and "attempts: 2" in out.getvalue()
    with pytest.raises(CommandError, match="no job"):
        call_command("jobs", "show", "999999")


def _run_py():
    spec = importlib.util.spec_from_file_location("galcat_run", django_settings.BASE_DIR / "scripts" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_run_starts_a_gpu_cluster_only_with_cuda_or_when_forced(monkeypatch):
    run = _run_py()
    monkeypatch.setenv("GALCAT_GPU_WORKER", "0")
    assert [c[0] for c in run.worker_commands()] == ["cpu task cluster"]
    monkeypatch.setenv("GALCAT_GPU_WORKER", "1")
    monkeypatch.delenv("GALCAT_GPU_QUEUE", raising=False)
    commands = run.worker_commands()
    assert commands == [
        ("cpu task cluster", ("qcluster",), {}),
        ("gpu task cluster", ("qcluster",), {"Q_CLUSTER_NAME": "gpu"}),
    ]
    import os

    assert os.environ["GALCAT_GPU_QUEUE"] == "1", "the web server and cpu cluster then route GPU work to it"
    monkeypatch.setenv("GALCAT_GPU_WORKER", "auto")
    import torch

    assert run.gpu_worker_wanted() == torch.cuda.is_available()
