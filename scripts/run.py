"""`make run`: the whole site on one machine.

Starts the embedded PostgreSQL, migrates, loads the sample data when the catalog is empty,
makes sure an admin login exists, then runs one django-q2 cluster and the web server on
127.0.0.1:8000 until Ctrl-C or SIGTERM, and stops all of them (PostgreSQL included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = os.environ.get("GALCAT_HOST", "127.0.0.1")
PORT = os.environ.get("GALCAT_PORT", "8000")
STOP_WAIT = 30.0


def manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=BASE_DIR, check=True)


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    # Own session: Ctrl-C reaches only this supervisor, which stops children in order.
    full_env = {**os.environ, **env} if env else None
    return subprocess.Popen([PY, "manage.py", *args], cwd=BASE_DIR, start_new_session=True, env=full_env)


def stop_child(proc: subprocess.Popen, name: str, *, group: bool) -> None:
    if proc.poll() is not None:
        return
    print(f"stopping {name} (pid {proc.pid})", flush=True)
    try:
        # qcluster must get SIGTERM on its main process only (a group signal can hang it).
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        proc.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop in {STOP_WAIT:.0f} s: killing it", flush=True)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    # Anything left in its session (worker processes) goes too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> int:
    os.chdir(BASE_DIR)
    started = subprocess.run([PY, "scripts/pg.py", "start"], check=True, capture_output=True, text=True)
    print(started.stdout.splitlines()[0], flush=True)
    # A server that was already running (a developer's shell, tests) is left running on exit.
    owns_postgres = started.stdout.strip().endswith("started")
    children: list[tuple[str, subprocess.Popen, bool]] = []
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        manage("migrate", "--noinput", "-v", "0")
        manage("load_sample", "--if-empty")
        manage("ensure_admin")
        for name, args, group, *env in worker_commands():
            children.append((name, spawn(*args, env=env[0] if env else None), group))
        children.append(("web server", spawn("runserver", f"{HOST}:{PORT}", "--noreload"), True))
        print(f"\n  The catalog is at http://{HOST}:{PORT}/  (admin: http://{HOST}:{PORT}/admin/)", flush=True)
        print("  Press Ctrl-C to stop the site, its workers and PostgreSQL.\n", flush=True)
        while not stopping:
            for name, proc, _ in children:
                if proc.poll() is not None:
                    print(f"{name} exited with status {proc.returncode}; stopping", flush=True)
                    stopping, code = True, 1
            time.sleep(0.5)
    except subprocess.CalledProcessError as exc:
        print(f"setup failed: {exc}", flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name, proc, group in reversed(children):
            stop_child(proc, name, group=group)
        if owns_postgres:
            subprocess.run([PY, "scripts/pg.py", "stop"])
    return code


def gpu_worker_wanted() -> bool:
    """Run a gpu cluster here? GALCAT_GPU_WORKER=1 forces it, 0 forbids it; by default only
    when torch sees CUDA."""
    forced = os.environ.get("GALCAT_GPU_WORKER", "auto").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def worker_commands() -> list[tuple]:
    """The django-q2 clusters this machine runs: (name, manage.py arguments, signal the group, env).

    Always the cpu cluster; also a gpu cluster (queue `gpu`, selected by Q_CLUSTER_NAME, which
    django-q2 reads at import) when CUDA is present or GALCAT_GPU_WORKER=1. Then every child
    (web server included) gets GALCAT_GPU_QUEUE=1, so GPU work is queued for that cluster.
    """
    commands: list[tuple] = [("cpu task cluster", ("qcluster",), False, {})]
    if gpu_worker_wanted():
        os.environ["GALCAT_GPU_QUEUE"] = "1"
        commands.append(("gpu task cluster", ("qcluster",), False, {"Q_CLUSTER_NAME": "gpu"}))
    return commands


if __name__ == "__main__":
    sys.exit(main())
