"""Real qcluster processes on the real (test) PostgreSQL: kill -9, two clusters, cancel,
progress over HTTP, failures. Data is committed (transactional_db) so the clusters see it."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections import Counter

import pytest

from jobs.models import Job
from jobs.services import cancel_job, lost_after, mark_lost_jobs
from jobs.tasks import demo_job, demo_rows
from tests.jobs.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def job(pk: int) -> Job:
    return Job.objects.get(pk=pk)


def trace_lines(path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines() if line.strip()]


def test_kill9_mid_batch_then_restart_completes_every_item_once(clusters, settings, tmp_path):
    settings.GALCAT_JOB_LOST_AFTER = 2.0
    trace = tmp_path / "trace.txt"
    # 12 batches of 1 s: long enough that the batch seen running is still running when the kill lands
    j = demo_job(120, batch_size=10, delay=0.1, trace=str(trace))
    first = clusters("a")
    wait_for(lambda: job(j.pk).done >= 30, 60, what="three batches done")
    # Wait until a batch has just started (a new trace line: it is marked running before it runs, and
    # has about 1 s left), then kill the whole cluster at once. Waiting only for "some batch running"
    # could see one in its last milliseconds and kill between batches (it did once on a fresh clone).
    started = len(trace_lines(trace))
    wait_for(lambda: len(trace_lines(trace)) > started, 10, 0.01, what="a batch starting")
    first.kill9()
    killed_at = job(j.pk)
    assert killed_at.status == Job.Status.RUNNING and killed_at.done < 120
    in_flight = set(killed_at.result["batches"]["running"])
    assert in_flight, "a batch was in flight when the cluster died"

    # The dead worker stops beating: the job shows as lost.
    time.sleep(lost_after() + 0.5)
    assert mark_lost_jobs() == 1
    assert job(j.pk).status == Job.Status.LOST

    clusters("b")  # a new cluster; the broker re-delivers the killed tasks after `retry`
    wait_for(lambda: job(j.pk).status == Job.Status.SUCCEEDED, 60, 0.2, what="the job to complete")
    final = job(j.pk)
    assert (final.done, final.total) == (120, 120)
    assert sorted(final.result["batches"]["done"]) == list(range(12))
    rows = demo_rows(final.params["run"])
    assert [r[0] for r in rows] == list(range(120)), "every item has exactly one row"
    assert {r[2] for r in rows} == {1}, "every item was written (committed) exactly once"
    runs = Counter(first_item for _, first_item in trace_lines(trace))
    assert any(runs[int(b) * 10] >= 2 for b in in_flight), "the killed batch really ran again"


def test_two_clusters_share_the_queue_and_no_task_runs_twice(clusters, tmp_path):
    trace = tmp_path / "trace.txt"
    a, b = clusters("a"), clusters("b")
    a.wait_ready()
    b.wait_ready()
    j = demo_job(300, batch_size=5, delay=0.01, trace=str(trace))  # 60 batches of 0.05 s
    wait_for(lambda: job(j.pk).status == Job.Status.SUCCEEDED, 90, 0.2, what="the job to complete")
    lines = trace_lines(trace)
    per_batch = Counter(first_item for _, first_item in lines)
    assert sorted(per_batch) == list(range(0, 300, 5))
    assert set(per_batch.values()) == {1}, "no batch ran twice"
    assert {r[2] for r in demo_rows(job(j.pk).params["run"])} == {1}
    sessions = {os.getsid(pid) for pid, _ in lines}
    assert sessions == {a.proc.pid, b.proc.pid}, "both clusters took batches from the one queue"


def test_cancel_stops_further_batches(shared_cluster, tmp_path):
    trace = tmp_path / "trace.txt"
    j = demo_job(400, batch_size=10, delay=0.03, trace=str(trace))  # 40 batches of 0.3 s
    wait_for(lambda: job(j.pk).done >= 20, 60, what="two batches done")
    cancel_job(j.pk, None, system=True)
    wait_for(lambda: job(j.pk).status == Job.Status.CANCELLED, 20, what="the job to be cancelled")
    done = job(j.pk).done
    executed = len(trace_lines(trace))
    time.sleep(1.5)
    final = job(j.pk)
    assert final.done == done < 400
    assert len(trace_lines(trace)) == executed, "no batch started after the cancel took effect"
    assert len(demo_rows(final.params["run"])) == done


def test_progress_is_visible_over_http_while_it_runs(shared_cluster, live_server, client, member):
    """The jobs page's polling endpoint and the REST API both show the progress moving."""
    client.force_login(member)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    def get(path: str) -> dict:
        req = urllib.request.Request(f"{live_server.url}{path}", headers={"Cookie": cookie, "Accept": "application/json"})
        with urllib.request.urlopen(req) as resp:
            return json.load(resp)

    assert get("/jobs/status.json")["jobs"] == []  # the server has loaded its URLs before the clock starts
    get("/api/v1/jobs/")
    j = demo_job(200, batch_size=10, delay=0.03, user=member)  # 20 batches of 0.3 s
    seen: dict[str, list[tuple[str, int]]] = {"page": [], "api": []}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        row = get(f"/jobs/status.json?ids={j.pk}")["jobs"][0]
        seen["page"].append((row["status"], row["done"]))
        api = get(f"/api/v1/jobs/{j.pk}/")
        seen["api"].append((api["status"], api["done"]))
        if row["status"] == api["status"] == "succeeded":
            break
        time.sleep(0.1)
    for where, values in seen.items():
        assert values[-1] == ("succeeded", 200), where
        middle = {done for status, done in values if status == "running" and 0 < done < 200}
        assert len(middle) >= 2, f"{where}: progress moved through several values while running: {values}"
        assert [d for _, d in values] == sorted(d for _, d in values), f"{where}: progress never goes back"


def test_a_long_batch_keeps_beating_and_is_not_taken_for_lost(shared_cluster, settings):
    settings.GALCAT_JOB_LOST_AFTER = 1.5  # the cluster beats every 0.5 s
    j = demo_job(2, batch_size=2, delay=2.0)  # one batch of 4 s, no progress inside it
    wait_for(lambda: job(j.pk).status == Job.Status.RUNNING, 30, what="the batch to start")
    beats = set()
    while job(j.pk).status == Job.Status.RUNNING:
        assert mark_lost_jobs() == 0
        beats.add(job(j.pk).heartbeat)
        time.sleep(0.3)
    assert job(j.pk).status == Job.Status.SUCCEEDED
    assert len(beats) >= 4, "the heartbeat moved during the batch"


def test_a_failing_task_is_recorded_and_does_not_block_the_queue(shared_cluster):
    bad = demo_job(30, batch_size=10, fail_on=[15])
    good = demo_job(30, batch_size=10)
    wait_for(lambda: job(good.pk).status == Job.Status.SUCCEEDED, 60, what="the job behind the failure")
    wait_for(lambda: job(bad.pk).status == Job.Status.FAILED, 30, what="the failing job to end")
    failed = job(bad.pk)
    assert "ValueError: demo failure on item 15" in failed.error
    assert failed.done == 20 and list(failed.result["batches"]["failed"]) == ["1"]
    from django_q.models import Task

    task = Task.objects.get(name=f"job{bad.pk}-b1-g1")
    assert not task.success and "demo failure on item 15" in task.result


def test_a_gpu_cluster_takes_only_the_gpu_queue(clusters):
    from jobs.tasks import run_batched

    cpu_job = demo_job(20, batch_size=10)
    gpu_run = f"gpu-{cpu_job.pk}"
    gpu_job = run_batched("demo", "jobs.tasks.demo_square", range(40), batch_size=10, queue="gpu", func_kwargs={"run": gpu_run})
    gpu = clusters("gpu", Q_CLUSTER_NAME="gpu")
    wait_for(lambda: job(gpu_job.pk).status == Job.Status.SUCCEEDED, 60, 0.2, what="the gpu job")

    def session_of(worker: str) -> int:
        return os.getsid(int(worker.rsplit(":", 1)[1]))

    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT run, worker FROM galcat_demo_square WHERE run IN (%s, %s)", [gpu_run, job(cpu_job.pk).params["run"]])
        rows = cur.fetchall()
    gpu_sessions = {session_of(w) for r, w in rows if r == gpu_run}
    assert gpu_sessions == {gpu.proc.pid}, "every gpu batch ran in the gpu cluster"
    cpu_sessions = {session_of(w) for r, w in rows if r != gpu_run}
    assert gpu.proc.pid not in cpu_sessions, "the gpu cluster leaves the cpu queue alone"
