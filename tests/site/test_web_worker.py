"""The web server's worker processes: config.gunicorn_worker (gthread with least-connections
accepting) and config.wsgi (the views imported at boot).

The shared table's functions directly, then a real gunicorn (three workers of the site's class
serving tests/site/pid_app.py) taking a burst of keep-alive clients.
"""

from __future__ import annotations

import collections
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config import gunicorn_worker

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def table():
    """The module's table, emptied before and after (this process stands in for the master)."""
    gunicorn_worker._table[:] = [0] * (2 * gunicorn_worker.SLOTS)
    yield gunicorn_worker._table
    gunicorn_worker._table[:] = [0] * (2 * gunicorn_worker.SLOTS)


def test_each_worker_claims_its_own_slot(table):
    slots = [gunicorn_worker.claim_slot(pid) for pid in (101, 102, 103)]
    assert len(set(slots)) == 3
    assert [table[2 * s] for s in slots] == [101, 102, 103]


def test_a_released_slot_is_claimed_again_with_no_connections(table):
    slot = gunicorn_worker.claim_slot(101)
    table[2 * slot + 1] = 7
    gunicorn_worker.release_slot(101)
    assert gunicorn_worker.claim_slot(202) == slot
    assert table[2 * slot + 1] == 0


def test_fewest_connections_leaves_out_the_asking_worker(table):
    own, other, third = (gunicorn_worker.claim_slot(pid) for pid in (101, 102, 103))
    table[2 * own + 1], table[2 * other + 1], table[2 * third + 1] = 0, 5, 3
    assert gunicorn_worker.fewest_connections(own) == 3
    gunicorn_worker.release_slot(103)
    assert gunicorn_worker.fewest_connections(own) == 5


def test_a_worker_alone_has_no_others_to_compare(table):
    own = gunicorn_worker.claim_slot(101)
    assert gunicorn_worker.fewest_connections(own) is None


def test_a_full_table_leaves_new_workers_unbalanced(table):
    for pid in range(1, gunicorn_worker.SLOTS + 1):
        assert gunicorn_worker.claim_slot(pid) is not None
    assert gunicorn_worker.claim_slot(999) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not listen")


@pytest.mark.timeout(120)
def test_a_burst_of_keep_alive_clients_spreads_over_the_workers():
    workers, clients = 3, 12
    port = _free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "-k", "config.gunicorn_worker.BalancedThreadWorker",
        "-w", str(workers), "--threads", "8", "--worker-connections", "100", "-b", f"127.0.0.1:{port}",
        "--chdir", str(BASE_DIR), "tests.site.pid_app:application",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_listening(port, proc)
        time.sleep(1.0)  # every worker booted and listening
        answers: dict[int, list[str]] = {}
        start = threading.Barrier(clients)

        def client(k: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            start.wait()
            pids = []
            for _ in range(3):  # one connection, kept alive
                conn.request("GET", "/")
                pids.append(conn.getresponse().read().decode())
            conn.close()
            answers[k] = pids

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == clients
        assert all(len(set(pids)) == 1 for pids in answers.values())  # kept alive on one worker
        per_worker = collections.Counter(pids[0] for pids in answers.values())
        assert len(per_worker) == workers
        assert max(per_worker.values()) <= clients // workers + 1, per_worker
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_wsgi_module_imports_the_views_before_any_request():
    code = "import sys, config.wsgi; print('catalog.views' in sys.modules, 'zoo.api_v1' in sys.modules)"
    env = {**os.environ, "DJANGO_DEBUG": "1"}  # the development key is accepted with DEBUG on
    out = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True"], out.stderr
