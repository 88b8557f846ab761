"""Embedding backfill: tickets/s with 1 vs 2 processes, and how to split the cores.

Questions: does the partitioned backfill (``ticketops backfill embeddings``) encode faster with two
worker processes of one thread each than with one process of two threads (what the unpartitioned
``ticket_embeddings`` asset does), on real-length texts (the shared IT-tickets dataset) and on
synthetic ones; what does a partition run cost over a bare ``embed_missing`` call; and what does
each worker hold in memory. Oversubscription (2 processes x 2 threads on 2 cores) is measured too.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/bench_backfill.py --n 3000 --write

Per corpus: one database of its own on that server (created and dropped here), tickets ingested and
dbt marts built by the platform's own assets, then for each configuration the store is emptied and
every partition is backfilled by ``run_embedding_backfill`` (the CLI's driver: spawned workers, one
Dagster run per partition, recorded on a temporary instance). ``wall`` counts from the call to the
last commit (worker start-up and model load included); ``steady`` counts from the first stored
vector to the last, the rate a long backfill runs at.
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
    wall_s: float
    steady_per_s: float
    peak_worker_rss_mb: float
    load_avg: float

    @property
    def wall_per_s(self) -> float:
        return self.encoded / self.wall_s


def _with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def worker_rss_mb() -> float:
    """Largest resident set among this process's children (the backfill workers), now."""
    import psutil

    sizes = [child.memory_info().rss for child in psutil.Process().children(recursive=True)]
    return max(sizes, default=0) / 2**20


def prepare_corpus(server_url: str, corpus: str, n: int, data_dir: Path):
    """A migrated database holding ``n`` tickets of ``corpus`` and the dbt marts built from them."""
    import polars as pl
    import psycopg
    from pydantic import SecretStr

    from ticket_assets.runner import dagster_instance, materialize, prepare_environment
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


def run_config(settings, corpus: str, label: str, processes: int, threads: int) -> Row:
    from ticket_assets.backfill import run_embedding_backfill

    url = settings.database_url.get_secret_value()
    clear(url)
    first: list[tuple[float, int]] = []
    last: list[tuple[float, int]] = [(0.0, 0)]
    peak = [0.0]
    load = [os.getloadavg()[0]]

    def on_status(status, _finished) -> None:
        now = time.perf_counter()
        if status.stored and not first:
            first.append((now, status.stored))
        if status.stored > last[0][1]:
            last[0] = (now, status.stored)
        peak[0] = max(peak[0], worker_rss_mb())
        load.append(os.getloadavg()[0])

    outcome = run_embedding_backfill(
        settings.model_copy(update={"embed_threads": processes * threads}),
        processes=processes,
        on_status=on_status,
        poll_s=0.25,
    )
    if not outcome.success or outcome.status.missing:
        raise SystemExit(f"{corpus} / {label}: backfill failed: {[r.errors for r in outcome.results]}")
    (t0, n0), (t1, n1) = first[0], last[0]
    row = Row(
        corpus=corpus,
        config=label,
        processes=processes,
        threads=outcome.threads_per_process,
        encoded=outcome.encoded,
        wall_s=outcome.seconds,
        steady_per_s=(n1 - n0) / (t1 - t0) if t1 > t0 else float("nan"),
        peak_worker_rss_mb=peak[0],
        load_avg=sum(load) / len(load),
    )
    print(
        f"{corpus:9s} {label:42s} encoded {row.encoded} wall {row.wall_s:6.1f}s ({row.wall_per_s:5.1f}/s) "
        f"steady {row.steady_per_s:5.1f}/s worker RSS {row.peak_worker_rss_mb:.0f} MB load {row.load_avg:.1f}",
        flush=True,
    )
    return row


def bare_embed(settings, corpus: str) -> Row:
    """The unpartitioned path in this process: ``embed_missing`` over the whole training set, 2 threads."""
    import polars as pl

    from ticket_assets.ml.embed import build_embedder
    from ticket_assets.ml.embedding_store import embed_missing
    from ticket_assets.services.postgres import connect

    url = settings.database_url.get_secret_value()
    clear(url)
    with connect(url) as conn:
        rows = conn.execute("select distinct text_hash, text from marts.training_set").fetchall()
    frame = pl.DataFrame(rows, schema={"text_hash": pl.Utf8, "text": pl.Utf8}, orient="row")
    load0 = os.getloadavg()[0]
    started = time.perf_counter()
    embedder = build_embedder("onnx", settings.model_copy(update={"embed_threads": 2}))
    report = embed_missing(url, embedder, frame, batch_size=settings.embed_batch_size)
    wall = time.perf_counter() - started
    row = Row(
        corpus,
        "in-process embed_missing, 2 threads (no Dagster)",
        1,
        2,
        report.encoded,
        wall,
        report.encoded / report.seconds,
        float("nan"),
        (load0 + os.getloadavg()[0]) / 2,
    )
    print(
        f"{corpus:9s} {row.config:42s} encoded {row.encoded} wall {wall:6.1f}s steady {row.steady_per_s:5.1f}/s",
        flush=True,
    )
    return row


def section(
    rows: list[Row], n: int, chars: dict[str, float], command: str, load_start: float, load_end: float
) -> str:
    lines = [
        "## Embedding backfill (`benchmarks/bench_backfill.py`)",
        "",
        f"Command: `{command}`. Machine: 2 CPU cores, 24 GiB RAM, shared with other jobs; 1-minute load "
        f"average {load_start:.1f} at start, {load_end:.1f} at end (per row: the mean during that run). "
        "Busy cores make absolute rates pessimistic; the ratios within one corpus come from the same run.",
        "",
        f"{n} tickets per corpus through ingest and dbt, then every one of the 16 hash partitions of "
        "`ticket_embeddings_backfill` backfilled by `run_embedding_backfill` (the driver of "
        "`ticketops backfill embeddings`): spawned workers, one Dagster run per partition, int8 ONNX one text "
        "per run. *wall*: call to last commit, worker start-up and model load included. *steady*: first "
        "stored vector to last, the rate of a long backfill. Mean text length: "
        + ", ".join(f"{corpus} {value:.0f} characters" for corpus, value in chars.items())
        + ".",
        "",
        "| corpus | configuration | encoded | wall s | wall tickets/s | steady tickets/s | steady vs 1x2 | peak worker RSS MB | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for corpus in dict.fromkeys(row.corpus for row in rows):
        mine = [row for row in rows if row.corpus == corpus]
        base = next(row for row in mine if row.config == CONFIGS[0][0])
        for row in mine:
            rss = "" if row.peak_worker_rss_mb != row.peak_worker_rss_mb else f"{row.peak_worker_rss_mb:.0f}"
            lines.append(
                f"| {corpus} | {row.config} | {row.encoded} | {row.wall_s:.1f} | {row.wall_per_s:.1f} | "
                f"{row.steady_per_s:.1f} | {row.steady_per_s / base.steady_per_s:.2f}x | {rss} | {row.load_avg:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="tickets per corpus")
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
    for corpus in corpora:
        with tempfile.TemporaryDirectory(prefix=f"bench-backfill-{corpus}-") as tmp:
            name, settings = prepare_corpus(server_url, corpus, args.n, Path(tmp))
            try:
                chars[corpus] = mean_chars(settings.database_url.get_secret_value())
                for label, processes, threads in CONFIGS:
                    rows.append(run_config(settings, corpus, label, processes, threads))
                rows.append(bare_embed(settings, corpus))
            finally:
                with psycopg.connect(server_url, autocommit=True) as conn:
                    conn.execute(f'drop database if exists "{name}" with (force)')
    command = (
        "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_backfill.py "
        + " ".join(sys.argv[1:])
    )
    text = section(rows, args.n, chars, command.strip(), load_start, os.getloadavg()[0])
    print(text)
    if args.write:
        from benchmarks.report import write_section

        write_section(REPO_ROOT / "BENCHMARKS.md", "backfill", text)


if __name__ == "__main__":
    main()
