"""scripts/pg.py start after kill -9 of the postmaster: the dead postmaster is a zombie until
init reaps it (about 2 s here), and its lock files name it; a start must not wait for either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)


def _pg(pgdata: Path, action: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GALCAT_PGDATA": str(pgdata)}
    return subprocess.run([sys.executable, "scripts/pg.py", action], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def test_a_killed_postmaster_is_started_again_at_once(tmp_path):
    pgdata = tmp_path / "pgdata"
    assert _pg(pgdata, "start").returncode == 0
    try:
        old = _postmaster_pid(pgdata)
        os.kill(old, signal.SIGKILL)
        time.sleep(0.3)  # its backends notice and exit; init has not reaped it yet
        assert _pg(pgdata, "status").stdout.strip() == "PostgreSQL is not running"
        started = _pg(pgdata, "start")
        assert started.returncode == 0, started.stderr[-2000:]
        assert started.stdout.strip().splitlines()[-1] == "started"
        new = _postmaster_pid(pgdata)
        assert new != old and psutil.Process(new).status() != psutil.STATUS_ZOMBIE
    finally:
        _pg(pgdata, "stop")


def test_a_new_server_runs_with_the_projects_settings(tmp_path):
    from config.database import embedded_server, embedded_server_settings

    pgdata = tmp_path / "pgdata"
    assert _pg(pgdata, "start").returncode == 0
    try:
        want = embedded_server_settings()
        names = ", ".join(f"'{n}'" for n in want)
        out = embedded_server(pgdata).psql(f"SELECT name || '=' || current_setting(name) AS s FROM pg_settings WHERE name IN ({names});")
        assert dict(line.strip().split("=", 1) for line in out.splitlines() if "=" in line) == want
        again = _pg(pgdata, "start").stdout.strip().splitlines()  # nothing to change: no restart
        assert len(again) == 2 and again[-1] == "already running"
    finally:
        _pg(pgdata, "stop")
