"""`materialize` on the 38k real IT-service tickets, time by asset step.

Imports the shared CSV (undated, original-case labels) into a fresh database on the PostgreSQL of
``DATABASE_URL`` (created and dropped here) with a fresh data directory, then materialises the
whole asset graph once (the full training grids, as `ticketops materialize` does) and prints each
step's wall time from the run's events.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_real_materialize.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ticket_assets.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATASET = REPO.parent / "shared" / "datasets" / "it-service-tickets" / "train.csv.gz"


def main() -> None:
    import psycopg

    if not DATASET.exists():
        print(f"skipped: {DATASET} not found")
        return
    server = os.environ.get("DATABASE_URL")
    if not server:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server this benchmark may create a database on")
    name = f"ticketops_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update({"TICKETOPS_DATA_DIR": tmp, "DATABASE_URL": url, "DAGSTER_HOME": f"{tmp}/dh"})
            for key in ("MLFLOW_TRACKING_URI", "QDRANT_URL", "LLM_BASE_URL", "TICKETOPS_TRAIN_QUICK"):
                os.environ.pop(key, None)
            run(url)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")


def run(url: str) -> None:
    import dagster as dg

    from ticket_assets.definitions import build_definitions
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.sources.csv_import import ColumnMapping
    from ticket_assets.sources.store import ingest_csv

    settings = prepare_environment(get_settings())
    started = time.perf_counter()
    report = ingest_csv(url, DATASET, ColumnMapping(text_col="text", topic_col="topic", id_col="ticket_id"))
    ingest_seconds = time.perf_counter() - started
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with dg.instance_for_test() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=quiet)
        total = time.perf_counter() - started
    steps = [
        (event.step_key, event.event_specific_data.duration_ms / 1000)
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_SUCCESS
    ]
    print(f"ingest csv: {report.inserted} tickets in {ingest_seconds:.1f} s; run success={result.success}")
    print("| step | seconds |\n| --- | --- |")
    for step, seconds in sorted(steps, key=lambda s: -s[1]):
        print(f"| `{step}` | {seconds:.1f} |")
    print(f"| whole run (wall) | {total:.1f} |")


if __name__ == "__main__":
    main()
