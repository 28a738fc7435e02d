"""`make run` under faults: kill -9 of the web server, the cluster's main process, its sentinel,
a worker and the postmaster, one after another on one site. After each the site answers again
within 10 s and a job in flight completes with every item written once; after SIGTERM nothing
is left running.

The site is scripts/run.py with its own PostgreSQL data directory, var folder and port (all in a
temporary directory): the shared server in var/pgdata and port 8000 are never touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
ANSWER_WITHIN = 10.0  # s after a kill
JOB_WITHIN = 120.0  # s for a job in flight to complete

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """scripts/run.py on its own data directory, var folder and port."""

    def __init__(self, work: Path):
        self.work = work
        self.port = _free_port()
        self.pgdata = work / "pgdata"
        self.env = {
            **os.environ,
            "GALCAT_PGDATA": str(self.pgdata),
            "GALCAT_VAR_DIR": str(work / "var"),
            "GALCAT_MEDIA_ROOT": str(work / "var" / "media"),
            "GALCAT_STATIC_ROOT": str(work / "var" / "static"),
            "GALCAT_SAMPLE_DATA": str(work / "no-shared-data"),  # the small synthetic sample
            "GALCAT_PORT": str(self.port),
            "GALCAT_ADMIN_PASSWORD": "faults-admin-pw",
            "GALCAT_WEB_WORKERS": "2",
            # No fits or predictions of the sample's images: the cluster runs only the tests' jobs.
            "GALCAT_IMAGE_PIPELINE": "",
        }
        for name in ("DATABASE_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY", "GALCAT_TESTING", "Q_CLUSTER_NAME"):
            self.env.pop(name, None)
        self.log_path = work / "run.log"
        self.proc: subprocess.Popen | None = None
        self.sessions: set[int] = set()

    def start(self) -> None:
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "scripts/run.py"], cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if not self.wait_answer(300):
            pytest.fail(f"the site did not come up:\n{self.log()}")
        end = time.monotonic() + 120  # the sample's own jobs (consensus) first
        while self.sql("SELECT count(*) FROM catalog_job WHERE status IN ('queued', 'running')")[0][0] and time.monotonic() < end:
            time.sleep(1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait_answer(self, timeout: float) -> float | None:
        """Seconds until / answers 200, or None after `timeout`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            assert self.proc.poll() is None, f"the supervisor exited:\n{self.log()}"
            if self.answers():
                return time.monotonic() - start
            time.sleep(0.2)
        return None

    def child(self, marker: str) -> psutil.Process:
        """The supervisor's child whose command line contains `marker`."""
        for c in psutil.Process(self.proc.pid).children():
            if marker in " ".join(c.cmdline()):
                self.sessions.add(c.pid)
                return c
        pytest.fail(f"no child {marker!r} of the supervisor")

    def postmaster(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])

    def sql(self, query: str, params=()) -> list[tuple]:
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        with psycopg.connect(dbname="galcat", user="postgres", host=lines[4], port=lines[3], connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def demo_job(self, items: int, batch_size: int, delay: float) -> int:
        # A terminal command signs its tasks with the site's key, as the cluster checks them.
        key = (self.work / "var" / "secret_key.txt").read_text().strip()
        out = subprocess.run(
            [sys.executable, "manage.py", "jobs", "demo", str(items), "--batch-size", str(batch_size), "--delay", str(delay)],
            cwd=BASE_DIR,
            env={**self.env, "DJANGO_SECRET_KEY": key},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return int(out.stdout.split("queued job ")[1].split(":")[0])

    def job(self, pk: int) -> tuple[str, int, int, dict]:
        return self.sql("SELECT status, done, total, result FROM catalog_job WHERE id = %s", [pk])[0]

    def wait_job_running(self, pk: int) -> dict:
        """Until a batch of the job is in a worker's hands; returns batches.running."""
        end = time.monotonic() + 90
        while time.monotonic() < end:
            try:
                running = self.job(pk)[3].get("batches", {}).get("running")
            except psycopg.Error:
                running = None
            if running:
                return running
            time.sleep(0.05)
        pytest.fail(f"job {pk} never ran a batch:\n{self.log()[-3000:]}")

    def assert_job_completes_once(self, pk: int, items: int) -> float:
        start = time.monotonic()
        status = None
        while time.monotonic() - start < JOB_WITHIN:
            try:
                status, done, total, _ = self.job(pk)
            except psycopg.Error:
                status = None
            if status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.5)
        assert status == "succeeded", f"job {pk} is {status} after {JOB_WITHIN:.0f} s:\n{self.log()[-3000:]}"
        (run,) = self.sql("SELECT params->>'run' FROM catalog_job WHERE id = %s", [pk])[0]
        rows = self.sql("SELECT item, runs FROM galcat_demo_square WHERE run = %s ORDER BY item", [run])
        assert [r[0] for r in rows] == list(range(items)), "every item has a row"
        assert {r[1] for r in rows} == {1}, "every item was written exactly once"
        return time.monotonic() - start


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("faults"))
    s.start()
    yield s
    if s.proc.poll() is None:
        s.proc.send_signal(signal.SIGTERM)
        try:
            s.proc.wait(120)
        except subprocess.TimeoutExpired:
            s.proc.kill()
    # Nothing of it may survive a failed test either.
    for sid in s.sessions | {s.proc.pid}:
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == sid:
                    p.kill()
            except (ProcessLookupError, psutil.Error):
                pass
    if (s.pgdata / "postmaster.pid").exists():
        try:
            os.kill(s.postmaster(), signal.SIGINT)
        except (ProcessLookupError, ValueError):
            pass


def kill_and_recover(site: Site, victim: int, *, items: int = 120, job: int | None = None) -> None:
    os.kill(victim, signal.SIGKILL)
    waited = site.wait_answer(ANSWER_WITHIN)
    assert waited is not None, f"no answer within {ANSWER_WITHIN:.0f} s of killing {victim}:\n{site.log()[-3000:]}"
    took = site.assert_job_completes_once(job, items) if job is not None else None
    print(f"\nkill -9 {victim}: site answered after {waited:.1f} s; job done {took and round(took, 1)} s later")


def test_kill_web_server(site):
    web = site.child("gunicorn")
    workers = web.children()
    os.kill(web.pid, signal.SIGKILL)
    start = time.monotonic()
    psutil.wait_procs(workers, timeout=ANSWER_WITHIN)  # its workers go with it
    waited = site.wait_answer(ANSWER_WITHIN)
    assert waited is not None and time.monotonic() - start < ANSWER_WITHIN, site.log()[-3000:]
    print(f"\nkill -9 web server: a new one answered after {time.monotonic() - start:.1f} s")
    assert site.child("gunicorn").pid != web.pid
    assert f"web server (pid {web.pid}) exited with status -9" in site.log()


def test_kill_cluster_main(site):
    cluster = site.child("qcluster")
    pk = site.demo_job(120, 10, 0.05)
    site.wait_job_running(pk)
    kill_and_recover(site, cluster.pid, job=pk)
    assert f"cpu task cluster (pid {cluster.pid}) exited with status -9" in site.log()
    assert not [p for p in psutil.process_iter() if _sid(p) == cluster.pid], "the dead cluster's processes are gone"


def test_kill_sentinel(site):
    cluster = site.child("qcluster")
    sentinel = cluster.children()[0]
    pk = site.demo_job(120, 10, 0.05)
    site.wait_job_running(pk)
    kill_and_recover(site, sentinel.pid, job=pk)
    assert not [p for p in psutil.process_iter() if _sid(p) == cluster.pid], "no orphan of the old cluster"


def test_kill_worker(site):
    pk = site.demo_job(120, 10, 0.1)
    running = site.wait_job_running(pk)
    worker = int(next(iter(running.values())).rsplit(":", 1)[1])
    kill_and_recover(site, worker, job=pk)


def test_kill_postmaster(site):
    pk = site.demo_job(120, 10, 0.05)
    site.wait_job_running(pk)
    old = site.postmaster()
    kill_and_recover(site, old, job=pk)
    assert site.postmaster() != old
    assert "PostgreSQL is running again" in site.log()


def test_sigterm_leaves_nothing_behind(site):
    site.child("qcluster"), site.child("gunicorn")  # their sessions are checked below
    processes = psutil.Process(site.proc.pid).children(recursive=True) + [psutil.Process(site.postmaster())]
    site.proc.send_signal(signal.SIGTERM)
    assert site.proc.wait(90) == 0
    time.sleep(1)
    left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"processes left behind: {left}"
    assert not [p for p in psutil.process_iter() if _sid(p) in site.sessions], "no process of any child's session"


def _sid(p: psutil.Process) -> int | None:
    try:
        return os.getsid(p.pid)
    except (ProcessLookupError, PermissionError):
        return None
