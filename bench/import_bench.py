"""Catalog import benchmark: `import_catalog` end to end against the server's own COPY.

    .venv/bin/python bench/import_bench.py [--n 1000000] [--update-n N] [--bad-mb 200] [--keep]

Works in a separate database (galcat_importbench on the embedded PostgreSQL, created empty at
the start and dropped at the end unless --keep; never the site's). Writes a CSV of N synthetic
galaxies with the 8 columns of a HyperLEDA-like table (pgc, ra, dec, vhel, d25, b_a, pa, inc),
then measures, each import in its own process with DJANGO_DEBUG=0:

- the ceiling: the server's COPY of the same file into a bare table of 8 columns;
- create: `manage.py import_catalog` of the N rows into the empty catalog;
- update: a re-import of --update-n rows (default N), four fifths of them already there;
- with --bad-mb M: a CSV of about M MB whose last row is bad (refused, nothing written).

Prints rows/s, the fraction of the COPY rate, and the peak RSS of each import process and of
the largest of the processes that validate its blocks (forked from it, sharing its pages). The
machine may be shared: compare the fractions, not the absolute rates, between runs. Each run
also reports its CPU time (the client process with its validating processes, plus its
PostgreSQL backend, read from /proc), which contention from other processes inflates far less
than wall time: "cpu rows/s" is rows per CPU second, and its fraction of the COPY's is the
steadier figure on a busy machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("GALCAT_IMPORT_BENCH_DB", "galcat_importbench")
HEADER = ("pgc", "ra", "dec", "vhel", "d25", "b_a", "pa", "inc")
WRITE_ROWS = 200_000


def write_csv(path: Path, first: int, n: int, *, seed: int, bad_last: bool = False) -> int:
    """A CSV of n synthetic galaxies with pgc first..first+n-1; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        f.write(",".join(HEADER) + "\n")
        for start in range(0, n, WRITE_ROWS):
            k = min(WRITE_ROWS, n - start)
            cols = [
                np.arange(first + start, first + start + k).astype(str),
                np.char.mod("%.6f", rng.uniform(0, 360, k)),
                np.char.mod("%.6f", np.degrees(np.arcsin(rng.uniform(-1, 1, k)))),
                np.char.mod("%.1f", rng.uniform(300, 15000, k)),
                np.char.mod("%.2f", rng.lognormal(0.3, 0.4, k)),
                np.char.mod("%.2f", rng.uniform(0.1, 1.0, k)),
                np.char.mod("%.1f", rng.uniform(0, 180, k)),
                np.char.mod("%.0f", rng.uniform(45, 90, k)),
            ]
            lines = [",".join(row) for row in zip(*cols)]
            if bad_last and start + k == n:
                lines[-1] = lines[-1].rsplit(",", 1)[0] + ",ninety"
            f.write("\n".join(lines) + "\n")
    return path.stat().st_size


@functools.cache
def server():
    """The embedded server, started (when it is not running) by scripts/pg.py with the project's
    server settings, as `make run` and `make test` start it."""
    subprocess.run([sys.executable, "scripts/pg.py", "start"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    from config.database import embedded_pgdata, embedded_server

    return embedded_server(embedded_pgdata(ROOT))


def fresh_database() -> None:
    """Drop and recreate the bench database, then migrate it (in a child, as the imports run)."""
    server().psql(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE);')
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=child_env(), check=True)


def drop_database() -> None:
    server().psql(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE);')


def child_env() -> dict:
    return {**os.environ, "GALCAT_DB_NAME": BENCH_DB, "DJANGO_DEBUG": "0", "DJANGO_SETTINGS_MODULE": "config.settings"}


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (0 where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def copy_floor(path: Path) -> tuple[float, float]:
    """(seconds, CPU seconds of client and backend) of the server's COPY of the file into a
    bare table of the same 8 columns."""
    import psycopg

    info = server().get_postmaster_info()
    with psycopg.connect(host=str(info.socket_dir), port=info.port or 5432, user="postgres", dbname=BENCH_DB, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS bench_bare")
        con.execute(
            "CREATE TABLE bench_bare (pgc integer, ra float8, dec float8, vhel float8, d25 float8, b_a float8, pa float8, inc float8)"
        )
        pid = con.info.backend_pid
        t0, c0 = time.perf_counter(), time.process_time() + backend_cpu(pid)
        with con.cursor() as cur, cur.copy("COPY bench_bare FROM STDIN (FORMAT csv, HEADER true)") as copy, path.open("rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)
        seconds, cpu = time.perf_counter() - t0, time.process_time() + backend_cpu(pid) - c0
        con.execute("DROP TABLE bench_bare")
    return seconds, cpu


def run_child(kind: str, path: Path) -> dict:
    """One import in its own process: {'seconds', 'rss_mb', 'ok', 'report' or 'error'}."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path)], cwd=ROOT, env=child_env(), capture_output=True, text=True, check=False
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"{kind} import crashed:\n{out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def child(path: str) -> None:
    import django

    django.setup()
    from django.core.management import CommandError, call_command
    from django.db import connection

    from catalog.importers.tables import _prepare_processes
    from catalog.models import Galaxy

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, c0, s0 = time.perf_counter(), time.process_time(), backend_cpu(pid)
    try:
        call_command("import_catalog", path, verbosity=0)
        result = {"ok": True}
    except CommandError as exc:
        result = {"ok": False, "error": str(exc).splitlines()[0]}
    result["seconds"] = time.perf_counter() - t0
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # with the processes that validated blocks, joined by now
    result["client_cpu"] = time.process_time() - c0 + workers.ru_utime + workers.ru_stime - before.ru_utime - before.ru_stime
    result["server_cpu"] = backend_cpu(pid) - s0
    result["cpu"] = result["client_cpu"] + result["server_cpu"]
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["processes"] = _prepare_processes(Path(path).stat().st_size)
    result["worker_rss_mb"] = workers.ru_maxrss / 1024 if result["processes"] else 0.0
    result["galaxies"] = Galaxy.objects.count()
    print(json.dumps(result))


def validating(result: dict) -> str:
    """Where a child import validated its rows, and the largest validating process's peak RSS."""
    if not result["processes"]:
        return "validated in the importing process"
    return f"validated in {result['processes']} processes beside it, the largest peaking at {result['worker_rss_mb']:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="rows of the created table")
    parser.add_argument("--update-n", type=int, help="rows of the re-imported table (default n, 4/5 of them existing)")
    parser.add_argument("--bad-mb", type=float, default=0, help="also import a CSV of about this size with a bad last row")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    n = args.n
    update_n = args.update_n or n
    existing = update_n * 4 // 5
    print(f"import_bench: N = {n:,}, re-import {update_n:,} rows ({existing:,} existing), database {BENCH_DB}", flush=True)
    with tempfile.TemporaryDirectory(prefix="import_bench_") as tmp:
        create = Path(tmp) / "create.csv"
        size = write_csv(create, 1, n, seed=1)
        update = Path(tmp) / "update.csv"
        write_csv(update, n - existing + 1, update_n, seed=2)
        fresh_database()
        try:
            floor, floor_cpu = copy_floor(create)
            copy_rate, copy_cpu_rate = n / floor, n / max(floor_cpu, 1e-9)
            print(
                f"ceiling: COPY of {n:,} rows ({size / 1e6:.1f} MB) into a bare table: {floor:.2f} s = {copy_rate:,.0f} rows/s; "
                f"{floor_cpu:.2f} CPU s = {copy_cpu_rate:,.0f} cpu rows/s",
                flush=True,
            )
            rows = []
            for kind, path, count in (("create", create, n), ("update", update, update_n)):
                r = run_child(kind, path)
                if not r["ok"]:
                    raise SystemExit(f"{kind} import refused: {r['error']}")
                rate, cpu_rate = count / r["seconds"], count / max(r["cpu"], 1e-9)
                rows.append((kind, count, r["seconds"], rate, rate / copy_rate, r["cpu"], cpu_rate / copy_cpu_rate, r["rss_mb"]))
                print(
                    f"{kind}: {count:,} rows in {r['seconds']:.1f} s = {rate:,.0f} rows/s "
                    f"({rate / copy_rate:.3f} of COPY); {r['cpu']:.1f} CPU s ({r['client_cpu']:.1f} client + {r['server_cpu']:.1f} server) "
                    f"= {cpu_rate:,.0f} cpu rows/s "
                    f"({cpu_rate / copy_cpu_rate:.3f} of COPY's); peak RSS {r['rss_mb']:.0f} MB "
                    f"({validating(r)}), {r['galaxies']:,} galaxies",
                    flush=True,
                )
            if args.bad_mb:
                bad = Path(tmp) / "bad.csv"
                bad_n = int(args.bad_mb * 1e6 / (size / n))
                bad_size = write_csv(bad, 10 * n + 1, bad_n, seed=3, bad_last=True)
                r = run_child("bad", bad)
                print(
                    f"bad last row: {bad_n:,} rows ({bad_size / 1e6:.0f} MB) refused={not r['ok']} in {r['seconds']:.1f} s "
                    f"({bad_n / r['seconds']:,.0f} rows/s), peak RSS {r['rss_mb']:.0f} MB "
                    f"({validating(r)}), galaxies {r['galaxies']:,} "
                    f"(unchanged: {r['galaxies'] == n + update_n - existing}); {r.get('error', '')}",
                    flush=True,
                )
        finally:
            if not args.keep:
                drop_database()
    print("\nrun            rows   seconds     rows/s  of COPY    CPU s  cpu of COPY  peak RSS MB")
    for kind, count, seconds, rate, frac, cpu, cpu_frac, rss in rows:
        print(f"{kind:8s} {count:>10,} {seconds:9.1f} {rate:10,.0f} {frac:8.3f} {cpu:8.1f} {cpu_frac:12.3f} {rss:12.0f}")


if __name__ == "__main__":
    main()
