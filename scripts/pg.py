"""Start, stop or describe the embedded PostgreSQL server (data in var/pgdata).

python scripts/pg.py start|stop|status
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from config.database import embedded_pgdata, embedded_server, live_postmaster, max_connections  # noqa: E402

PGDATA = embedded_pgdata(BASE_DIR)


def _pg_ctl(*args: str) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", *args], pgdata=PGDATA, user="pgserver" if os.geteuid() == 0 else None)


def _size_connections(server, just_started: bool) -> None:
    """max_connections = GALCAT_PG_MAX_CONNECTIONS (web + workers + tests, see config.database).
    A server this command just started is restarted at once with it; a running one (others use
    it) keeps its value until its next start."""
    want = max_connections()
    now = int(server.psql("SHOW max_connections;").split()[2])
    if now == want:
        return
    server.psql(f"ALTER SYSTEM SET max_connections = {want};")
    if just_started:
        _pg_ctl("restart")
        print(f"max_connections {now} -> {want}")
    else:
        print(f"max_connections is {now}: {want} applies at the next start")


def start() -> None:
    """Start the server; the last line printed is 'started' or 'already running'."""
    was_running = live_postmaster(PGDATA) is not None
    server = embedded_server(PGDATA)
    _size_connections(server, just_started=not was_running)
    info = live_postmaster(PGDATA)
    print(f"PostgreSQL running: pid {info.pid}, socket {info.socket_dir}")
    print("already running" if was_running else "started")


def stop() -> None:
    info = live_postmaster(PGDATA)
    if info is None:
        print("PostgreSQL is not running")
        return
    try:
        _pg_ctl("stop")
    except Exception as exc:  # fall back to a signal: SIGINT is PostgreSQL's fast shutdown
        import signal

        print(f"pg_ctl stop failed ({exc}); sending SIGINT to {info.pid}")
        os.kill(info.pid, signal.SIGINT)
    print("PostgreSQL stopped")


def status() -> None:
    info = live_postmaster(PGDATA)
    print(f"PostgreSQL running: pid {info.pid}" if info else "PostgreSQL is not running")


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "status"
    {"start": start, "stop": stop, "status": status}[action]()
