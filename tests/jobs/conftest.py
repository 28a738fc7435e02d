"""Fixtures of the job tests: users, inline task execution, and real qcluster processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from config.checks import DEV_SECRET_KEY
from core.roles import MEMBER
from tests.utils import user_with_role

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sync_tasks(settings):
    """Queued tasks run inline, in the test's transaction."""
    settings.GALCAT_TASKS_SYNC = True


@pytest.fixture
def other_member(db):
    return user_with_role(MEMBER, "member2")


def cluster_env(**extra: str) -> dict[str, str]:
    """Environment of a qcluster subprocess that works on this test process's test database."""
    env = dict(os.environ)
    db = django_settings.DATABASES["default"]
    env["GALCAT_DB_NAME"] = db["NAME"]  # the test database (already created by pytest-django)
    if env.get("DATABASE_URL"):
        from urllib.parse import urlparse, urlunparse

        parts = urlparse(env["DATABASE_URL"])
        env["DATABASE_URL"] = urlunparse(parts._replace(path="/" + db["NAME"]))
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "GALCAT_Q_WORKERS": "2",
            "GALCAT_Q_TIMEOUT": "5",
            "GALCAT_Q_RETRY": "6",
            "GALCAT_Q_POLL": "0.1",
            "GALCAT_Q_QUEUE_LIMIT": "4",
            "GALCAT_JOB_HEARTBEAT": "0.5",
            "GALCAT_LOG_LEVEL": "ERROR",
            "PYTHONPATH": str(ROOT),
        }
    )
    # The cluster checks task signatures with this process's key; the public development key is
    # only accepted with DEBUG on (config.checks).
    env["DJANGO_SECRET_KEY"] = django_settings.SECRET_KEY
    if django_settings.SECRET_KEY == DEV_SECRET_KEY:
        env["DJANGO_DEBUG"] = "1"
    env.pop("Q_CLUSTER_NAME", None)
    env.update(extra)
    return env


class Cluster:
    """One `manage.py qcluster` process tree in its own session."""

    def __init__(self, log: Path, **env: str):
        self.log = log
        self.env = cluster_env(**env)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Cluster:
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        fh.close()
        return self

    def processes(self) -> list[int]:
        """Pids of the processes in the cluster's session (main, sentinel, pusher, monitor, workers)."""
        import psutil

        pids = []
        for pid in psutil.pids():
            try:
                if os.getsid(pid) == self.proc.pid:
                    pids.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        return pids

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the workers are forked (2 workers + main, sentinel, pusher, monitor)."""
        wait_for(lambda: len(self.processes()) >= 6, timeout, 0.2, what=f"cluster {self.log.name} to start")

    def kill9(self) -> None:
        """SIGKILL to every process of the cluster at once: a worker machine dying."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM to the main process only (a group signal can hang it), then SIGKILL stragglers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)


@pytest.fixture
def clusters(tmp_path, django_db_setup):
    """A factory of qcluster processes on the test database; all killed at the end (a graceful
    stop takes seconds and proves nothing here)."""
    started: list[Cluster] = []

    def make(name: str = "c", **env: str) -> Cluster:
        c = Cluster(tmp_path / f"qcluster-{name}-{len(started)}.log", **env).start()
        started.append(c)
        return c

    yield make
    for c in started:
        c.kill9()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory, django_db_setup, django_db_blocker):
    """One qcluster for the tests of a module that do not kill it."""
    c = Cluster(tmp_path_factory.mktemp("qcluster") / "shared.log").start()
    yield c
    c.kill9()


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll predicate() until truthy; returns its value or fails the test."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
