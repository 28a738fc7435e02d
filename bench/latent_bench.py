"""Latent-space benchmark: encoding speed of the shipped latent model, and the HNSW similarity
search of the catalog (ml.latent_services.nearest, ORM included) against exact search.

    .venv/bin/python bench/latent_bench.py [--sizes 100000,1000000] [--queries 200]
        [--ef 40,100,200] [--m 16] [--ef-construction 64] [--threads 2] [--budget 1500]

1. Encoding: the shipped model (ml/weights/latent) on the shared SDSS images repeated to
   --images inputs: images/s of LatentModel.embed (preprocessing of the 512x512 files included),
   of the network alone on preprocessed inputs and of the preprocessing alone, on --threads CPU
   threads (and CUDA when present): --repeats interleaved passes of each, the best and the median
   pass and the CPU time per image (all threads; the least of the passes). Baseline in the same run: a fixed float32 matmul's GFLOP/s, so figures taken on a
   busy machine can be compared as ratios.
2. Search: N synthetic L2-normalised vectors of the model's dimension (a mixture of 2,000
   clusters, not uniform noise; the queries are held-out draws of the same clusters) are COPYed into a bench table
   of ImageEmbedding's columns in a separate database (galcat_latent_bench on the embedded
   server; never the site's), an HNSW index (vector_cosine_ops) is built through
   ml.vectors.ensure_hnsw_index, and --queries held-out vectors are searched through
   ml.latent_services.nearest for k = 10 at each hnsw.ef_search: p50/p95 latency and recall@10
   against exact search (numpy over the same vectors). Baseline in the same run: the ORM's
   round trip of a trivial query. A size whose index build would not fit in what is left of
   --budget seconds (extrapolated from the last build) is skipped and said so.

Prints as it goes; asserts nothing about time. Targets (issue 16): encoding >= 1,000 images/s on
2 CPU threads; at 1M vectors p50 <= 5 ms and recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("GALCAT_LATENT_BENCH_DB", "galcat_latent_bench")
TABLE = "latent_bench"
VERSION_ID = 1
K = 10


def say(*args) -> None:
    print(*args, flush=True)


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
def matmul_gflops(threads: int, n: int = 1024, reps: int = 20) -> float:
    """The CPU's float32 matmul speed now (the contention baseline)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def bench_encoding(n_images: int, threads: int, repeats: int = 3) -> None:
    import torch

    from catalog.sample import shared_data_dir
    from ml.latent import load_latent
    from ml.preprocess import load_image_file

    torch.set_num_threads(threads)
    folder = shared_data_dir()
    if folder is None:
        say("encoding: no shared sample folder (GALCAT_SAMPLE_DATA), skipped")
        return
    files = sorted((folder / "sdss").glob("pgc*"))
    raw = [load_image_file(str(f)) for f in files]
    images = [raw[i % len(raw)] for i in range(n_images)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gflops = matmul_gflops(threads)
    say(f"baseline: float32 matmul {gflops:.1f} GFLOP/s on {threads} thread(s)")

    def timed(fn, *args, **kwargs) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        fn(*args, **kwargs)
        return time.perf_counter() - t, time.process_time() - c

    for dev in devices:
        m = load_latent(device=dev)
        say(f"model {m.name} v{m.version}: dim {m.dim}, {m.channels} channel(s), device {dev}")
        m.embed(images[:64])  # warm up
        x = m.preprocess(images)
        rows = {"embed (preprocess + network)": [], "network alone": [], "preprocessing alone": []}
        for _ in range(repeats):  # interleaved, so that a burst of load on a shared machine hits all three alike
            rows["preprocessing alone"].append(timed(m.preprocess, images))
            rows["network alone"].append(timed(m.encode_inputs, x, recon=False))
            rows["embed (preprocess + network)"].append(timed(m.embed, images))
        parts = []
        for name, runs in rows.items():
            walls = sorted(w for w, _ in runs)
            cpu = min(c for _, c in runs)
            parts.append(
                f"{name} {n_images / walls[0]:,.0f} images/s (best of {repeats}; median {n_images / walls[len(walls) // 2]:,.0f}; "
                f"{1e3 * cpu / n_images:.2f} CPU-ms per image)"
            )
        best_net = n_images / min(w for w, _ in rows["network alone"])
        say(f"  {dev}: " + "; ".join(parts) + (f"; network images/s per matmul GFLOP/s {best_net / gflops:.1f}" if dev == "cpu" else ""))


# ---------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------
def setup_django() -> None:
    """Django on the bench database (created and migrated when missing: the vector extension)."""
    os.environ["GALCAT_DB_NAME"] = BENCH_DB
    os.environ.setdefault("DJANGO_DEBUG", "0")  # as deployed: DEBUG records every query
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@functools.cache
def bench_model():
    """An unmanaged model on the bench table, with ImageEmbedding's columns that the search reads."""
    from django.db import models
    from pgvector.django import VectorField

    class BenchEmbedding(models.Model):
        model_version_id = models.IntegerField()
        image_id = models.BigIntegerField()
        galaxy_id = models.BigIntegerField()
        embedding = VectorField()

        class Meta:
            app_label = "ml"
            managed = False
            db_table = TABLE

        def __str__(self) -> str:
            return f"bench vector {self.image_id}"

    return BenchEmbedding


def synthetic_vectors(n: int, dim: int, seed: int, clusters: int = 2000, spread: float = 0.35) -> np.ndarray:
    """[n, dim] float32, L2-normalised: points around `clusters` random directions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 200_000):
        e = min(n, s + 200_000)
        pts = centres[rng.integers(0, clusters, e - s)] + spread * rng.normal(size=(e - s, dim)).astype(np.float32) / np.sqrt(dim)
        out[s:e] = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    return out


def load_table(vectors: np.ndarray) -> float:
    """Replace the bench table's rows by the vectors (COPY); seconds taken."""
    from django.db import connection

    t = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, model_version_id integer NOT NULL, image_id bigint NOT NULL, "
            "galaxy_id bigint NOT NULL, embedding vector NOT NULL)"
        )
        with cur.connection.cursor().copy(f"COPY {TABLE} (model_version_id, image_id, galaxy_id, embedding) FROM STDIN") as copy:
            for i, v in enumerate(vectors):
                copy.write_row((VERSION_ID, i + 1, i + 1, "[" + ",".join(f"{x:.7g}" for x in v) + "]"))
        cur.execute(f"ANALYZE {TABLE}")
    return time.perf_counter() - t


def build_index(dim: int, m: int, ef_construction: int) -> float:
    from django.db import connection, transaction

    from ml.vectors import ensure_hnsw_index

    t = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL maintenance_work_mem = '2GB'")
        ensure_hnsw_index(VERSION_ID, dim, m=m, ef_construction=ef_construction, table=TABLE)
    return time.perf_counter() - t


def orm_round_trip(model, reps: int = 200) -> list[float]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        list(model.objects.filter(pk=1).values_list("image_id")[:1])
        times.append(time.perf_counter() - t)
    return times


def server_times(queries: np.ndarray, dim: int, ef: int) -> list[float]:
    """The server's execution time [ms] of the search statement (EXPLAIN ANALYZE), without the
    client, the ORM or the socket."""
    from django.db import connection, transaction

    out = []
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
        for q in queries:
            lit = "[" + ",".join(f"{x:.7g}" for x in q) + "]"
            cur.execute(
                f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT image_id, galaxy_id, (embedding::vector({dim})) <=> '{lit}'::vector AS d "
                f"FROM {TABLE} WHERE model_version_id = {VERSION_ID} ORDER BY 3 LIMIT {K}"
            )
            out.append(float(cur.fetchone()[0][0]["Execution Time"]))
    return out


def explain(model, query: np.ndarray, dim: int) -> str:
    from django.db.models.functions import Cast
    from pgvector.django import CosineDistance, VectorField

    qs = (
        model.objects.filter(model_version_id=VERSION_ID)
        .annotate(distance=CosineDistance(Cast("embedding", VectorField(dimensions=dim)), query))
        .order_by("distance")
        .values_list("image_id", "distance")[:K]
    )
    return qs.explain()


def bench_search(size: int, dim: int, args, deadline: float, last_rate: float | None) -> float | None:
    from ml.latent_services import nearest

    model = bench_model()
    if last_rate is not None:
        estimate = size / last_rate
        left = deadline - time.perf_counter()
        if estimate > left:
            say(f"\n{size:,} vectors: skipped, the index build would take about {estimate:.0f} s and {left:.0f} s of the budget are left")
            return None
    say(f"\n{size:,} vectors of dim {dim} (2,000 clusters), HNSW m={args.m}, ef_construction={args.ef_construction}")
    both = synthetic_vectors(size + args.queries, dim, seed=size)  # queries: held-out draws of the same clusters
    data, queries = both[:size], both[size:]
    say(f"  COPY: {load_table(data):.1f} s")
    build = build_index(dim, args.m, args.ef_construction)
    say(f"  index build: {build:.1f} s ({size / build:,.0f} vectors/s)")
    plan = explain(model, queries[0], dim)
    say("  plan: " + " | ".join(line.strip() for line in plan.splitlines()[:3]))
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :K] + 1  # image ids are row numbers + 1
    trip = orm_round_trip(model)
    say(f"  baseline: ORM round trip of a one-row primary-key query p50 {pct(trip, 50) * 1e3:.2f} ms")
    for ef in args.ef:
        for q in queries[:10]:  # warm the index pages
            nearest(q, VERSION_ID, dim, limit=K, ef_search=ef, model=model)
        times, hits = [], 0
        for qi, q in enumerate(queries):
            t = time.perf_counter()
            got = nearest(q, VERSION_ID, dim, limit=K, ef_search=ef, model=model)
            times.append(time.perf_counter() - t)
            hits += len({g[0] for g in got} & set(exact[qi].tolist()))
        recall = hits / (K * len(queries))
        p50 = pct(times, 50) * 1e3
        server = server_times(queries[:50], dim, ef)
        say(
            f"  ef_search {ef:4d}: p50 {p50:.2f} ms, p95 {pct(times, 95) * 1e3:.2f} ms "
            f"({p50 / (pct(trip, 50) * 1e3):.1f}x the round trip), recall@10 {recall:.3f}; "
            f"server execution p50 {pct(server, 50):.2f} ms (EXPLAIN ANALYZE of the same statement)"
        )
    return size / build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated numbers of vectors")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="40,100,200", help="hnsw.ef_search values")
    parser.add_argument("--m", type=int, default=None, help="HNSW m (default GALCAT_LATENT_HNSW_M)")
    parser.add_argument("--ef-construction", type=int, default=None, help="default GALCAT_LATENT_HNSW_EF_CONSTRUCTION")
    parser.add_argument("--images", type=int, default=2000, help="inputs of the encoding benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each encoding figure (best and median shown)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1500.0, help="seconds for the whole search part")
    parser.add_argument("--skip-encoding", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    args.ef = [int(v) for v in args.ef.split(",") if v]
    setup_django()
    from django.conf import settings

    args.m = args.m or settings.GALCAT_LATENT_HNSW_M
    args.ef_construction = args.ef_construction or settings.GALCAT_LATENT_HNSW_EF_CONSTRUCTION
    if not args.skip_encoding:
        say(f"encoding, {args.images:,} inputs from the shared SDSS images")
        bench_encoding(args.images, args.threads, args.repeats)
    if args.skip_search:
        return
    from ml.latent import load_latent

    dim = load_latent(device="cpu").dim
    deadline = time.perf_counter() + args.budget
    rate = None
    for size in [int(s) for s in args.sizes.split(",") if s]:
        rate = bench_search(size, dim, args, deadline, rate) or rate
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
    say(f"\nbench table dropped (database {BENCH_DB} kept for the next run)")


if __name__ == "__main__":
    main()
