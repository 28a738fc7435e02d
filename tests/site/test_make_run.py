"""`make run`'s supervisor end to end: own PostgreSQL, migrate, sample, cluster, web server,
clean stop on SIGTERM with no process left behind."""

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode()


@pytest.mark.slow
def test_run_serves_site_and_stops_everything(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "GALCAT_PGDATA": str(tmp_path / "pgdata"),
        "GALCAT_MEDIA_ROOT": str(tmp_path / "media"),
        "GALCAT_VAR_DIR": str(tmp_path / "var"),
        "GALCAT_STATIC_ROOT": str(tmp_path / "var" / "static"),
        "GALCAT_SAMPLE_DATA": str(tmp_path / "no-shared-data"),  # forces the synthetic sample
        "GALCAT_PORT": str(port),
        "GALCAT_ADMIN_PASSWORD": "admin-pw-for-tests",
    }
    env.pop("DATABASE_URL", None)
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "scripts/run.py"], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        status, body = None, ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            try:
                status, body = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                time.sleep(1)
        assert status == 200, (tmp_path / "run.log").read_text()
        assert 'id="count-galaxies">120<' in body  # the synthetic sample was loaded
        assert _get(f"http://127.0.0.1:{port}/admin/login/")[0] == 200
        output = (tmp_path / "run.log").read_text()
        assert f"http://127.0.0.1:{port}/" in output and "admin-pw-for-tests" in output
        children = psutil.Process(proc.pid).children(recursive=True)
        postmaster = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "pgdata") in " ".join(p.info["cmdline"] or [])]
        assert any("qcluster" in " ".join(c.cmdline()) for c in children)
        assert postmaster, "the embedded PostgreSQL must run from the given data directory"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
        log.close()
    time.sleep(1)
    leftovers = [c for c in children + postmaster if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not leftovers, f"processes left behind: {leftovers}"
    assert proc.returncode == 0


@pytest.mark.django_db
def test_ensure_admin_keeps_the_password_in_the_sites_var_dir(settings, tmp_path, monkeypatch):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    monkeypatch.delenv("GALCAT_ADMIN_PASSWORD", raising=False)
    settings.GALCAT_VAR_DIR = tmp_path / "var"
    shared = BASE_DIR / "var" / "admin_password.txt"
    before = shared.read_text() if shared.exists() else None
    call_command("ensure_admin", stdout=io.StringIO())
    password = (tmp_path / "var" / "admin_password.txt").read_text().strip()
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert (shared.read_text() if shared.exists() else None) == before, "the checkout's var/ is left alone"
