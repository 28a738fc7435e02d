"""A HyperLEDA-size catalog end to end: import, browse, name search, cones, a big download.

    nice -n 10 .venv/bin/python bench/scale_bench.py [--n 5000000] [--base 1000000] [--keep] > scale.log &

Works in a separate database (galcat_scalebench on the embedded PostgreSQL, created empty and
dropped at the end unless --keep; never the site's), with DJANGO_DEBUG=0 and without the public
pages' short-lived copies (GALCAT_PUBLIC_CACHE_SECONDS=0), so that repeated pages are measured.
Imports --base synthetic galaxies (CSV with a name per galaxy, through `manage.py
import_catalog`), measures, then imports the other n - base and measures again, printing each
figure as it comes:

- import time and rows/s of each step (target: all n in under 2 minutes), then VACUUM (ANALYZE)
  and CHECKPOINT (what autovacuum and the checkpointer do soon after), not counted;
- the browse page (first page, last page = first page ordered by -pgc) and a name search
  through the site's own views (Django test client), median of 9 after one unmeasured call;
- cone searches (catalog.cone.galaxies_in_cone, rows fetched) at 1 arcmin, 1 deg and 10 deg,
  median over 20 random centres; whole cones hold n/base times the rows at n, so the 1 deg and
  10 deg cones are also measured at radii shrunk by sqrt(base/n), which hold as many rows at n
  as the full radii at base ("same rows"): the cost of a lookup apart from the rows it returns;
- the browse page of a 10 deg cone (first page, nearest first, with its count: what a user of
  /galaxies/?ra_center=..&dec_center=..&radius=10 waits for), and the first page of the same
  cone from the API (/api/v1/galaxies/?ra=..&dec=..&radius=10), median over 7 random centres;
- a filtered CSV download of about n/5 rows (/galaxies/download.csv?vhel_max=...), rows/s;
- the database's size on disk.

At n rows each latency is printed beside its value at base rows (target: within 1.5x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from import_bench import server  # the embedded server as scripts/pg.py starts it

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = os.environ.get("GALCAT_SCALE_BENCH_DB", "galcat_scalebench")
# the pages' own work, not the public-page copies a repeated request would get (core.middleware)
os.environ.update(
    {"GALCAT_DB_NAME": DB, "DJANGO_DEBUG": "0", "DJANGO_SETTINGS_MODULE": "config.settings", "GALCAT_PUBLIC_CACHE_SECONDS": "0"}
)
RADII = {"1 arcmin": 1 / 60, "1 deg": 1.0, "10 deg": 10.0}
WRITE_ROWS = 200_000


def say(text: str) -> None:
    print(text, flush=True)


def write_csv(path: Path, first: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        f.write("pgc,ra,dec,vhel,d25,b_a,pa,inc,name\n")
        for start in range(0, n, WRITE_ROWS):
            k = min(WRITE_ROWS, n - start)
            pgc = np.arange(first + start, first + start + k)
            cols = [
                pgc.astype(str),
                np.char.mod("%.6f", rng.uniform(0, 360, k)),
                np.char.mod("%.6f", np.degrees(np.arcsin(rng.uniform(-1, 1, k)))),
                np.char.mod("%.1f", rng.uniform(300, 15000, k)),
                np.char.mod("%.2f", rng.lognormal(0.3, 0.4, k)),
                np.char.mod("%.2f", rng.uniform(0.1, 1.0, k)),
                np.char.mod("%.1f", rng.uniform(0, 180, k)),
                np.char.mod("%.0f", rng.uniform(45, 90, k)),
                np.char.add("SYN ", pgc.astype(str)),
            ]
            f.write("\n".join(",".join(row) for row in zip(*cols)) + "\n")


def import_file(path: Path, rows: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "import_catalog", str(path), "--verbosity", "0"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )
    seconds = time.perf_counter() - t0
    say(f"  import of {rows:,} rows: {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
    # what autovacuum does within a minute or so of a bulk load (statistics, visibility map),
    # done at once so that the figures after it are of a settled table, not of autovacuum's work
    from django.db import connection

    t0 = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) catalog_galaxy")
        cur.execute("CHECKPOINT")  # the import's dirty pages written now, not during the measurements
    say(f"  VACUUM (ANALYZE) and CHECKPOINT: {time.perf_counter() - t0:.1f} s (not in the import's time)")
    return seconds


def median_seconds(fn, repeats: int = 9) -> float:
    fn()  # warm: the first call after an import reads its pages from disk
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(n: int, base: int) -> dict[str, float]:
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from catalog.cone import galaxies_in_cone

    connection.close()  # see the rows the import processes committed
    client = Client(HTTP_HOST="localhost")
    page, api = reverse("catalog:galaxy-list"), reverse("galaxy-list")
    out: dict[str, float] = {}

    def get(params: dict) -> None:
        response = client.get(page, params)
        assert response.status_code in (200, 302), response.status_code  # an exact name redirects to its galaxy

    out["browse first page"] = median_seconds(lambda: get({}))
    out["browse last page"] = median_seconds(lambda: get({"ordering": "-pgc"}))
    out["name search"] = median_seconds(lambda: get({"q": f"SYN {n - 7}"}))
    rng = np.random.default_rng(5)
    cones = list(RADII.items())
    cones += [(f"{label} same rows", r * (base / n) ** 0.5) for label, r in RADII.items() if r >= 1]
    for label, r in cones:
        times, found = [], 0
        for _ in range(20):
            ra, dec = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-0.95, 0.95)))
            t0 = time.perf_counter()
            found += len(list(galaxies_in_cone(ra, dec, r).values_list("pgc", flat=True)))
            times.append(time.perf_counter() - t0)
        out[f"cone {label}"] = statistics.median(times)
        say(f"  cone {label}: r = {r:.3g} deg, p50 {out[f'cone {label}'] * 1000:.1f} ms ({found / 20:,.0f} rows per cone)")
    times, api_times = [], []
    for _ in range(7):
        ra, dec = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-0.95, 0.95)))
        t0 = time.perf_counter()
        get({"ra_center": f"{ra:.4f}", "dec_center": f"{dec:.4f}", "radius": "10"})
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        response = client.get(api, {"ra": f"{ra:.4f}", "dec": f"{dec:.4f}", "radius": "10"})
        api_times.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.status_code
    out["browse cone 10 deg"] = statistics.median(times)
    out["api cone 10 deg"] = statistics.median(api_times)
    for key in ("browse first page", "browse last page", "name search", "browse cone 10 deg", "api cone 10 deg"):
        say(f"  {key}: {out[key] * 1000:.1f} ms")
    vhel_max = 300 + 0.2 * 14700
    t0 = time.perf_counter()
    response = client.get(reverse("catalog:galaxy-download", args=["csv"]), {"vhel_max": f"{vhel_max:.0f}"})
    lines = sum(chunk.count(b"\n") for chunk in response.streaming_content) if response.streaming else response.content.count(b"\n")
    seconds = time.perf_counter() - t0
    out["download rows/s"] = lines / seconds
    say(f"  filtered CSV download: {lines:,} lines in {seconds:.1f} s = {lines / seconds:,.0f} rows/s (status {response.status_code})")
    with connection.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        size = cur.fetchone()[0]
    say(f"  database size on disk: {size / 1e9:.2f} GB ({size / n:,.0f} bytes per galaxy)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5_000_000)
    parser.add_argument("--base", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    say(f"scale_bench: {args.base:,} then {args.n:,} galaxies in {DB}")
    server().psql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE);')
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    try:
        with tempfile.TemporaryDirectory(prefix="scale_bench_") as tmp:
            base_csv, rest_csv = Path(tmp) / "base.csv", Path(tmp) / "rest.csv"
            write_csv(base_csv, 1, args.base, seed=1)
            write_csv(rest_csv, args.base + 1, args.n - args.base, seed=2)
            say(f"step 1: {args.base:,} galaxies")
            t_base = import_file(base_csv, args.base)
            at_base = measure(args.base, args.base)
            say(f"step 2: {args.n:,} galaxies")
            t_rest = import_file(rest_csv, args.n - args.base)
            at_n = measure(args.n, args.base)
        total = t_base + t_rest
        say(f"\nimport of {args.n:,} rows in two files: {total:.0f} s = {args.n / total:,.0f} rows/s (target: under 120 s)")
        say(f"{'figure':22s} {args.base:>12,} {args.n:>12,}  ratio (target <= 1.5 for pages and cones)")
        for key, value in at_n.items():
            ratio = value / at_base[key]
            unit = "rows/s" if "rows/s" in key else "ms"
            show = (lambda v: f"{v:,.0f}") if unit == "rows/s" else (lambda v: f"{v * 1000:.1f}")
            say(f"{key:22s} {show(at_base[key]):>12} {show(value):>12}  {ratio:.2f}")
    finally:
        from django.db import connection

        connection.close()
        if not args.keep:
            server().psql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE);')


if __name__ == "__main__":
    main()
