"""Derived-column benchmark: downloads and browse pages with consensus, CNN and fit columns on N
galaxies, against the same requests with stored columns only (the baseline, same run).

    .venv/bin/python bench/derived_bench.py [--n 1000000] [--share 0.3]

Uses its own database (galcat_bench_derived, filled by bench/cone_bench.py's loader), then gives
a share of the galaxies a consensus row, an image with a CNN prediction of the active model and a
profile fit (INSERT ... SELECT, no Python per row), and rebuilds the per-galaxy summary tables the
derived columns are read from (catalog.summaries; timed). Times, through Django's test client:
the CSV download of every row with the default columns, then with the default columns plus the
derived ones read from summary tables (and plus every derived column, when some are still read
through subqueries); the first browse page with the summary columns; a derived filter (consensus_inc_min=60)
with its count; a sort by a derived column (first page). Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("GALCAT_BENCH_DB", "galcat_bench_derived")

DEFAULT = "pgc,ra,dec,vhel,d25,b_a,pa,type,inc,inc_e,inc_flg"


def fill_derived(n: int, share: float, log=print) -> int:
    """Consensus, image + prediction and fit rows for every galaxy with pgc % (1/share) == 0."""
    from django.db import connection

    step = max(1, round(1 / share))
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM fitting_fitresult")
        if cur.fetchone()[0] == n // step:
            log(f"derived rows already present for {n // step:,} galaxies")
            return n // step
        t0 = time.perf_counter()
        for table in ("fitting_fitresult", "ml_prediction", "catalog_image", "catalog_consensusinclination", "ml_modelversion"):
            cur.execute(f"TRUNCATE {table} CASCADE")
        cur.execute(
            "INSERT INTO catalog_consensusinclination (galaxy_id, inc, inc_e, inc_n, flag, method, version, computed) "
            "SELECT pgc, 45 + (pgc %% 45), 2.5, 3 + pgc %% 5, 'A', 'bench', '1', now() FROM catalog_galaxy WHERE pgc %% %s = 0",
            [step],
        )
        from ml.models import ModelVersion

        mv = ModelVersion.objects.create(name="bench", version="1", architecture="vgg", weights_path="x", sha256="0" * 64, active=True).pk
        cur.execute(
            "INSERT INTO catalog_image (galaxy_id, survey, band, file, format, width, height, channels, orientation, inverted, "
            "sha256, original_name, is_public, created) SELECT pgc, 'SDSS', 'g', 'images/x.png', 'png', 64, 64, 1, 'unknown', "
            "false, md5(pgc::text) || md5(pgc::text), '', true, now() FROM catalog_galaxy WHERE pgc %% %s = 0",
            [step],
        )
        cur.execute(
            "INSERT INTO ml_prediction (image_id, galaxy_id, model_version_id, value, uncertainty, reject_likelihood, axis_ratio, "
            "axis_ratio_inc, extra, created) SELECT id, galaxy_id, %s, 50 + galaxy_id %% 40, 1.5, 0.1, 0.4, 70, '{}', now() "
            "FROM catalog_image",
            [mv],
        )
        cur.execute(
            "INSERT INTO fitting_fitresult (image_id, model_kind, engine_version, params, errors, covariance, scale, re, re_err, n, "
            "n_err, q, q_err, theta, chi2, dof, iterations, converged, reason, psf, device, seconds, created, updated) "
            "SELECT id, 'sersic', '1', '{}', '{}', '[]', 1, 10, 0.3, 1, 0.05, 0.4, 0.01, 5, 110, 100, 8, true, '', 'none', 'cpu', "
            "0.004, now(), now() FROM catalog_image"
        )
        for table in ("catalog_consensusinclination", "catalog_image", "ml_prediction", "fitting_fitresult"):
            cur.execute(f"ANALYZE {table}")
    log(f"derived rows for {n // step:,} galaxies in {time.perf_counter() - t0:.1f} s")
    return n // step


def timed(client, path: str, params: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = client.get(path, params)
    body = b"".join(r.streaming_content) if r.streaming else r.content
    assert r.status_code == 200, (r.status_code, body[:300])
    return time.perf_counter() - t0, len(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--share", type=float, default=0.3, help="share of galaxies with derived rows")
    args = ap.parse_args()
    from cone_bench import ensure_catalog, setup_django

    setup_django()
    from django.test import Client

    from catalog.columns import derived_columns
    from catalog.summaries import refresh_all_summaries

    ensure_catalog(args.n)
    with_rows = fill_derived(args.n, args.share)
    from django.db import connection

    with connection.cursor() as cur:
        counts = []
        for table in ("zoo_consensussummary", "ml_predictionsummary", "fitting_fitsummary"):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts.append(cur.fetchone()[0])
    if counts != [with_rows] * 3:
        t0 = time.perf_counter()
        rows = refresh_all_summaries()  # the rows above were written by SQL, not through the apps' writers
        print(f"summary tables rebuilt in {time.perf_counter() - t0:.1f} s: {rows}")
    stored = [c.name for c in derived_columns() if c.stored]
    other = [c.name for c in derived_columns() if not c.stored]
    client = Client()
    timed(client, "/galaxies/", {"per_page": 5})  # warm up imports and the URL resolver
    print(
        f"{args.n:,} galaxies, {with_rows:,} with consensus, CNN and fit rows; {len(stored)} derived columns read from the "
        f"summary tables, {len(other)} through subqueries ({', '.join(other) or 'none'})"
    )
    base, base_bytes = timed(client, "/galaxies/download.csv", {"columns": DEFAULT})
    full, full_bytes = timed(client, "/galaxies/download.csv", {"columns": ",".join([DEFAULT, *stored])})
    print(f"CSV, default columns:             {base:7.2f} s  {args.n / base:9,.0f} rows/s  {base_bytes / 2**20:6.0f} MB")
    print(
        f"CSV, default + summary columns:   {full:7.2f} s  {args.n / full:9,.0f} rows/s  {full_bytes / 2**20:6.0f} MB  ({full / base:.1f}x the baseline)"
    )
    if other:
        every, every_bytes = timed(client, "/galaxies/download.csv", {"columns": ",".join([DEFAULT, *stored, *other])})
        print(
            f"CSV, default + every derived:     {every:7.2f} s  {args.n / every:9,.0f} rows/s  {every_bytes / 2**20:6.0f} MB  "
            f"({every / base:.1f}x the baseline)"
        )
    cols = {"col": DEFAULT.split(",") + stored}
    page_base, _ = timed(client, "/galaxies/", {"col": DEFAULT.split(",")})
    page_full, _ = timed(client, "/galaxies/", cols)
    print(f"browse first page, default:       {page_base * 1000:7.0f} ms")
    print(f"browse first page, + summary:     {page_full * 1000:7.0f} ms  ({page_full / page_base:.1f}x)")
    filt, _ = timed(client, "/galaxies/", {**cols, "consensus_inc_min": 60})
    inc_filt, _ = timed(client, "/galaxies/", {**cols, "inc_min": 60})
    print(f"filter consensus_inc_min=60:      {filt * 1000:7.0f} ms  (stored inc_min=60: {inc_filt * 1000:.0f} ms, {filt / inc_filt:.1f}x)")
    sort, _ = timed(client, "/galaxies/", {**cols, "ordering": "-cnn_inc"})
    sort_base, _ = timed(client, "/galaxies/", {**cols, "ordering": "-vhel"})
    print(
        f"sort by -cnn_inc (first page):    {sort * 1000:7.0f} ms  (sort by stored -vhel: {sort_base * 1000:.0f} ms, {sort / sort_base:.1f}x)"
    )


if __name__ == "__main__":
    main()
