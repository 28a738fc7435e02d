"""Start, stop or describe the embedded PostgreSQL server (data in var/pgdata).

python scripts/pg.py start|stop|status
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from config.database import embedded_pgdata, embedded_server, embedded_server_settings, live_postmaster  # noqa: E402

PGDATA = embedded_pgdata(BASE_DIR)


def _pg_ctl(*args: str) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", *args], pgdata=PGDATA, user="pgserver" if os.geteuid() == 0 else None)


def _configure(server, just_started: bool) -> None:
    """Apply config.database.embedded_server_settings by ALTER SYSTEM. A server this command
    just started is restarted at once when one of them needs it (max_connections, wal_buffers);
    a running one (others use it) keeps those until its next start and reloads the others."""
    want = embedded_server_settings()
    names = ", ".join(f"'{name}'" for name in want)
    rows = server.psql(f"SELECT name, current_setting(name), context FROM pg_settings WHERE name IN ({names});")
    now = {}
    for line in rows.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 3 and cells[0] in want:
            now[cells[0]] = (cells[1], cells[2])
    changed = [name for name, value in want.items() if now.get(name, (None,))[0] != value]
    if not changed:
        return
    for name in changed:
        server.psql(f"ALTER SYSTEM SET {name} = '{want[name]}';")
    server.psql("SELECT pg_reload_conf();")
    restart = [name for name in changed if now.get(name, (None, "postmaster"))[1] == "postmaster"]
    described = ", ".join(f"{name} {now.get(name, ('?',))[0]} -> {want[name]}" for name in changed)
    if restart and just_started:
        _pg_ctl("restart")
        print(described)
    elif restart:
        print(f"{described}: {', '.join(restart)} applies at the next start")
    else:
        print(described)


def start() -> None:
    """Start the server; the last line printed is 'started' or 'already running'."""
    was_running = live_postmaster(PGDATA) is not None
    server = embedded_server(PGDATA)
    _configure(server, just_started=not was_running)
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
