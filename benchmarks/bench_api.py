"""API latency and throughput: a real uvicorn server (subprocess) under a loopback load generator.

    .venv/bin/python benchmarks/bench_api.py [--duration 6] [--clients 1,8,32]
    .venv/bin/python benchmarks/bench_api.py --endpoints triage --clients 1,32 \
        --configs durability:off,durability:spool,durability:postgres

Sets up its own data directory (a model trained on synthetic tickets, registered as champion in an
MLflow SQLite store; the KB index built from kb/) and database (a throw-away one on DATABASE_URL's
server, or the embedded server). Then, for micro-batching off and on (same run, same model), it
drives POST /v1/triage and POST /v1/answer (extractive drafts) with 1, 8 and 32 concurrent
clients, each sending requests back to back for a fixed time. Where the time goes comes from the
server's own ``Server-Timing`` header (queue, embed, model, retrieve, draft, log). It also times
the logging alternative: one synchronous INSERT per request instead of the background writer.
The ``durability:`` configs compare making each acknowledged prediction crash-proof with the local
spool (fsync, group commit) against waiting for the group commit in PostgreSQL, and against no
durability at all (rows in memory only).

The load generator runs on the same 2 cores as the server, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import numpy as np
import polars as pl

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report import write_section  # noqa: E402

API_KEY = "bench-key"
MODEL_NAME = "ticket-triage-bench"
STAGES = ("queue", "embed", "model", "similar", "retrieve", "draft", "log")
RESULTS = REPO_ROOT / "benchmarks" / "results" / "api.json"


# Set-up -----------------------------------------------------------------------------------------------
def bench_database() -> tuple[str, str | None]:
    """(url, admin url to drop it afterwards) — a fresh database so the run starts empty."""
    import psycopg

    from ticket_assets.services.postgres import start_database
    from ticket_assets.settings import Settings

    base = os.environ.get("DATABASE_URL") or start_database(Settings())
    name = f"ticketops_bench_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return urlunparse(urlparse(base)._replace(path=f"/{name}")), base


def drop_database(url: str, admin: str) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def prepare(data_dir: Path, db_url: str, cache_dir: Path | None, index_size: int = 0) -> list[str]:
    """Train + register a champion and publish the KB index (and, with ``index_size``, a ticket index
    of the 2400 generated tickets padded with clustered vectors); returns held-out ticket texts."""
    from pydantic import SecretStr

    from ticket_assets.core.text import model_text
    from ticket_assets.ml import registry
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.ml.train import TrainConfig, train_triage_model
    from ticket_assets.rag.index import build_snapshot, publish
    from ticket_assets.rag.kb import chunk_article, load_articles
    from ticket_assets.services.migrations import migrate
    from ticket_assets.settings import Settings
    from ticket_assets.sources.synthetic import generate_tickets

    settings = Settings(
        data_dir=data_dir, database_url=SecretStr(db_url), model_name=MODEL_NAME, model_cache_dir=cache_dir
    )
    migrate(db_url)
    embedder = get_embedder(settings)
    tickets = generate_tickets(2400, seed=5)
    texts = [model_text(t, b) for t, b in zip(tickets["title"], tickets["body"], strict=True)]
    train = tickets.select("topic", "urgency").with_columns(text=pl.Series(texts))[:2000]
    outcome = train_triage_model(
        train, embedder.encode(train["text"].to_list()), embedder.model_id, TrainConfig(cv_folds=2, n_jobs=2)
    )
    version = registry.log_training_run(
        outcome.model, {}, {}, {}, {"rows": train.height}, settings=settings, db_url=db_url
    ).version
    registry.promote(version, "bench", "benchmark champion", settings=settings, url=db_url)
    if index_size:
        publish_ticket_index(tickets, embedder.encode(texts), embedder.model_id, settings, index_size)
    chunks = [c for article in load_articles(REPO_ROOT / "kb") for c in chunk_article(article)]
    publish(
        build_snapshot(chunks, embedder.encode([c.text for c in chunks]), embedder.model_id, settings),
        settings,
    )
    return texts[2000:]


def publish_ticket_index(
    tickets: pl.DataFrame, vectors: np.ndarray, model_id: str, settings, size: int
) -> None:
    from benchmarks.bench_ticket_index import clustered_vectors
    from ticket_assets.memory.ticket_index import PAYLOAD_COLUMNS, sync_index

    pad = max(size - tickets.height, 0)
    rows = tickets.select("ticket_id", "text_hash", "topic", "urgency", "created_at", "channel", "department")
    rows = rows.with_columns(status=pl.lit(None, pl.String), resolution=pl.lit(None, pl.String))
    by_hash = dict(zip(rows["text_hash"].to_list(), vectors, strict=True))
    if pad:
        padding = clustered_vectors(pad, seed=3)
        by_hash.update({f"pad-{i}": padding[i] for i in range(pad)})
        rows = pl.concat(
            [
                rows.select(PAYLOAD_COLUMNS),
                pl.DataFrame(
                    {
                        "ticket_id": [f"pad-{i}" for i in range(pad)],
                        "text_hash": [f"pad-{i}" for i in range(pad)],
                    }
                )
                .join(rows.head(1).drop("ticket_id", "text_hash"), how="cross")
                .select(PAYLOAD_COLUMNS),
            ]
        )
    print(f"building the ticket index ({rows.height} points)…", flush=True)
    sync_index(
        rows.unique("ticket_id"), lambda hs: {h: by_hash[h] for h in hs}, settings.ticket_index_dir, model_id
    )


# Server -----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    data_dir: Path,
    db_url: str,
    cache_dir: Path | None,
    extra_env: dict[str, str],
    log: Path,
    source: Path = REPO_ROOT,
) -> tuple[subprocess.Popen, str]:
    """``python -m serving`` from ``source`` (this checkout, or an exported earlier revision: with
    the module's directory first on sys.path, its ``serving`` and ``ticket_assets`` are the ones run)."""
    port = free_port()
    env = {
        **os.environ,
        "TICKETOPS_DATA_DIR": str(data_dir),
        "DATABASE_URL": db_url,
        "TICKETOPS_MODEL_NAME": MODEL_NAME,
        "TICKETOPS_API_PORT": str(port),
        "TICKETOPS_API_KEYS": API_KEY,
        **({"TICKETOPS_MODEL_CACHE_DIR": str(cache_dir)} if cache_dir else {}),
        **extra_env,
    }
    for name in ("LLM_BASE_URL", "TICKETOPS_LLM_BASE_URL"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "serving"],
        cwd=source,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited; see {log}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return process, base_url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server not ready after 300 s; see {log}")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


# Load -------------------------------------------------------------------------------------------------
@dataclass
class Run:
    config: str
    endpoint: str
    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    mean_batch: float | None = None
    server_cpu_ms: float | None = None  # CPU per request (includes the 1 s warm-up: an upper bound)
    client_cpu_ms: float | None = None
    load_avg: float | None = None  # 1-minute load average at the end of the scenario

    def summary(self) -> dict:
        lat = np.array(self.latencies_ms)
        return {
            "config": self.config,
            "endpoint": self.endpoint,
            "clients": self.clients,
            "requests": len(lat),
            "errors": self.errors,
            "rps": round(len(lat) / self.seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p95_ms": round(float(np.percentile(lat, 95)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "server_ms": {s: round(float(np.mean(v)), 2) for s, v in self.stages.items() if v},
            "mean_batch": None if self.mean_batch is None else round(self.mean_batch, 2),
            "server_cpu_ms_per_request": None if self.server_cpu_ms is None else round(self.server_cpu_ms, 2),
            "client_cpu_ms_per_request": None if self.client_cpu_ms is None else round(self.client_cpu_ms, 2),
            "load_avg": self.load_avg,
        }


def parse_server_timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


def batch_counters(base_url: str) -> tuple[float, float]:
    text = httpx.get(f"{base_url}/metrics").text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("ticketops_inference_batch_size_")
    }
    return values.get("ticketops_inference_batch_size_sum", 0.0), values.get(
        "ticketops_inference_batch_size_count", 0.0
    )


class RawHttpClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams.

    httpx spends ~2.2 ms of CPU per request (measured here), a third of what the server spends
    answering it; on 2 cores shared with the server that caps the measurable throughput. This
    client spends ~0.1 ms.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nX-API-Key: {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        raw_head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        payload = await self._reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, payload

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to attribute cost to server vs load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(base_url: str, path: str, texts: list[str], clients: int, seconds: float, run: Run) -> None:
    parsed = urlparse(base_url)
    bodies = [json.dumps({"ticket": {"text": text}}).encode() for text in texts]
    connections = [RawHttpClient(parsed.hostname or "127.0.0.1", parsed.port or 80) for _ in range(clients)]

    async def one_client(index: int, until: float, record: bool) -> None:
        http = connections[index]
        i = index
        while time.perf_counter() < until:
            started = time.perf_counter()
            status, headers, _ = await http.post(path, bodies[i % len(bodies)])
            elapsed = (time.perf_counter() - started) * 1000
            i += clients
            if not record:
                continue
            if status != 200:
                run.errors += 1
                continue
            run.latencies_ms.append(elapsed)
            for stage, ms in parse_server_timing(headers.get("server-timing", "")).items():
                if stage in run.stages:
                    run.stages[stage].append(ms)

    try:
        warm_until = time.perf_counter() + 1.0
        await asyncio.gather(*(one_client(c, warm_until, False) for c in range(clients)))
        until = time.perf_counter() + seconds
        await asyncio.gather(*(one_client(c, until, True) for c in range(clients)))
    finally:
        for http in connections:
            await http.close()


def measure_logging_alternative(db_url: str, n: int = 300) -> dict[str, float]:
    """Per-request cost of the two ways to log: enqueue for the background writer vs INSERT now."""
    from datetime import UTC, datetime

    import psycopg

    from serving.prediction_log import INSERT_SQL, PredictionLogWriter, PredictionRow, _as_params

    def row() -> PredictionRow:
        return PredictionRow(
            uuid.uuid4(),
            uuid.uuid4(),
            datetime.now(UTC),
            "triage",
            "bench text",
            "0" * 64,
            10,
            None,
            "printer",
            0.9,
            "low",
            0.8,
            {"topic": {"printer": 0.9}},
            False,
            MODEL_NAME,
            "1",
            None,
            None,
            5.0,
        )

    with psycopg.connect(db_url, autocommit=True) as conn:
        started = time.perf_counter()
        for _ in range(n):
            conn.execute(INSERT_SQL, _as_params(row()))
        sync_ms = (time.perf_counter() - started) * 1000 / n

    async def enqueue_all() -> float:
        writer = PredictionLogWriter(db_url, flush_interval_s=0.05)
        await writer.start()
        rows = [row() for _ in range(n)]
        started = time.perf_counter()
        for item in rows:
            writer.enqueue([item])
        elapsed = (time.perf_counter() - started) * 1000 / n
        await writer.stop()
        return elapsed

    return {"sync_insert_ms": round(sync_ms, 3), "enqueue_ms": round(asyncio.run(enqueue_all()), 4)}


# Report -------------------------------------------------------------------------------------------------
def markdown(summaries: list[dict], logging_cost: dict[str, float]) -> str:
    lines = [
        "| endpoint | micro-batching | clients | req/s | p50 ms | p95 ms | p99 ms | errors | mean batch "
        "| server CPU ms/req | server ms: queue / embed / model / similar / retrieve / draft / log |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        stages = " / ".join(
            f"{s['server_ms'].get(stage, 0):.2f}" if stage in s["server_ms"] else "–" for stage in STAGES
        )
        lines.append(
            f"| {s['endpoint']} | {s['config']} | {s['clients']} | {s['rps']} | {s['p50_ms']} | {s['p95_ms']} | "
            f"{s['p99_ms']} | {s['errors']} | {s['mean_batch']} | {s['server_cpu_ms_per_request']} | {stages} |"
        )
    lines.append("")
    lines.append(
        f"Logging a prediction on the request path: enqueue for the background writer "
        f"{logging_cost['enqueue_ms'] * 1000:.1f} µs vs a synchronous INSERT {logging_cost['sync_insert_ms']:.2f} ms."
    )
    return "\n".join(lines)


def export_revision(ref: str, target: Path) -> Path:
    """The tree of a git revision of this repository, to run its server next to this one's."""
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def hot_path_section(summaries: list[dict], machine: dict, command: str) -> str:
    """Medians over the repeats of each config: before vs shipped, trust signals on vs off."""
    by: dict[tuple[str, str, int], list[dict]] = {}
    for s in summaries:
        by.setdefault((s["config"], s["endpoint"], s["clients"]), []).append(s)
    rows = [
        "| endpoint | config | clients | runs | req/s | p50 ms | p99 ms | server CPU ms/req | mean batch "
        "| load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (config, endpoint, clients), runs in by.items():
        loads = [r["load_avg"] for r in runs if r.get("load_avg") is not None]
        rows.append(
            f"| {endpoint} | {config} | {clients} | {len(runs)} | {_median([r['rps'] for r in runs]):.1f} "
            f"| {_median([r['p50_ms'] for r in runs]):.1f} | {_median([r['p99_ms'] for r in runs]):.1f} "
            f"| {_median([r['server_cpu_ms_per_request'] for r in runs]):.2f} "
            f"| {_median([r['mean_batch'] or 1.0 for r in runs]):.1f} "
            f"| {min(loads, default=0):.1f}–{max(loads, default=0):.1f} |"
        )
    ratios = []
    bases = list(dict.fromkeys(c for c, _, _ in by if c.startswith("base@")))
    shipped = "2 ms, trust on"  # this checkout's defaults, spelled out
    pairs = [(shipped, base) for base in bases] + [(shipped, "2 ms, trust off")]
    pairs += [("shipped", base) for base in bases]
    for new, old_config in pairs:
        for (config, endpoint, clients), runs in by.items():
            if config != new or (old_config, endpoint, clients) not in by:
                continue
            old = by[(old_config, endpoint, clients)]

            def ratio(key: str, runs: list[dict] = runs, old: list[dict] = old) -> float:
                return _median([r[key] for r in runs]) / _median([r[key] for r in old])

            ratios.append(
                f"| {endpoint} | {new} vs {old_config} | {clients} | {ratio('rps'):.2f} | {ratio('p50_ms'):.2f} "
                f"| {ratio('p99_ms'):.2f} | {ratio('server_cpu_ms_per_request'):.2f} |"
            )
    lines = [
        "## API hot path: before vs after, trust signals on vs off (`benchmarks/bench_api.py`)",
        "",
        "```bash",
        f"DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_api.py {command}",
        "```",
        "",
        f"Machine: {machine['cpus']} cores / 24 GiB shared with other jobs, Python {machine['python']}; "
        "durable logging on (spool, fsync) in every config; medians over the interleaved repeats.",
        "",
        *rows,
        "",
        "| endpoint | comparison | clients | req/s ratio | p50 ratio | p99 ratio | server CPU/req ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
        *ratios,
    ]
    return "\n".join(lines)


def parse_config(spec: str) -> tuple[str, dict[str, str]]:
    if spec.startswith("base@"):  # an earlier revision of the server, its own defaults
        return spec, {}
    if spec == "shipped":  # this checkout's defaults
        return "shipped", {}
    if spec.startswith("durability:"):
        # Micro-batching as shipped; only how an acknowledged row is made durable changes.
        mode = spec.partition(":")[2]
        return f"durability {mode}", {"TICKETOPS_LOG_DURABILITY": mode}
    if spec.startswith("similar-"):  # micro-batching on (2 ms), similar tickets on or off
        enabled = spec == "similar-on"
        return f"2 ms, similar {'on' if enabled else 'off'}", {
            "TICKETOPS_MICROBATCH_ENABLED": "true",
            "TICKETOPS_SIMILAR_ENABLED": "true" if enabled else "false",
        }
    if spec.startswith("trust-"):  # micro-batching on (2 ms); out-of-scope, reasons, escalation on or off
        enabled = spec == "trust-on"
        return f"2 ms, trust {'on' if enabled else 'off'}", {
            "TICKETOPS_MICROBATCH_ENABLED": "true",
            "TICKETOPS_TRUST_SIGNALS_ENABLED": "true" if enabled else "false",
        }
    if spec == "off":
        return "off", {"TICKETOPS_MICROBATCH_ENABLED": "false"}
    _, _, window = spec.partition(":")
    window = window or "2"
    return f"on ({window} ms)", {
        "TICKETOPS_MICROBATCH_ENABLED": "true",
        "TICKETOPS_MICROBATCH_WINDOW_MS": window,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per scenario")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--endpoints", default="triage,answer")
    parser.add_argument(
        "--configs",
        default="off,on:0,on:2",
        help=(
            "server settings to compare: micro-batching off or on:<window ms>, "
            "durability:<spool|postgres|off> (how acknowledged rows are made durable), "
            "similar-off or similar-on (similar past tickets in each triage), "
            "trust-off or trust-on (out-of-scope, reasons, escalation)"
        ),
    )
    parser.add_argument(
        "--index-size", type=int, default=0, help="publish a ticket index of this many points (similar-*)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON results go")
    parser.add_argument(
        "--section",
        default=None,
        help="also write the before/after and trust on/off summary to this BENCHMARKS.md section",
    )
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = os.environ.get("TICKETOPS_MODEL_CACHE_DIR")
    cache_dir = Path(cache) if cache else Path(tempfile.gettempdir()) / "ticketops-model-cache"
    data_dir = Path(tempfile.mkdtemp(prefix="ticketops-bench-api-"))
    db_url, admin = bench_database()
    summaries = []
    try:
        print("preparing model and KB index…", flush=True)
        texts = prepare(data_dir, db_url, cache_dir, args.index_size)
        configs = [parse_config(spec) for spec in args.configs.split(",")]
        sources = {
            config: export_revision(config.partition("@")[2], data_dir / "src" / config.partition("@")[2])
            for config, _ in configs
            if config.startswith("base@") and not (data_dir / "src" / config.partition("@")[2]).exists()
        }
        for config, env in configs:
            source = sources.get(config, REPO_ROOT)
            process, base_url = start_server(
                data_dir, db_url, cache_dir, env, data_dir / f"server-{config}.log", source
            )
            try:
                for endpoint in args.endpoints.split(","):
                    for clients in client_counts:
                        run = Run(config, endpoint, clients, args.duration)
                        before = batch_counters(base_url)
                        server_cpu, own_cpu = cpu_seconds(process.pid), time.process_time()
                        asyncio.run(drive(base_url, f"/v1/{endpoint}", texts, clients, args.duration, run))
                        served = max(len(run.latencies_ms), 1)
                        run.server_cpu_ms = (cpu_seconds(process.pid) - server_cpu) * 1000 / served
                        run.client_cpu_ms = (time.process_time() - own_cpu) * 1000 / served
                        after = batch_counters(base_url)
                        batches = after[1] - before[1]
                        run.mean_batch = (after[0] - before[0]) / batches if batches else None
                        run.load_avg = round(os.getloadavg()[0], 1)
                        summaries.append(run.summary())
                        print(json.dumps(summaries[-1]), flush=True)
            finally:
                stop_server(process)
        logging_cost = measure_logging_alternative(db_url)
    finally:
        drop_database(db_url, admin)
        shutil.rmtree(data_dir, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_at_end": os.getloadavg(),
    }
    args.out.write_text(
        json.dumps({"machine": machine, "runs": summaries, "logging": logging_cost}, indent=2)
    )
    print()
    print(markdown(summaries, logging_cost))
    print(f"\nload average at end: {machine['load_avg_at_end']}")
    if args.section:
        section = hot_path_section(summaries, machine, " ".join(sys.argv[1:]))
        write_section(REPO_ROOT / "BENCHMARKS.md", args.section, section)
        print(section)


if __name__ == "__main__":
    main()
