"""Export benchmark: rows/s and peak RSS of the download views on N synthetic galaxies.

    .venv/bin/python bench/export_bench.py [--n 1000000] [--baseline-rows 100000]

Uses the bench database of bench/cone_bench.py (galcat_bench, filled when it does not hold the
N galaxies). Each measurement runs in a fresh process: GET /galaxies/download.<fmt> through
Django's test client (URL routing, middleware, the FilterSet, StreamingHttpResponse), reading
the streamed body to the end. Baselines in the same run, same columns: the server's own COPY to
/dev/null (the ceiling), the csv module over a server-side cursor, and astropy's VOTable writer (on --baseline-rows rows, as it holds the
whole table in memory). Peak RSS is the process's ru_maxrss (imports included) and its growth
over the RSS just before the download. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

COLUMNS = "pgc,ra,dec,vhel,d25,b_a,pa,type,inc,inc_e,inc_flg"  # the browse page's default columns


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(kind: str, rows_limit: int) -> dict:
    from cone_bench import setup_django

    setup_django()
    from django.db import connection

    if kind in ("csv", "votable", "fits"):  # warm up: URL resolver, views and their imports
        from django.test import Client

        warm = Client().get(f"/galaxies/download.{kind}", {"columns": COLUMNS, "ra_center": 0, "dec_center": 0, "radius": 1e-6})
        b"".join(warm.streaming_content)
    before = rss_mb()
    t0 = time.perf_counter()
    nbytes = rows = 0
    if kind == "server_copy":
        with connection.cursor() as cur:
            cur.execute(f"COPY (SELECT {COLUMNS} FROM catalog_galaxy WHERE ra IS NOT NULL ORDER BY pgc) TO '/dev/null' WITH (FORMAT csv)")
            rows = cur.rowcount
    elif kind in ("csv", "votable", "fits"):
        response = Client().get(f"/galaxies/download.{kind}", {"columns": COLUMNS})
        assert response.status_code == 200, response.status_code
        for chunk in response.streaming_content:
            nbytes += len(chunk)
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM catalog_galaxy WHERE ra IS NOT NULL")
            rows = cur.fetchone()[0]
    elif kind == "csv_module":
        import csv
        import io

        cursor = connection.chunked_cursor()
        cursor.execute(f"SELECT {COLUMNS} FROM catalog_galaxy WHERE ra IS NOT NULL ORDER BY pgc")
        buf = io.StringIO()
        writer = csv.writer(buf)
        while batch := cursor.fetchmany(5000):
            writer.writerows(batch)
            rows += len(batch)
            nbytes += len(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
        cursor.close()
    elif kind == "astropy_votable":
        import io

        from astropy.io.votable import from_table
        from astropy.table import Table

        with connection.cursor() as cur:
            cur.execute(f"SELECT {COLUMNS} FROM catalog_galaxy WHERE ra IS NOT NULL ORDER BY pgc LIMIT %s", [rows_limit])
            data = cur.fetchall()
        table = Table(rows=data, names=COLUMNS.split(","))
        out = io.BytesIO()
        from_table(table).to_xml(out)
        rows, nbytes = len(data), out.tell()
    seconds = time.perf_counter() - t0
    return {"kind": kind, "rows": rows, "bytes": nbytes, "seconds": seconds, "rss_before_mb": before, "peak_mb": peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic galaxies (default 1,000,000)")
    parser.add_argument("--baseline-rows", type=int, default=100_000, help="rows for astropy's in-memory VOTable writer")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.limit)))
        return

    from cone_bench import ensure_catalog, setup_django

    setup_django()
    ensure_catalog(args.n)
    print(f"# export bench: N = {args.n:,} synthetic galaxies, columns {COLUMNS}")
    results = {}
    for kind in ("server_copy", "csv", "votable", "fits", "csv_module", "astropy_votable"):
        out = subprocess.run(
            [sys.executable, __file__, "--one", kind, "--limit", str(args.baseline_rows)], capture_output=True, text=True, check=False
        )
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
        if line is None:
            print(f"{kind}: failed\n{out.stderr[-2000:]}")
            continue
        results[kind] = json.loads(line)
    print()
    print("| export | rows | MB | seconds | rows/s | peak RSS MB | RSS growth MB |")
    print("|---|---|---|---|---|---|---|")
    for kind, r in results.items():
        rate = r["rows"] / r["seconds"]
        r["rate"] = rate
        print(
            f"| {kind} | {r['rows']:,} | {r['bytes'] / 2**20:.1f} | {r['seconds']:.2f} | {rate:,.0f} | {r['peak_mb']:.0f} | "
            f"{r['peak_mb'] - r['rss_before_mb']:.0f} |"
        )
    if "csv" in results and "server_copy" in results:
        print(
            f"\nCSV view / the server's own COPY of the same rows to /dev/null: {results['csv']['rate'] / results['server_copy']['rate']:.2f}"
        )
    if "csv" in results and "csv_module" in results:
        print(f"CSV view / csv module over a server-side cursor: {results['csv']['rate'] / results['csv_module']['rate']:.1f}x")
    if "votable" in results and "astropy_votable" in results:
        print(f"VOTable view / astropy's VOTable writer: {results['votable']['rate'] / results['astropy_votable']['rate']:.1f}x")
    print("targets for 1M rows: CSV >= 150k rows/s, VOTable >= 50k rows/s, peak RSS < 300 MB")


if __name__ == "__main__":
    main()
