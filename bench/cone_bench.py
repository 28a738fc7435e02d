"""Cone-search benchmark: the catalog's own galaxies_in_cone on N synthetic galaxies.

    .venv/bin/python bench/cone_bench.py [--n 1000000] [--cones 300] [--no-q3c]

Fills a separate database (galcat_bench on the embedded PostgreSQL 16; never the site's) with N
galaxies uniform on the sphere (COPY, then CLUSTER on the HEALPix index), then times
galaxies_in_cone at r = 1 arcmin, 1 deg and 10 deg from random centres (p50/p99 over all
cones, results fetched) and checks exactness against astropy's separation on every row, at
random, polar and RA-wrap centres. Baselines measured in the same run: a full-scan haversine
query, and q3c_radial_query (Koposov & Bartunov 2006, ASP Conf. Ser. 351, 735) on Debian's
PostgreSQL 15 with the q3c extension loaded with the same rows, where the HEALPix-range SQL is
timed as well (same server, same rows). Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("GALCAT_BENCH_DB", "galcat_bench")
RADII = {"1 arcmin": 1 / 60, "1 deg": 1.0, "10 deg": 10.0}
PG15_BIN = Path("/usr/lib/postgresql/15/bin")


def setup_django(dbname: str = BENCH_DB) -> None:
    """Configure Django on the bench database (created and migrated when missing)."""
    os.environ["GALCAT_DB_NAME"] = dbname
    os.environ.setdefault("DJANGO_DEBUG", "0")  # as deployed: DEBUG records and formats every query
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def synthetic_sky(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return {
        "pgc": np.arange(1, n + 1),
        "ra": ra,
        "dec": dec,
        "vhel": rng.uniform(300, 15000, n).round(1),
        "d25": rng.lognormal(0.3, 0.4, n).round(2),
        "b_a": rng.uniform(0.1, 1.0, n).round(2),
        "pa": rng.uniform(0, 180, n).round(1),
        "inc": rng.uniform(45, 90, n).round(0),
        "inc_e": rng.uniform(1, 6, n).round(0),
        "inc_flg": rng.integers(0, 2, n),
        "type": rng.choice(np.array(["Sa", "Sb", "Sbc", "Sc", "Scd", "Sd", "SBb", "SABc"]), n),
    }


def ensure_catalog(n: int, log=print) -> dict[str, np.ndarray]:
    """The bench database holds exactly the N synthetic galaxies (reloaded when not)."""
    from django.db import connection

    from catalog.models import Galaxy
    from catalog.sky import healpix_index

    sky = synthetic_sky(n)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), max(pgc), min(ra), max(ra) FROM catalog_galaxy")
        count, top, ra_min, ra_max = cur.fetchone()
    if count == n and top == n and ra_min == float(sky["ra"].min()) and ra_max == float(sky["ra"].max()):
        log(f"bench database {BENCH_DB} already holds the {n:,} synthetic galaxies")
        return sky
    t0 = time.perf_counter()
    hp = healpix_index(sky["ra"], sky["dec"])
    table = Galaxy._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {table} CASCADE")
        cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s AND is_nullable = 'NO'", [table])
        required = {name: kind for name, kind in cur.fetchall()}
        names = ["pgc", "ra", "dec", "healpix", "vhel", "d25", "b_a", "pa", "inc", "inc_e", "inc_flg", "type"]
        fill = {c: ("" if "char" in k or k == "text" else None) for c, k in required.items() if c not in names}
        fill = {c: v for c, v in fill.items() if c not in ("created", "updated")}
        cols = names + list(fill) + ["created", "updated"]
        now = time.strftime("%Y-%m-%d %H:%M:%S+00")
        columns = [sky[k].tolist() for k in ("pgc", "ra", "dec")] + [hp.tolist()]
        columns += [sky[k].tolist() for k in names[4:]]
        with cur.cursor.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
            extra = tuple(fill.values()) + (now, now)
            for row in zip(*columns, strict=True):
                copy.write_row(row + extra)
        t1 = time.perf_counter()
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
            [table, "%(healpix)%"],
        )
        index = cur.fetchone()[0]
        cur.execute(f"CLUSTER {table} USING {index}")
        cur.execute(f"ANALYZE {table}")
    log(f"loaded {n:,} galaxies by COPY in {t1 - t0:.1f} s ({n / (t1 - t0):,.0f} rows/s), CLUSTER+ANALYZE {time.perf_counter() - t1:.1f} s")
    return sky


def random_centres(k: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, k)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, k)))
    return list(zip(ra.tolist(), dec.tolist(), strict=True))


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.array(times) * 1000, q))


def time_own(centres, r) -> tuple[list[float], int]:
    from catalog.cone import galaxies_in_cone

    times, rows = [], 0
    for ra, dec in centres:
        t0 = time.perf_counter()
        got = list(galaxies_in_cone(ra, dec, r).values_list("pgc", "distance_deg"))
        times.append(time.perf_counter() - t0)
        rows += len(got)
    return times, rows


def check_exact(sky, centres, r) -> tuple[int, int]:
    """(cones checked, mismatches) against astropy's separation over every row."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from catalog.cone import galaxies_in_cone

    everything = SkyCoord(sky["ra"] * u.deg, sky["dec"] * u.deg)
    bad = 0
    for ra, dec in centres:
        sep = SkyCoord(ra * u.deg, dec * u.deg).separation(everything).deg
        edge = np.abs(sep - r) < 1e-9
        truth = set(sky["pgc"][(sep <= r) & ~edge].tolist())
        got = set(galaxies_in_cone(ra, dec, r).values_list("pgc", flat=True))
        if not (truth <= got and got - truth <= set(sky["pgc"][edge].tolist())):
            bad += 1
    return len(centres), bad


def time_full_scan(centres, r) -> list[float]:
    from django.db import connection

    from catalog.cone import _distance_sql

    times = []
    with connection.cursor() as cur:
        for ra, dec in centres:
            sql, params = _distance_sql(ra, dec, "catalog_galaxy")
            t0 = time.perf_counter()
            cur.execute(f"SELECT pgc, {sql} AS d FROM catalog_galaxy WHERE {sql} <= %s ORDER BY d", params + params + [r])
            cur.fetchall()
            times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------------------------------
# PostgreSQL 15 + q3c in a temporary cluster
# ---------------------------------------------------------------------------------------------
class Q3CServer:
    def __init__(self, log=print):
        self.log = log
        self.dir = Path(tempfile.mkdtemp(prefix="galcat_q3c_"))
        self.data = self.dir / "data"
        self.port = 5499

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    def start(self) -> None:
        if not (PG15_BIN / "initdb").exists():
            raise RuntimeError("Debian's PostgreSQL 15 is not installed")
        if not list(Path("/usr/lib/postgresql/15/lib").glob("q3c.so")):
            raise RuntimeError("postgresql-15-q3c is not installed (apt-get install postgresql-15-q3c)")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(str(PG15_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        opts = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c jit=off -c shared_buffers=256MB"
        self._as_postgres(str(PG15_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def connect(self):
        import psycopg

        return psycopg.connect(host=str(self.dir), port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def load(self, sky, hp) -> None:
        t0 = time.perf_counter()
        with self.connect() as conn:
            conn.execute("CREATE EXTENSION q3c")
            conn.execute("CREATE TABLE g (pgc integer PRIMARY KEY, ra float8, dec float8, healpix bigint)")
            with conn.cursor().copy("COPY g (pgc, ra, dec, healpix) FROM STDIN") as copy:
                for row in zip(sky["pgc"].tolist(), sky["ra"].tolist(), sky["dec"].tolist(), hp.tolist(), strict=True):
                    copy.write_row(row)
            conn.execute("CREATE INDEX g_q3c ON g (q3c_ang2ipix(ra, dec))")
            conn.execute("CREATE INDEX g_healpix ON g (healpix)")
            conn.execute("CLUSTER g USING g_q3c")
            conn.execute("ANALYZE g")
        self.log(f"PostgreSQL 15 + q3c loaded and indexed in {time.perf_counter() - t0:.1f} s")

    def time_q3c(self, centres, r) -> tuple[list[float], int]:
        times, rows = [], 0
        with self.connect() as conn, conn.cursor() as cur:
            for ra, dec in centres:
                t0 = time.perf_counter()
                cur.execute(
                    "SELECT pgc, q3c_dist(ra, dec, %s, %s) AS d FROM g WHERE q3c_radial_query(ra, dec, %s, %s, %s) ORDER BY d",
                    (ra, dec, ra, dec, r),
                )
                rows += len(cur.fetchall())
                times.append(time.perf_counter() - t0)
        return times, rows

    def time_healpix_sql(self, centres, r) -> tuple[list[float], int]:
        """The catalog's SQL (HEALPix ranges + haversine) on this server, for a same-server comparison."""
        from catalog.cone import _distance_sql, cone_ranges

        times, rows = [], 0
        with self.connect() as conn, conn.cursor() as cur:
            for ra, dec in centres:
                t0 = time.perf_counter()
                ranges = cone_ranges(ra, dec, r)
                where = " OR ".join(["healpix BETWEEN %s AND %s"] * len(ranges))
                flat = [v for lo, hi in ranges for v in (lo, hi - 1)]
                sql, params = _distance_sql(ra, dec, "g")
                cur.execute(
                    f"SELECT * FROM (SELECT pgc, {sql} AS d FROM g WHERE ({where})) s WHERE d <= %s ORDER BY d", params + flat + [r]
                )
                rows += len(cur.fetchall())
                times.append(time.perf_counter() - t0)
        return times, rows

    def stop(self) -> None:
        try:
            self._as_postgres(str(PG15_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic galaxies (default 1,000,000)")
    parser.add_argument("--cones", type=int, default=300, help="cones per radius at 1 arcmin and 1 deg (a tenth at 10 deg)")
    parser.add_argument("--checks", type=int, default=12, help="random cones per radius checked against brute force")
    parser.add_argument("--no-q3c", action="store_true", help="skip the PostgreSQL 15 + q3c baseline")
    args = parser.parse_args()

    setup_django()
    from catalog.sky import healpix_index

    print(f"# cone bench: N = {args.n:,} synthetic galaxies, database {BENCH_DB} (PostgreSQL 16, embedded)")
    sky = ensure_catalog(args.n)
    results: dict[str, dict] = {}

    q3c = None
    if not args.no_q3c:
        try:
            q3c = Q3CServer()
            q3c.start()
            q3c.load(sky, healpix_index(sky["ra"], sky["dec"]))
        except Exception as exc:  # noqa: BLE001 - reported, the rest of the bench still runs
            print(f"q3c baseline unavailable: {exc}")
            if q3c is not None:
                q3c.stop()
            q3c = None

    try:
        for label, r in RADII.items():
            k = args.cones if r <= 1 else max(10, args.cones // 10)
            centres = random_centres(k, seed=int(r * 1e4) + 7)
            time_own(centres[:20], r)  # warm caches
            own, rows = time_own(centres, r)
            res = {"k": k, "rows": rows / k, "own": own}
            if q3c is not None:
                q3c.time_q3c(centres[:20], r)
                res["q3c"], q3c_rows = q3c.time_q3c(centres, r)
                q3c.time_healpix_sql(centres[:20], r)
                res["hp15"], hp_rows = q3c.time_healpix_sql(centres, r)
                res["q3c_rows_agree"] = q3c_rows == rows == hp_rows
            if label == "1 deg":
                res["scan"] = time_full_scan(centres[:5], r)
            checks = random_centres(args.checks, seed=99) + [(0.0, 90.0), (123.4, -90.0), (359.9999, 0.0), (0.0001, 45.0)]
            res["checked"], res["bad"] = check_exact(sky, checks, r)
            results[label] = res
    finally:
        if q3c is not None:
            q3c.stop()

    print()
    print(
        "| radius | cones | rows/cone | own p50 ms | own p99 ms | q3c p50 ms | q3c p99 ms | p50 q3c/own | HEALPix SQL on PG15 p50 ms | exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, res in results.items():
        own50, own99 = pct(res["own"], 50), pct(res["own"], 99)
        q50 = pct(res["q3c"], 50) if "q3c" in res else float("nan")
        q99 = pct(res["q3c"], 99) if "q3c" in res else float("nan")
        h50 = pct(res["hp15"], 50) if "hp15" in res else float("nan")
        exact = f"{res['checked'] - res['bad']}/{res['checked']}"
        print(
            f"| {label} | {res['k']} | {res['rows']:.1f} | {own50:.2f} | {own99:.2f} | {q50:.2f} | {q99:.2f} | "
            f"{q50 / own50:.2f} | {h50:.2f} | {exact} |"
        )
    one = results["1 deg"]
    scan = pct(one["scan"], 50)
    print(f"\nfull-scan haversine at 1 deg: p50 {scan:.1f} ms = {scan / pct(one['own'], 50):.0f}x the HEALPix cone")
    if "q3c_rows_agree" in one:
        print(
            "row counts of q3c, the catalog's function and its SQL on PG15 agree:", all(r.get("q3c_rows_agree") for r in results.values())
        )
    print(f"targets at 1 deg on {args.n:,} rows: p50 <= 4 ms, p99 <= 8 ms, faster than q3c_radial_query")


if __name__ == "__main__":
    main()
