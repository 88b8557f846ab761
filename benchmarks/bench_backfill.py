"""Embedding backfill: tickets/s with 1 vs 2 processes, and how to split the cores.

Questions: do two worker processes of one thread each encode faster than one process of two threads
(what the unpartitioned ``ticket_embeddings`` asset does), on real-length texts (the shared
IT-tickets dataset) and on synthetic ones; what one Dagster run per partition costs on top; and what
each worker holds in memory. Oversubscription (2 processes x 2 threads on 2 cores) is measured too.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/bench_backfill.py --n 1200 --write

Per corpus: one database of its own on that server (created and dropped here), tickets ingested and
dbt marts built by the platform's own assets. Then:

1. Encoding throughput per configuration: spawned processes, each with the int8 model loaded, take
   the 16 partitions round-robin and run the backfill's own code on them (``partition_candidates`` +
   ``embed_missing``: lookup, encode, chunked commits); the clock starts when every model is loaded.
   The store is emptied before each configuration.
2. The shipped path: ``run_embedding_backfill`` (the driver of ``ticketops backfill embeddings``,
   2 processes x 1 thread: one Dagster run per partition on a temporary instance), to price the
   run overhead per partition, which a large backfill amortises (62k texts per partition at 1M).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

DATASET = REPO_ROOT.parent / "shared" / "datasets" / "it-service-tickets" / "train.csv.gz"
# (label, processes, threads per process); the first is the one-process alternative.
CONFIGS = [
    ("1 process x 2 threads", 1, 2),
    ("2 processes x 1 thread", 2, 1),
    ("1 process x 1 thread", 1, 1),
    ("2 processes x 2 threads (oversubscribed)", 2, 2),
]


@dataclass
class Row:
    corpus: str
    config: str
    processes: int
    threads: int
    encoded: int
    seconds: float
    cpu_s: float  # CPU time of the workers while encoding (all their threads)
    peak_worker_rss_mb: float
    load_avg: float

    @property
    def per_second(self) -> float:
        return self.encoded / self.seconds

    @property
    def cpu_ms_per_ticket(self) -> float:
        return 1000 * self.cpu_s / self.encoded

    @property
    def cores_used(self) -> float:
        return self.cpu_s / self.seconds


def _with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def prepare_corpus(server_url: str, corpus: str, n: int, data_dir: Path):
    """A migrated database holding ``n`` tickets of ``corpus`` and the dbt marts built from them."""
    import polars as pl
    import psycopg
    from pydantic import SecretStr

    from ticket_assets.runner import dagster_instance, materialize
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.services.migrations import migrate
    from ticket_assets.settings import Settings
    from ticket_assets.sources.csv_import import ColumnMapping
    from ticket_assets.sources.store import ingest_csv, ingest_synthetic

    name = f"bench_backfill_{corpus}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = _with_database(server_url, name)
    migrate(url)
    if corpus == "real":
        sample = pl.read_csv(DATASET).sample(n, seed=7, shuffle=True)
        path = data_dir / "sample.csv"
        sample.write_csv(path)
        ingest_csv(url, path, ColumnMapping(text_col="text", topic_col="topic", id_col="ticket_id"))
    else:
        ingest_synthetic(url, n=n, seed=7)
    settings = prepare_environment(
        Settings(
            data_dir=data_dir,
            database_url=SecretStr(url),
            model_cache_dir=REPO_ROOT / ".ticketops" / "model-cache",
        ),
        prepare_dbt=True,
    )
    with dagster_instance(settings) as instance:
        outcome = materialize("group:dbt", instance=instance, settings=settings)
    if not outcome.success:
        raise SystemExit(f"dbt marts failed for {corpus}: {outcome.errors}")
    return name, settings


def mean_chars(url: str) -> float:
    from ticket_assets.services.postgres import connect

    with connect(url) as conn:
        return float(conn.execute("select avg(char_length(text)) from marts.training_set").fetchone()[0])


def clear(url: str) -> None:
    from ticket_assets.services.postgres import connect

    with connect(url) as conn:
        conn.execute("truncate features.ticket_embeddings")
        conn.commit()


def _encode_worker(url: str, cache_dir: str, threads: int, keys: list[str], barrier, results) -> None:
    from ticket_assets.ml.embed import build_embedder
    from ticket_assets.ml.embedding_backfill import partition_candidates
    from ticket_assets.ml.embedding_store import embed_missing
    from ticket_assets.services.postgres import connect
    from ticket_assets.settings import Settings

    embedder = build_embedder("onnx", Settings(model_cache_dir=Path(cache_dir), embed_threads=threads))
    embedder.encode(["warm-up"])
    barrier.wait()
    cpu = time.process_time()  # every thread of this process
    encoded = 0
    for key in keys:
        with connect(url) as conn:
            candidates = partition_candidates(conn, key)
        encoded += embed_missing(url, embedder, candidates).encoded
    cpu = time.process_time() - cpu
    rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    results.put((encoded, time.perf_counter(), rss / 1024, cpu))


def encode_config(settings, corpus: str, label: str, processes: int, threads: int) -> Row:
    import multiprocessing

    from ticket_assets.ml.embedding_backfill import EMBEDDING_PARTITION_KEYS

    url = settings.database_url.get_secret_value()
    clear(url)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes + 1), context.Queue()
    workers = [
        context.Process(
            target=_encode_worker,
            args=(
                url,
                str(settings.resolved_model_cache_dir),
                threads,
                list(EMBEDDING_PARTITION_KEYS[i::processes]),
                barrier,
                results,
            ),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    done = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    seconds = max(end for _, end, _, _ in done) - started
    row = Row(
        corpus=corpus,
        config=label,
        processes=processes,
        threads=threads,
        encoded=sum(n for n, _, _, _ in done),
        seconds=seconds,
        cpu_s=sum(cpu for _, _, _, cpu in done),
        peak_worker_rss_mb=max(rss for _, _, rss, _ in done),
        load_avg=(load0 + os.getloadavg()[0]) / 2,
    )
    print(
        f"{corpus:9s} {label:42s} {row.encoded} in {seconds:6.1f}s = {row.per_second:5.1f}/s "
        f"CPU {row.cpu_ms_per_ticket:.2f} ms/ticket on {row.cores_used:.2f} cores, RSS {row.peak_worker_rss_mb:.0f} MB load {row.load_avg:.1f}",
        flush=True,
    )
    return row


def shipped_backfill(settings, corpus: str, processes: int) -> dict[str, object]:
    from ticket_assets.backfill import run_embedding_backfill, threads_per_process

    url = settings.database_url.get_secret_value()
    clear(url)
    load0 = os.getloadavg()[0]
    settings = settings.model_copy(update={"embed_threads": 2})
    threads = threads_per_process(settings, processes)
    outcome = run_embedding_backfill(settings, processes=processes)
    if not outcome.success or outcome.status.missing:
        raise SystemExit(f"{corpus}: backfill failed: {[r.errors for r in outcome.results]}")
    runs = len(outcome.results)
    overhead = sum(r.seconds - r.encode_seconds for r in outcome.results) / runs
    figures = {
        "encoded": outcome.encoded,
        "wall_s": outcome.seconds,
        "per_second": outcome.per_second,
        "run_overhead_s": overhead,
        "encode_s": sum(r.encode_seconds for r in outcome.results),
        "load": (load0 + os.getloadavg()[0]) / 2,
        "config": f"{processes} process{'es' if processes > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}",
    }
    print(f"{corpus:9s} ticketops backfill ({figures['config']}, Dagster runs): {figures}", flush=True)
    return figures


def section(rows, shipped, n, chars, command, load_start, load_end) -> str:
    lines = [
        "## Embedding backfill (`benchmarks/bench_backfill.py`)",
        "",
        f"Command: `{command}`. Machine: 2 CPU cores, 24 GiB RAM; 1-minute load average {load_start:.1f} "
        f"at start, {load_end:.1f} at end (per row: during that run). "
        + (
            "With the cores this busy (other jobs shared them) absolute rates are far below an idle "
            'machine\'s (148/s real, 184/s synthetic in "Embeddings"); the ratios within one corpus come '
            "from back-to-back runs."
            if max(load_start, load_end) > 4
            else "Nothing else ran; the configurations of one corpus ran back to back."
        ),
        "",
        f"{n} tickets per corpus through ingest and dbt; mean text length "
        + ", ".join(f"{corpus} {value:.0f} characters" for corpus, value in chars.items())
        + ". Encoding: spawned processes with the int8 model loaded run the backfill's partition code "
        "(`partition_candidates` + `embed_missing`, commits every 2048) over the 16 partitions, clock "
        "from the last model loaded to the last commit.",
        "",
        "| corpus | configuration | encoded | seconds | tickets/s | CPU ms/ticket | CPU ms vs 1 process x 2 threads | cores used | peak RSS per worker MB | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for corpus in dict.fromkeys(row.corpus for row in rows):
        mine = [row for row in rows if row.corpus == corpus]
        base = next(row for row in mine if row.config == CONFIGS[0][0])
        for row in mine:
            lines.append(
                f"| {corpus} | {row.config} | {row.encoded} | {row.seconds:.1f} | {row.per_second:.1f} | "
                f"{row.cpu_ms_per_ticket:.2f} | {row.cpu_ms_per_ticket / base.cpu_ms_per_ticket:.2f}x | "
                f"{row.cores_used:.2f} | {row.peak_worker_rss_mb:.0f} | {row.load_avg:.1f} |"
            )
    lines += [
        "",
        "The shipped path, `run_embedding_backfill` (what `ticketops backfill embeddings` runs: by default 1 "
        "process with the 2 embedding threads, `--processes 2` 2 processes x 1 thread; one Dagster run per "
        "partition on a local SQLite instance):",
        "",
        "| corpus | configuration | encoded | wall s | tickets/s | encoding s (sum over runs) | run overhead per partition s | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for corpus, figures in shipped.items():
        for fig in figures:
            lines.append(
                f"| {corpus} | {fig['config']} | {fig['encoded']} | {fig['wall_s']:.1f} | {fig['per_second']:.1f} | "
                f"{fig['encode_s']:.1f} | {fig['run_overhead_s']:.1f} | {fig['load']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1200, help="tickets per corpus")
    parser.add_argument("--corpus", action="append", choices=["real", "synthetic"], help="default: both")
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print(
            "error: set DATABASE_URL to a PostgreSQL server (a database of its own is created there)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    corpora = args.corpus or ["real", "synthetic"]
    if "real" in corpora and not DATASET.exists():
        print(
            f"error: {DATASET} is missing (needed for the real-length corpus; use --corpus synthetic)",
            file=sys.stderr,
        )
        raise SystemExit(2)

    import psycopg

    load_start = os.getloadavg()[0]
    rows: list[Row] = []
    chars: dict[str, float] = {}
    shipped: dict[str, list[dict]] = {}
    for corpus in corpora:
        with tempfile.TemporaryDirectory(prefix=f"bench-backfill-{corpus}-") as tmp:
            name, settings = prepare_corpus(server_url, corpus, args.n, Path(tmp))
            try:
                chars[corpus] = mean_chars(settings.database_url.get_secret_value())
                for label, processes, threads in CONFIGS:
                    rows.append(encode_config(settings, corpus, label, processes, threads))
                if corpus == corpora[0]:  # the run overhead does not depend on the texts
                    shipped[corpus] = [shipped_backfill(settings, corpus, processes) for processes in (1, 2)]
            finally:
                with psycopg.connect(server_url, autocommit=True) as conn:
                    conn.execute(f'drop database if exists "{name}" with (force)')
    command = (
        "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_backfill.py "
        + " ".join(sys.argv[1:])
    )
    text = section(rows, shipped, args.n, chars, command.strip(), load_start, os.getloadavg()[0])
    print(text)
    if args.write:
        from benchmarks.report import write_section

        write_section(REPO_ROOT / "BENCHMARKS.md", "backfill", text)


if __name__ == "__main__":
    main()
