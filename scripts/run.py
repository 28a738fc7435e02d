"""`make run`: the whole site on one machine, under a supervisor.

Starts the embedded PostgreSQL, migrates, collects the static files (whitenoise serves them),
loads the sample data when the catalog is empty and makes sure an admin login exists; then
runs one django-q2 cluster (two with a GPU) and the production web server (gunicorn with
threaded workers, config/gunicorn.py) on 127.0.0.1:8000 until Ctrl-C or SIGTERM.

Supervision: each child runs in its own session. When a child's main process exits, whatever
is left of its session (gunicorn workers, the cluster's sentinel, pusher, monitor and workers)
is killed and the child is started again after a delay that doubles from 1 s to 30 s (back to
1 s once it has run for a minute); after 10 quick failures in a row the site stops. A dead
PostgreSQL is started again the same way. On stop: SIGTERM to each child's main process (the
web server first), SIGKILL to what is left of its session after 30 s, then PostgreSQL is
stopped when this supervisor started it. Every action is logged with a time.

The site runs with DEBUG off: DJANGO_SECRET_KEY comes from the environment or from
var/secret_key.txt, generated on the first run (GALCAT_VAR_DIR moves var/).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from config.database import embedded_pgdata, live_postmaster  # noqa: E402

PY = sys.executable
HOST = os.environ.get("GALCAT_HOST", "127.0.0.1")
PORT = os.environ.get("GALCAT_PORT", "8000")
VAR_DIR = Path(os.environ.get("GALCAT_VAR_DIR", BASE_DIR / "var"))
STOP_WAIT = 30.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
STABLE_AFTER = 60.0  # a child that ran this long restarts with the first delay again
GIVE_UP_AFTER = 10  # quick failures in a row


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} supervisor: {message}", flush=True)


def secret_key() -> str:
    """DJANGO_SECRET_KEY, else the key in var/secret_key.txt (made once, readable by its owner only)."""
    if os.environ.get("DJANGO_SECRET_KEY"):
        return os.environ["DJANGO_SECRET_KEY"]
    path = VAR_DIR / "secret_key.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50) + "\n")
    return path.read_text().strip()


def site_environment() -> None:
    """The environment every child inherits: DEBUG off unless asked, the secret key, var/ paths."""
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ["DJANGO_SECRET_KEY"] = secret_key()
    os.environ.setdefault("GALCAT_STATIC_ROOT", str(VAR_DIR / "static"))


def session_processes(sid: int) -> list[psutil.Process]:
    """Live processes of session `sid` (a child and everything it started that did not leave)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return found


class Child:
    """One supervised command in its own session, restarted with backoff when it exits."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        self.name, self.argv, self.env = name, argv, env or {}
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.delay = BACKOFF_FIRST
        self.failures = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=BASE_DIR, start_new_session=True, env={**os.environ, **self.env})
        self.started = time.monotonic()
        self.restart_at = None
        log(f"started {self.name} (pid {self.proc.pid})")

    def check(self) -> bool:
        """Restart when due; returns False once it failed GIVE_UP_AFTER times in a row."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return True
        if self.proc is None or self.proc.poll() is None:
            return True
        ran = now - self.started
        left = self.kill_session()
        if ran >= STABLE_AFTER:
            self.failures, self.delay = 1, BACKOFF_FIRST
        else:
            self.failures += 1
            self.delay = BACKOFF_FIRST if self.failures == 1 else min(self.delay * 2, BACKOFF_MAX)
        log(
            f"{self.name} (pid {self.proc.pid}) exited with status {self.proc.returncode} after {ran:.0f} s; "
            f"killed {left} process(es) left in its session; restarting in {self.delay:.0f} s"
        )
        if self.failures >= GIVE_UP_AFTER:
            log(f"{self.name} failed {self.failures} times in a row: giving up")
            return False
        self.restart_at = now + self.delay
        return True

    def kill_session(self) -> int:
        """SIGKILL to every process left in the child's session; returns how many."""
        if self.proc is None:
            return 0
        left = session_processes(self.proc.pid)
        for proc in left:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)
        return len(left)

    def stop(self) -> None:
        """SIGTERM to the main process (a group signal can hang qcluster), SIGKILL to the rest."""
        self.restart_at = None
        if self.proc is None:
            return
        if self.proc.poll() is None:
            log(f"stopping {self.name} (pid {self.proc.pid})")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop in {STOP_WAIT:.0f} s: killing it")
        left = self.kill_session()
        if left:
            log(f"killed {left} process(es) left in the session of {self.name}")
        self.proc.wait()


class Postgres:
    """The embedded PostgreSQL (its postmaster runs in a session of its own): started again with
    backoff when it is not running."""

    def __init__(self):
        self.pgdata = embedded_pgdata(BASE_DIR)
        self.delay = BACKOFF_FIRST
        self.retry_at = 0.0
        self.last_check = 0.0
        self.up_since = time.monotonic()

    def running(self) -> bool:
        return live_postmaster(self.pgdata) is not None

    def start(self) -> str:
        """Start it (idempotent); returns scripts/pg.py's last line: 'started' or 'already running'."""
        out = subprocess.run([PY, "scripts/pg.py", "start"], cwd=BASE_DIR, check=True, capture_output=True, text=True, timeout=120)
        print(out.stdout.splitlines()[0], flush=True)
        self.up_since = time.monotonic()
        return out.stdout.strip().splitlines()[-1]

    def check(self) -> None:
        now = time.monotonic()
        if now - self.last_check < 1.0 or now < self.retry_at:
            return
        self.last_check = now
        if self.running():
            if now - self.up_since >= STABLE_AFTER:
                self.delay = BACKOFF_FIRST
            return
        log("PostgreSQL is not running: starting it")
        try:
            self.start()
            log("PostgreSQL is running again")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log(f"PostgreSQL did not start ({exc}); next try in {self.delay:.0f} s")
            self.retry_at = now + self.delay
            self.delay = min(self.delay * 2, BACKOFF_MAX)

    def stop(self) -> None:
        subprocess.run([PY, "scripts/pg.py", "stop"], cwd=BASE_DIR)


def manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=BASE_DIR, check=True)


def main() -> int:
    os.chdir(BASE_DIR)
    site_environment()
    postgres = None if os.environ.get("DATABASE_URL", "").strip() else Postgres()
    # A server that was already running (a developer's shell, tests) is left running on exit.
    owns_postgres = postgres is not None and postgres.start() == "started"
    children: list[Child] = []
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        manage("migrate", "--noinput", "-v", "0")
        manage("collectstatic", "--noinput", "-v", "0")
        manage("load_sample", "--if-empty")
        manage("ensure_admin")
        for name, args, env in worker_commands():
            children.append(Child(name, [PY, "manage.py", *args], env))
        children.append(Child("web server", [PY, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"]))
        for child in children:
            child.start()
        print(f"\n  The catalog is at http://{HOST}:{PORT}/  (admin: http://{HOST}:{PORT}/admin/)", flush=True)
        print("  Press Ctrl-C to stop the site, its workers and PostgreSQL.\n", flush=True)
        while not stopping:
            if postgres is not None:
                postgres.check()
            if not all(child.check() for child in children):
                stopping, code = True, 1
            time.sleep(0.25)
        log("stopping")
    except subprocess.CalledProcessError as exc:
        print(f"setup failed: {exc}", flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        if owns_postgres:
            postgres.stop()
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


def worker_commands() -> list[tuple[str, tuple[str, ...], dict[str, str]]]:
    """The django-q2 clusters this machine runs: (name, manage.py arguments, extra environment).

    Always the cpu cluster; also a gpu cluster (queue `gpu`, selected by Q_CLUSTER_NAME, which
    django-q2 reads at import) when CUDA is present or GALCAT_GPU_WORKER=1. Then every child
    (web server included) gets GALCAT_GPU_QUEUE=1, so GPU work is queued for that cluster.
    """
    commands: list[tuple[str, tuple[str, ...], dict[str, str]]] = [("cpu task cluster", ("qcluster",), {})]
    if gpu_worker_wanted():
        os.environ["GALCAT_GPU_QUEUE"] = "1"
        commands.append(("gpu task cluster", ("qcluster",), {"Q_CLUSTER_NAME": "gpu"}))
    return commands


if __name__ == "__main__":
    sys.exit(main())
