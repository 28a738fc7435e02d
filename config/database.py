"""Database connection settings: an external PostgreSQL from DATABASE_URL, or the embedded one.

The embedded server is PostgreSQL 16 from the ``pgserver`` wheel, with its data directory under
``var/pgdata`` in the checkout. It listens on a Unix socket only. Any process that needs the
database (runserver, qcluster, pytest, a management command) starts it when it is not running;
``scripts/pg.py stop`` (called by ``make run`` on exit) stops it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

# django-q2's ORM broker polls the database constantly: keep connections (NOTES.md measured
# 26-33 tasks/s with CONN_MAX_AGE=0 against about 100 with 60 s).
CONN_MAX_AGE = 60
# Seconds a web request waits for a pooled connection before it fails (GALCAT_DB_POOL): with a
# connection per thread it waits only while PostgreSQL is unreachable.
POOL_TIMEOUT = 5
POOL_RECONNECT_TIMEOUT = 3


def parse_database_url(url: str) -> dict:
    """Django DATABASES entry for a ``postgres://user:pass@host:port/name?options`` URL."""
    parts = urlparse(url)
    if parts.scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, got scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or unquote(parts.hostname or "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": query,
    }


def embedded_server(pgdata: Path):
    """Start (or attach to) the embedded PostgreSQL server and return its pgserver handle.

    The server is left running when this process exits (cleanup_mode=None) because several
    processes share it; ``scripts/pg.py stop`` stops it.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if (pgdata / "postmaster.pid").exists() and live_postmaster(pgdata) is None:
        _remove_stale_locks(pgdata)
    return pgserver.get_server(pgdata, cleanup_mode=None)


def _remove_stale_locks(pgdata: Path) -> None:
    """Remove the lock files (data directory and socket) of a postmaster that died (kill -9, a
    crash) while it is still a zombie: pgserver would take it for a running server, and
    PostgreSQL refuses a lock file whose pid exists, so nothing could start until init reaps it.
    PostgreSQL's shared-memory check still refuses to start while old backends live on."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    if len(lines) < 5:
        return
    pid, port, socket_dir = lines[0].strip(), lines[3].strip(), lines[4].strip()
    for path in (Path(socket_dir) / f".s.PGSQL.{port}.lock", pgdata / "postmaster.pid"):
        try:
            if path.read_text().split("\n", 1)[0].strip() == pid:
                path.unlink()
        except OSError:
            continue


def live_postmaster(pgdata: Path):
    """pgserver's PostmasterInfo of the server of `pgdata` while its postmaster is alive, else
    None. A killed postmaster stays a zombie until its parent (init, after pg_ctl's fork) reaps
    it, up to about 2 s here; psutil, and so pgserver, count a zombie as running."""
    import warnings

    import psutil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import PostmasterInfo
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
        if info is None or not info.is_running() or info.process.status() == psutil.STATUS_ZOMBIE:
            return None
        return info
    except (OSError, ValueError, psutil.Error):
        return None


def embedded_settings(pgdata: Path, name: str = "galcat") -> dict:
    """Django DATABASES entry for the embedded server, creating the database on first use."""
    server = embedded_server(pgdata)
    info = server.get_postmaster_info()
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{name}";')
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(info.socket_dir),
        "PORT": str(info.port or 5432),
        "OPTIONS": {},
    }


def max_connections() -> int:
    """max_connections of the embedded server (scripts/pg.py sets it): GALCAT_PG_MAX_CONNECTIONS,
    default 200. Budget on one machine: web 3 processes x 4 pooled connections (config/gunicorn.py),
    a cluster about 8 (workers, their heartbeat threads, pusher, monitor, scheduler), a gpu
    cluster, management commands, and test runs that share a developer's server (each pytest
    process and its qcluster subprocesses)."""
    return int(os.environ.get("GALCAT_PG_MAX_CONNECTIONS", 200))


def embedded_server_settings() -> dict[str, str]:
    """Settings that scripts/pg.py keeps on the embedded server beyond initdb's, as SHOW prints
    them: max_connections (see max_connections); wal_buffers 64MB, where the default (1/32 of
    shared_buffers, 4MB) filled over and over in a bulk import, each time the backend writing
    the log itself: an INSERT of 1M galaxies took 4.3-4.8 s against 5.3-7.7 s at 4MB, runs
    alternating; max_wal_size 4GB, so that a catalog import (2.1 GB of log for 4M galaxies with
    names) does not force checkpoints midway, each one making the next write of every page log
    it whole again (PostgreSQL's advice for populating a database, manual section 14.4)."""
    return {"max_connections": str(max_connections()), "wal_buffers": "64MB", "max_wal_size": "4GB"}


def embedded_pgdata(base_dir: Path) -> Path:
    """Data directory of the embedded server: $GALCAT_PGDATA, else var/pgdata."""
    return Path(os.environ.get("GALCAT_PGDATA", base_dir / "var" / "pgdata"))


def database_settings(base_dir: Path) -> dict:
    """The ``default`` database: DATABASE_URL when set, else the embedded server."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        db = parse_database_url(url)
    else:
        db = embedded_settings(embedded_pgdata(base_dir), os.environ.get("GALCAT_DB_NAME", "galcat"))
    pool_size = int(os.environ.get("GALCAT_DB_POOL") or 0)
    if pool_size > 0:
        # Web server processes (config/gunicorn.py sets GALCAT_DB_POOL to its thread count): one
        # psycopg pool per process, at most a connection per thread, checked before each use
        # (a restarted PostgreSQL leaves broken connections behind). Pooling needs CONN_MAX_AGE 0.
        db["CONN_MAX_AGE"] = 0
        # reconnect_timeout: give up a failing reconnection after a few seconds, so the next
        # request starts a fresh attempt (the pool's backoff would otherwise grow to minutes
        # while PostgreSQL restarts).
        db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": pool_size,
            "timeout": POOL_TIMEOUT,
            "max_idle": 60,
            "reconnect_timeout": POOL_RECONNECT_TIMEOUT,
        }
    else:
        db["CONN_MAX_AGE"] = CONN_MAX_AGE
    db["CONN_HEALTH_CHECKS"] = True  # with a pool: psycopg_pool's check before each use
    # JIT planning cost 8-50 ms on the catalog's cheap indexed queries (NOTES.md): turn it off.
    options = db.setdefault("OPTIONS", {})
    options.setdefault("options", "-c jit=off")
    return db
