"""The Redis broker (GALCAT_REDIS_URL) with a real redis-server started here: a batch job runs
through Redis, survives a killed worker, and every item is written once.

Redis hands a task over when a cluster pops it (no lock, no re-delivery), so the batch a killed
worker held comes back only through jobs.tasks.recover_lost_work, which queues it again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from django_q.conf import Conf
from django_q.models import OrmQ

from jobs.models import Job
from jobs.tasks import demo_job, demo_rows
from tests.jobs.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180), pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_url():
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (`make redis`, or apt-get install redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="galcat-redis-"))  # short: a socket path has ~100 characters
    sock = folder / "redis.sock"
    log = open(folder / "redis.log", "wb")
    proc = subprocess.Popen(
        [exe, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(sock.exists, 20, what="redis-server to listen")
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def redis_broker(redis_url, settings, monkeypatch):
    """This test process enqueues to Redis as a site with GALCAT_REDIS_URL does."""
    q = {k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"}
    settings.Q_CLUSTER = {**q, "redis": redis_url}
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", redis_url)
    return redis_url


def test_batches_run_through_redis_and_survive_a_killed_worker(redis_broker, clusters, tmp_path):
    trace = tmp_path / "trace.txt"
    cluster = clusters("redis", GALCAT_REDIS_URL=redis_broker, GALCAT_Q_TIMEOUT="300", GALCAT_Q_RETRY="600")
    cluster.wait_ready()
    j = demo_job(60, batch_size=10, delay=0.2, trace=str(trace))  # 6 batches of 2 s
    assert not OrmQ.objects.exists(), "the tasks went to Redis, not to the ORM queue"

    def first_start():
        lines = trace.read_text().split("\n") if trace.exists() else []
        return [tuple(int(x) for x in ln.split()) for ln in lines if ln.strip()]

    victim, first_item = wait_for(first_start, 60, 0.05, what="a batch to start")[0]
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: Job.objects.get(pk=j.pk).status == Job.Status.SUCCEEDED, 90, 0.2, what="the job to complete")
    final = Job.objects.get(pk=j.pk)
    assert (final.done, final.total) == (60, 60)
    assert f":{victim} lost" in final.log_tail, final.log_tail
    assert [first for _, first in first_start()].count(first_item) == 2, "the killed batch ran again"
    rows = demo_rows(final.params["run"])
    assert [r[0] for r in rows] == list(range(60))
    assert {r[2] for r in rows} == {1}, "every item written exactly once"


def test_a_killed_cluster_takes_popped_tasks_along_and_they_come_back(redis_broker, clusters, tmp_path):
    env = {"GALCAT_REDIS_URL": redis_broker, "GALCAT_Q_TIMEOUT": "300", "GALCAT_Q_RETRY": "600", "GALCAT_Q_RELEASE_AFTER": "2"}
    first = clusters("redis-a", **env)
    first.wait_ready()
    j = demo_job(80, batch_size=10, delay=0.05)  # 8 batches of 0.5 s
    wait_for(lambda: Job.objects.get(pk=j.pk).done >= 20, 60, what="two batches done")
    first.kill9()  # with the batch in flight and the tasks its pusher popped
    clusters("redis-b", **env)
    wait_for(lambda: Job.objects.get(pk=j.pk).status == Job.Status.SUCCEEDED, 120, 0.5, what="the job to complete")
    final = Job.objects.get(pk=j.pk)
    assert (final.done, final.total) == (80, 80)
    assert "lost in a cluster's hands; queued again" in final.log_tail, final.log_tail
    rows = demo_rows(final.params["run"])
    assert [r[0] for r in rows] == list(range(80)) and {r[2] for r in rows} == {1}
