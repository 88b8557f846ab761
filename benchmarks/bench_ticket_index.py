"""Ticket vector index: which embedded engine stays fast at a million tickets.

Compares, on the same vectors in one run:
* ``qdrant-edge-py`` (Qdrant's Rust engine in-process: HNSW segments on disk),
* ``qdrant-client`` local mode (``QdrantClient(":memory:")``: an exhaustive scan in Python/numpy),
* exact numpy search (one matrix-vector product + ``argpartition``: the recall reference),

at 10k / 100k / 1M points of 384-d normalised, clustered vectors (random centres, tickets scattered
around them; real ticket embeddings are clustered by topic the same way). Each (engine, size) runs in
its own process so the resident-memory figure is that engine's alone: RSS after the queries
(index built and in use) minus the RSS once the vectors and ground truth existed.

    .venv/bin/python benchmarks/bench_ticket_index.py                       # all sizes, all engines
    .venv/bin/python benchmarks/bench_ticket_index.py --sizes 10000 --queries 100
    .venv/bin/python benchmarks/bench_ticket_index.py --local-max 100000   # skip local mode above that
    .venv/bin/python benchmarks/bench_ticket_index.py --incremental 100000 # 1 % change vs full build
    .venv/bin/python benchmarks/bench_ticket_index.py --incremental 20000 --incremental-engine server-local

Results are appended to ``benchmarks/results/ticket_index.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "ticket_index.jsonl"
DIM = 384
K = 10


def clustered_vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """``n`` unit vectors around ``max(n // 200, 8)`` random centres (cosine to centre ~0.6-0.8)."""
    rng = np.random.default_rng(seed)
    n_centres = max(n // 200, 8)
    centres = rng.standard_normal((n_centres, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        stop = min(start + step, n)
        which = rng.integers(0, n_centres, stop - start)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) * np.float32(0.045)
        block = centres[which] + noise
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def queries_for(vectors: np.ndarray, n_queries: int, seed: int) -> np.ndarray:
    """Queries near indexed points (a new ticket resembling past ones), not copies of them."""
    rng = np.random.default_rng(seed + 1)
    base = vectors[rng.integers(0, len(vectors), n_queries)]
    q = base + rng.standard_normal(base.shape, dtype=np.float32) * np.float32(0.03)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(vectors: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    scores = vectors @ q
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


# One engine at one size (child process) -------------------------------------------------------------


def run_one(engine: str, n: int, n_queries: int, seed: int, time_budget_s: float) -> dict:
    vectors = clustered_vectors(n, seed)
    queries = queries_for(vectors, n_queries, seed)
    truth = [exact_topk(vectors, q) for q in queries]
    base_rss = rss_mb()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ticket-index-"))
    result: dict = {"engine": engine, "n": n, "dim": DIM, "k": K}
    try:
        t0 = time.perf_counter()
        search, extra = _build(engine, vectors, tmp)
        result["build_s"] = round(time.perf_counter() - t0, 2)
        result.update(extra)
        latencies, hits, done = [], 0, 0
        deadline = time.perf_counter() + time_budget_s
        for q, expected in zip(queries, truth, strict=True):
            t0 = time.perf_counter()
            found = search(q)
            latencies.append((time.perf_counter() - t0) * 1000)
            hits += len(set(found[:K]) & set(expected.tolist()))
            done += 1
            if time.perf_counter() > deadline:
                break
        lat = np.array(latencies)
        result.update(
            queries=done,
            p50_ms=round(float(np.percentile(lat, 50)), 3),
            p99_ms=round(float(np.percentile(lat, 99)), 3),
            recall_at_10=round(hits / (done * K), 4),
            index_rss_mb=round(max(rss_mb() - base_rss, 0.0), 1),
        )
        if engine == "edge":
            result["disk_mb"] = round(dir_mb(tmp), 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _build(engine: str, vectors: np.ndarray, tmp: Path):
    if engine == "numpy":
        matrix = np.ascontiguousarray(vectors)  # the stacked matrix is the whole "index"
        return (lambda q: exact_topk(matrix, q).tolist()), {}
    if engine == "edge":
        from ticket_assets.memory.ticket_index import EDGE_SEARCH_EF, build_edge_shard, edge_search_ids

        shard = build_edge_shard(tmp / "shard", vectors, [{"i": i} for i in range(len(vectors))])
        return (lambda q: edge_search_ids(shard, q, K)), {"hnsw_ef": EDGE_SEARCH_EF}
    if engine == "local":
        from qdrant_client import QdrantClient, models

        client = QdrantClient(":memory:")
        client.create_collection(
            "t", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
        )
        for start in range(0, len(vectors), 2048):
            block = vectors[start : start + 2048]
            client.upload_collection("t", vectors=block, ids=list(range(start, start + len(block))))

        def search(q: np.ndarray) -> list[int]:
            return [int(p.id) for p in client.query_points("t", query=q, limit=K).points]

        return search, {}
    raise ValueError(engine)


# Incremental update: a 1 % change against a full build of the published index ---------------------------


def run_incremental(n: int, change: float, seed: int, engine: str = "edge") -> dict:
    """Full build vs a ``change`` share of tickets changed. ``engine`` ``server-local``: the server
    path (``sync_server``) against qdrant-client's local engine standing in for a Qdrant server; its
    steady-state update is the third sync (the standby slot then exists and catches up on two changes)."""
    from datetime import UTC, datetime, timedelta

    import polars as pl

    from ticket_assets.memory.ticket_index import PAYLOAD_COLUMNS, sync_index, sync_server

    vectors = clustered_vectors(n, seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "ticket_id": [f"t-{i}" for i in range(n)],
            "text_hash": [f"h-{i}" for i in range(n)],
            "topic": ["network"] * n,
            "urgency": ["low"] * n,
            "created_at": pl.datetime_range(start, start + timedelta(minutes=n - 1), "1m", eager=True),
            "channel": ["email"] * n,
            "department": ["Finance"] * n,
            "status": pl.Series([None] * n, dtype=pl.String),
            "resolution": pl.Series([None] * n, dtype=pl.String),
        }
    ).select(PAYLOAD_COLUMNS)
    by_hash = {f"h-{i}": vectors[i] for i in range(n)}
    fetch = lambda hashes: {h: by_hash[h] for h in hashes}  # noqa: E731
    directory = Path(tempfile.mkdtemp(prefix="bench-ticket-sync-"))
    if engine == "server-local":
        from qdrant_client import QdrantClient

        client = QdrantClient(":memory:")
        sync = lambda frame: sync_server(client, frame, fetch, "bench", manifest_dir=directory)  # noqa: E731
    else:
        sync = lambda frame: sync_index(frame, fetch, directory, "bench")  # noqa: E731
    try:
        full = sync(rows)
        k = max(int(n * change), 1)
        # Half the change is resolved tickets (payload only), half re-worded ones (new vector).
        fresh = clustered_vectors(k, seed + 99)
        by_hash.update({f"h2-{i}": fresh[i] for i in range(k)})
        changed = (
            rows.with_row_index("i")
            .with_columns(
                status=pl.when(pl.col("i") < k // 2).then(pl.lit("resolved")).otherwise(pl.col("status")),
                text_hash=pl.when((pl.col("i") >= k // 2) & (pl.col("i") < k))
                .then(pl.format("h2-{}", pl.col("i")))
                .otherwise(pl.col("text_hash")),
            )
            .drop("i")
        )
        if engine == "server-local":
            # The second sync fills the other slot once; the third is the steady state: it upserts
            # the previous change plus a new one of the same size (resolved tickets further on).
            sync(changed)
            changed = (
                changed.with_row_index("i")
                .with_columns(
                    status=pl.when((pl.col("i") >= k) & (pl.col("i") < 2 * k))
                    .then(pl.lit("resolved"))
                    .otherwise(pl.col("status"))
                )
                .drop("i")
            )
        update = sync(changed)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "engine": "edge-sync" if engine == "edge" else "server-sync (qdrant-client local engine)",
        "n": n,
        "changed": update.upserted,
        "full_build_s": round(full.seconds, 2),
        "incremental_s": round(update.seconds, 2),
        "ratio": round(update.seconds / full.seconds, 4),
    }


# Driver ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--engines", default="numpy,edge,local")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--local-max", type=int, default=100_000, help="largest size local mode runs at")
    parser.add_argument("--query-budget-s", type=float, default=120.0, help="stop querying after this long")
    parser.add_argument(
        "--incremental", type=int, metavar="N", help="only time a 1 %% change vs a full build"
    )
    parser.add_argument(
        "--incremental-engine",
        choices=("edge", "server-local"),
        default="edge",
        help="with --incremental: the embedded index, or the server path on qdrant-client's local engine",
    )
    parser.add_argument("--one", nargs=2, metavar=("ENGINE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, n = args.one[0], int(args.one[1])
        print(json.dumps(run_one(engine, n, args.queries, args.seed, args.query_budget_s)))
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    if args.incremental:
        record = run_incremental(args.incremental, 0.01, args.seed, args.incremental_engine)
        record.update(machine=f"{os.cpu_count()} cores", load_avg_1m=round(load[0], 2), at=time.time())
        print(record)
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        return
    for n in [int(s) for s in args.sizes.split(",")]:
        for engine in args.engines.split(","):
            if engine == "local" and n > args.local_max:
                print(f"{engine:>6} n={n:>8}: skipped (local mode above --local-max {args.local_max})")
                continue
            print(f"{engine:>6} n={n:>8}: running ...", flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--one", engine, str(n), "--queries", str(args.queries),
                 "--seed", str(args.seed), "--query-budget-s", str(args.query_budget_s)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                print(out.stderr[-2000:])
                raise SystemExit(f"{engine} at n={n} failed")
            record = json.loads(out.stdout.strip().splitlines()[-1])
            record.update(machine=f"{os.cpu_count()} cores", load_avg_1m=round(load[0], 2), at=time.time())
            print(f"{engine:>6} n={n:>8}: {record}", flush=True)
            with RESULTS.open("a") as fh:
                fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
