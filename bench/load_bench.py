"""Load on the served site: votes/s and read requests/s with p50/p99 latency, against the
database's own insert rate measured in the same run.

    python bench/load_bench.py [--duration 8] [--clients 20,50] [--only all|votes|reads] [--keep-dir DIR]

Starts its own site with `scripts/run.py` (own PostgreSQL data directory and var folder in a
temporary directory, a free loopback port, the vote rate limit and API throttles lifted), waits
until the sample's jobs are done, creates volunteers with API tokens, then drives the site with
wrk (Lua scripts: each vote is a new volunteer/galaxy pair) at each client count, with and
without keep-alive (`Connection: close`). The ceiling is the same vote rows inserted straight
into PostgreSQL by 50 threads (one autocommit INSERT each, ON CONFLICT DO NOTHING). Also shows
the most PostgreSQL client connections seen during each run and the CPU time the web server's
processes spent per answered request (user + system, counted from its access log after the
queue has drained; on a machine shared with other work this moves much less than req/s does,
so compare it between runs). The site's copies of public pages for anonymous GETs (the galaxy
list and the /galaxies/ page, core.middleware.PublicCacheMiddleware) stay on; run with
GALCAT_PUBLIC_CACHE_SECONDS=0 in the environment to measure every request through its view.
Every wrk run is bounded by
--duration; the site is stopped (SIGTERM to the supervisor) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

VOTE_LUA = r"""
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local lines, i, close = {}, 0, false
function init(args)
  local n = tonumber(args[2])
  local k = 0
  for line in io.lines(args[1]) do
    if k % n == id then lines[#lines + 1] = line end
    k = k + 1
  end
  close = args[3] == "close"
end
function request()
  i = i + 1
  local token, pgc = (lines[i] or lines[#lines]):match("(%S+) (%S+)")
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Token " .. token}
  if close then headers["Connection"] = "close" end
  return wrk.format("POST", "/api/v1/votes/", headers, '{"pgc": ' .. pgc .. ', "inc": 61.5}')
end
"""
READ_LUA = r"""
function init(args)
  if args[1] == "close" then wrk.headers["Connection"] = "close" end
end
"""
DONE_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""
READS = {
    "galaxy list": "/api/v1/galaxies/?page_size=100",
    "cone (SCS)": "/scs/?RA=0.01&DEC=47.3&SR=1",
    "/galaxies/ page": "/galaxies/",
}
CEILING_THREADS = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def site_env(work: Path, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "GALCAT_PGDATA": str(work / "pgdata"),
        "GALCAT_VAR_DIR": str(work / "var"),
        "GALCAT_MEDIA_ROOT": str(work / "var" / "media"),
        "GALCAT_STATIC_ROOT": str(work / "var" / "static"),
        "GALCAT_PORT": str(port),
        "GALCAT_ADMIN_PASSWORD": "load-bench-admin",
        "GALCAT_VOTE_RATE": "1000000/1",
        "GALCAT_API_THROTTLE_ANON": "",
        "GALCAT_API_THROTTLE_USER": "",
        "GALCAT_WEB_ACCESS_LOG": str(work / "access.log"),  # counts the answers (served())
    }
    env.pop("DATABASE_URL", None)
    return env


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the site exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"no answer from {url} in {timeout:.0f} s")


def wait_jobs_idle(timeout: float = 600) -> None:
    from django_q.models import OrmQ

    from jobs.models import Job

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not Job.objects.filter(status__in=Job.ACTIVE).exists() and not OrmQ.objects.exists():
            return
        time.sleep(2)
    print("warning: jobs still active; measuring anyway", flush=True)


def make_voters(n: int, prefix: str) -> list[str]:
    """n new volunteers with API tokens; returns the tokens."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from core.roles import VOLUNTEER, ensure_groups

    ensure_groups()
    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"{prefix}-{i}", password="!") for i in range(n)])
    group = Group.objects.get(name=VOLUNTEER)
    group.user_set.add(*users)
    return [t.key for t in Token.objects.bulk_create([Token(user=u, key=Token.generate_key()) for u in users])]


def pair_lines(tokens: list[str], pgcs: list[int]) -> list[str]:
    """Every (token, pgc) pair once, consecutive lines on different volunteers."""
    u = len(tokens)
    return [f"{tokens[k % u]} {pgcs[k // u]}" for k in range(u * len(pgcs))]


class ConnectionWatch:
    """The most client connections PostgreSQL holds while a block runs (sampled every 0.25 s)."""

    def __init__(self, dsn: dict):
        self.dsn, self.peak, self._stop = dsn, 0, threading.Event()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(**self.dsn, autocommit=True) as conn:
            while not self._stop.wait(0.25):
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()[0]
                self.peak = max(self.peak, n - 1)

    def __enter__(self) -> ConnectionWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def web_cpu_seconds(site: subprocess.Popen) -> float:
    """User + system CPU seconds used so far by the site's gunicorn processes (master and
    workers, including workers already replaced after max_requests, which the master's reaped
    children's times hold): per request, a cost that other load on the shared cores does not
    change much."""
    import psutil

    total = 0.0
    for proc in psutil.Process(site.pid).children(recursive=True):
        try:
            if "gunicorn" in " ".join(proc.cmdline()):
                t = proc.cpu_times()
                total += t.user + t.system
                if proc.parent() is not None and proc.parent().pid == site.pid:  # the master
                    total += t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def drain(site: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until the web server has finished what the last run left queued (its CPU use over
    half a second falls under a tenth of a core), so no run is charged for the one before."""
    end, last = time.monotonic() + timeout, web_cpu_seconds(site)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = web_cpu_seconds(site)
        if now - last < 0.05:
            return
        last = now


def served(work: Path) -> int:
    """Requests the web server has answered so far (lines of its access log)."""
    try:
        with open(work / "access.log", "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def measured_run(site: subprocess.Popen, work: Path, dsn: dict, *args) -> tuple[dict, int]:
    """One wrk run (run_wrk's arguments), then the drain; adds the web CPU per answered request."""
    drain(site)
    cpu, n = web_cpu_seconds(site), served(work)
    with ConnectionWatch(dsn) as watch:
        r = run_wrk(*args)
    drain(site)
    r["answered"] = served(work) - n
    r["cpu_ms"] = (web_cpu_seconds(site) - cpu) * 1000 / max(r["answered"], 1)
    return r, watch.peak


def psycopg_dsn() -> dict:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"], "password": db["PASSWORD"]}


def db_ceiling(dsn: dict, tokens: list[str], pgcs: list[int], duration: float) -> float:
    """Vote rows/s inserted straight into PostgreSQL by CEILING_THREADS threads, one autocommit
    INSERT ... ON CONFLICT DO NOTHING each, on pairs the site never sees."""
    import psycopg
    from rest_framework.authtoken.models import Token

    user_ids = list(Token.objects.filter(key__in=tokens).values_list("user_id", flat=True))
    sql = (
        "INSERT INTO catalog_inclinationvote (user_id, galaxy_id, inc, rejected, not_sure, better_image, bad_tf, ambiguous,"
        " disturbed, hi, face_on, not_spiral, multiple, note, kind, source, round, created)"
        " VALUES (%s, %s, 61.5, false, false, false, false, false, false, false, false, false, false, '', 'target', 'api', 0, now())"
        " ON CONFLICT DO NOTHING"
    )
    galaxy_ids = dict(_galaxy_ids(pgcs))
    counts = [0] * CEILING_THREADS
    stop_at = time.monotonic() + duration

    def work(t: int) -> None:
        with psycopg.connect(**dsn, autocommit=True) as conn:
            k = t
            while time.monotonic() < stop_at:
                user = user_ids[k % len(user_ids)]
                galaxy = galaxy_ids[pgcs[(k // len(user_ids)) % len(pgcs)]]
                conn.execute(sql, (user, galaxy))
                counts[t] += 1
                k += CEILING_THREADS

    threads = [threading.Thread(target=work, args=(t,)) for t in range(CEILING_THREADS)]
    start = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts) / (time.monotonic() - start)


def _galaxy_ids(pgcs: list[int]):
    from catalog.models import Galaxy

    return Galaxy.objects.filter(pgc__in=pgcs).values_list("pgc", "pk")


def run_wrk(url: str, script: Path, args: list[str], clients: int, duration: float) -> dict:
    cmd = ["wrk", "-t2", f"-c{clients}", f"-d{duration:.0f}s", "--timeout", "5s", "-s", str(script), url, "--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result: {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("RESULT ") :])
    r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--clients", default="20,50", help="concurrent connections, comma-separated")
    parser.add_argument("--keep-dir", help="work folder to keep (default: a temporary one, removed)")
    parser.add_argument("--only", choices=("all", "votes", "reads"), default="all", help="which targets to drive")
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    clients = [int(c) for c in opts.clients.split(",")]
    work = Path(opts.keep_dir or tempfile.mkdtemp(prefix="load_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = site_env(work, port)
    log = open(work / "site.log", "w")
    site = subprocess.Popen([sys.executable, "scripts/run.py"], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(base + "/", site, 600)
        for key in ("GALCAT_PGDATA", "GALCAT_VAR_DIR", "GALCAT_MEDIA_ROOT", "GALCAT_STATIC_ROOT"):
            os.environ[key] = env[key]
        # This process works on the site's database with the site's settings (DEBUG off, its key).
        os.environ.setdefault("DJANGO_DEBUG", "0")
        os.environ.setdefault("DJANGO_SECRET_KEY", (work / "var" / "secret_key.txt").read_text().strip())
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django

        django.setup()
        from catalog.models import Galaxy

        wait_jobs_idle()
        pgcs = list(Galaxy.objects.filter(ra__isnull=False).order_by("pgc").values_list("pgc", flat=True))
        runs = len(clients) * 2
        per_run = int(1500 * opts.duration)  # pairs per vote run: enough for 1,500 votes/s
        voters = make_voters(max(50, -(-per_run * runs // len(pgcs))), "loadbench-site")
        lines = pair_lines(voters, pgcs)
        ceiling_voters = make_voters(max(50, -(-int(20000 * opts.duration) // len(pgcs))), "loadbench-db")
        dsn = psycopg_dsn()
        from django.db import connection

        connection.close()
        ceiling = db_ceiling(dsn, ceiling_voters, pgcs, opts.duration)
        print(f"database ceiling: {ceiling:,.0f} vote inserts/s ({CEILING_THREADS} threads)", flush=True)
        vote_lua, read_lua = work / "vote.lua", work / "read.lua"
        vote_lua.write_text(VOTE_LUA + DONE_LUA)
        read_lua.write_text(READ_LUA + DONE_LUA)
        rows = []
        slot = 0
        for c in clients:
            for keep_alive in (True, False):
                mode = "keep-alive" if keep_alive else "close"
                pairs = work / f"pairs-{slot}.txt"
                pairs.write_text("\n".join(lines[slot * per_run : (slot + 1) * per_run]) + "\n")
                slot += 1
                if opts.only in ("all", "votes"):
                    r, peak = measured_run(site, work, dsn, base + "/api/v1/votes/", vote_lua, [str(pairs), "2", mode], c, opts.duration)
                    rows.append(("votes (POST /api/v1/votes/)", c, mode, r, peak))
                    print(rows[-1][:3], f"{r['rate']:.1f}/s errors {r['errors']}, load {os.getloadavg()[0]:.1f}", flush=True)
                for name, path in READS.items() if opts.only in ("all", "reads") else ():
                    r, peak = measured_run(site, work, dsn, base + path, read_lua, [mode], c, opts.duration)
                    rows.append((name, c, mode, r, peak))
                    print(rows[-1][:3], f"{r['rate']:.1f}/s errors {r['errors']}, load {os.getloadavg()[0]:.1f}", flush=True)
        print()
        print(f"database ceiling (same run): {ceiling:,.0f} vote inserts/s")
        from django.conf import settings

        print(f"copies of public pages for anonymous GETs: {settings.GALCAT_PUBLIC_CACHE_SECONDS:g} s (GALCAT_PUBLIC_CACHE_SECONDS)")
        print()
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
        print()
        print("| target | clients | connection | req/s | x ceiling | p50 ms | p99 ms | errors (non-2xx) | max PG conns | web CPU ms/req |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, c, mode, r, peak in rows:
            ratio = f"{r['rate'] / ceiling:.3f}"
            print(
                f"| {name} | {c} | {mode} | {r['rate']:,.1f} | {ratio} | {r['p50_us'] / 1000:.0f} | {r['p99_us'] / 1000:.0f} "
                f"| {r['errors']} ({r['status']}) | {peak} | {r['cpu_ms']:.1f} |"
            )
        too_many = (work / "site.log").read_text(errors="replace").count("too many clients")
        print(f"\n'too many clients' in the site's log: {too_many}")
    finally:
        site.send_signal(signal.SIGTERM)
        try:
            site.wait(120)
        except subprocess.TimeoutExpired:
            site.kill()
        log.close()
        if not opts.keep_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
