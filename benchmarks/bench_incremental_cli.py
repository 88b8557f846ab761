"""Ingest + dbt as a user runs it: the two ``ticketops`` commands, full load vs 1 % new tickets.

Question: is an incremental run - ``ticketops ingest synthetic`` of 1 % new tickets followed by
``ticketops materialize -s "group:ingest or group:dbt"`` - at most 10 % of the wall time of the same
two commands on the full load? Both commands run as subprocesses exactly as typed at a shell, on a
fresh data directory and Dagster home, with nothing set: on the embedded PostgreSQL the CLI starts in
that data directory (PostgreSQL 18, autovacuum on), or with ``--server-url`` on a database of their
own on that server.

Where the time goes, per ``materialize`` (from the Dagster run's event log and dbt's run_results.json
in the run's dbt target directory): process start and services up to the run's start (imports,
migration check, dbt manifest preparation, loading the definitions), the ``raw_tickets`` step, dbt's
start and parse inside the dbt step, each model's and the tests' execution, the rest of the dbt step
(row counts, event handling) and the process's exit. ``ticketops --help`` gives process start +
CLI imports alone.

Alternatives, each an incremental run of its own in the same run of this script: dbt in the step's
own thread (``TICKETOPS_DBT_WARM_WORKER=false``), Dagster's own SQLite event log storage (a
``dagster.yaml`` without ticketops' event log) and dbt as a subprocess (``TICKETOPS_DBT_IN_PROCESS=false``);
the default is measured three times (days 1, 3 and 5), interleaved with them; the headline is the
median of the three, since a shared machine moves single runs by a quarter.

Exactness: after the incremental run, ``dbt build --full-refresh`` must give the same stg_tickets,
training_set and daily_ticket_volumes (the run fails otherwise).

    .venv/bin/python benchmarks/bench_incremental_cli.py --sizes 100000            # iterate
    .venv/bin/python benchmarks/bench_incremental_cli.py --sizes 1000000 --write    # BENCHMARKS.md

With ``--server-url`` (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``) uses the database
``bench_incr`` there, re-created per size and dropped at the end; the embedded server is stopped at
the end of each size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import bench_ingest_dbt as base  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from ticket_assets.services.postgres import EMBEDDED_DB  # noqa: E402

BENCHMARKS_MD = REPO / "BENCHMARKS.md"
SECTION_NAME = "incremental-cli"
DAGSTER_DBT_TARGETS = REPO / "dbt_project" / "target"
SELECTION = "group:ingest or group:dbt"
DAYS = 90
NOTES: list[str] = []
MATERIALIZE_STEPS = (
    "full_materialize",
    "incr_materialize",
    "incr_materialize_thread",
    "incr_materialize_dagster_event_log",
    "incr_materialize_again",
    "incr_materialize_third",
    "incr_materialize_subprocess",
)
# The default incremental run, measured on days 1, 3 and 5: (ingest, materialize) keys.
DEFAULT_SAMPLES = (
    ("incr_ingest", "incr_materialize"),
    ("incr3_ingest", "incr_materialize_again"),
    ("incr5_ingest", "incr_materialize_third"),
)
# run_measured attributes PostgreSQL backends by database name: a server's bench database, or the
# embedded server's own.
SERVER_DB = "bench_incr"


def ticketops(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("ticketops")), *args]


def cli_env(url: str | None, home: Path) -> dict[str, str]:
    """The CLI's environment: ``url``, or nothing set (the embedded server in the data directory)."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **({"DATABASE_URL": url} if url else {}),
        "TICKETOPS_DATA_DIR": str(home / "data"),
        "DAGSTER_HOME": str(home / "dagster"),
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "COLUMNS": "160",
    }


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def breakdown(home: Path, launched_at: float, exited_at: float) -> dict[str, object]:
    """Split one ``materialize`` into phases from its Dagster event log and dbt's run results."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        run = instance.get_runs(limit=1)[0]
        logs = instance.all_logs(run.run_id)
    events: dict[tuple[str, str | None], float] = {}
    for entry in logs:
        if entry.dagster_event is None:
            continue
        key = (entry.dagster_event.event_type_value, entry.step_key)
        events.setdefault(key, entry.timestamp)
    run_start = events[("PIPELINE_START", None)]
    run_end = events.get(("PIPELINE_SUCCESS", None)) or events[("PIPELINE_FAILURE", None)]
    phases: dict[str, float] = {"process start → run start": run_start - launched_at}
    steps = {key[1] for key in events if key[1]}
    dbt_step = next(step for step in steps if "dbt" in step)
    raw_step = next(step for step in steps if "tickets" in step and step != dbt_step)
    phases["raw_tickets step"] = events[("STEP_SUCCESS", raw_step)] - events[("STEP_START", raw_step)]
    dbt_start, dbt_end = events[("STEP_START", dbt_step)], events[("STEP_SUCCESS", dbt_step)]
    targets = sorted(DAGSTER_DBT_TARGETS.glob(f"*-{run.run_id[:7]}-*"))
    models: dict[str, float] = {}
    tests = 0.0
    if targets:
        results = json.loads((targets[-1] / "run_results.json").read_text())
        first = last = None
        for node in results["results"]:
            timing = [t for t in node["timing"] if t.get("started_at")]
            if timing:
                begin, end = _ts(timing[0]["started_at"]), _ts(timing[-1]["completed_at"])
                first = begin if first is None else min(first, begin)
                last = end if last is None else max(last, end)
            if node["unique_id"].startswith("model."):
                models[node["unique_id"].split(".")[-1]] = node["execution_time"]
            else:
                tests += node["execution_time"]
        if first is not None:
            phases["dbt start + parse (in the dbt step)"] = first - dbt_start
            phases["dbt nodes (models + tests, 2 threads)"] = last - first
            phases["dbt step after the last node"] = dbt_end - last
    else:  # no dbt invocation: the step decided nothing had to run
        phases["dbt step (no dbt invocation)"] = dbt_end - dbt_start
    phases["between steps"] = (run_end - run_start) - (dbt_end - dbt_start) - phases["raw_tickets step"]
    phases["run end → process exit"] = exited_at - run_end
    return {"phases": phases, "models": models, "tests": tests, "dbt_nodes": len(models) + (tests > 0)}


def run_cli(args: list[str], env: dict[str, str], home: Path | None = None) -> base.Measured:
    import time

    launched = time.time()
    measured = base.run_measured(args, env)
    exited = time.time()
    if home is not None:
        measured.output = breakdown(home, launched, exited)
    return measured


def ingest(n: int, seed: int, start: str, days: int) -> list[str]:
    return ticketops(
        "ingest", "synthetic", "--n", str(n), "--seed", str(seed), "--start", start, "--days", str(days)
    )


def dagster_own_event_log(dagster_home: Path) -> None:
    """The local instance as ticketops writes it, but with Dagster's own SQLite event log (a new
    engine and connection per event): the alternative to the pooled one. Its first line is not
    ticketops' own, so the CLI leaves the file as it is."""
    from ticket_assets.services.environment import DAGSTER_YAML

    ours = DAGSTER_YAML.split("# Dagster's SQLite event log")[0]
    (dagster_home / "dagster.yaml").write_text(
        "# Benchmark: Dagster's default event log storage.\n" + ours.split("\n", 1)[1]
    )


def _embedded_url(home: Path) -> str:
    """The embedded server the CLI started in ``home``'s data directory (attached, not restarted)."""
    from ticket_assets.services.postgres import ensure_embedded
    from ticket_assets.settings import Settings

    return ensure_embedded(Settings(_env_file=None, data_dir=home / "data"))


def measure_size(server_url: str | None, n: int) -> dict[str, base.Measured]:
    base.BENCH_DB = SERVER_DB if server_url else EMBEDDED_DB
    url = base.reset_database(server_url) if server_url else None
    increment = max(1, n // 100)
    start = "2025-01-06"
    days = [
        (datetime.fromisoformat(start) + timedelta(days=DAYS + offset)).date().isoformat()
        for offset in range(6)
    ]
    with tempfile.TemporaryDirectory(prefix="bench-incr-") as tmp:
        home = Path(tmp)
        env = cli_env(url, home)
        materialize = ticketops("materialize", "-s", SELECTION)
        try:
            results = {
                "help": run_cli(ticketops("--help"), env),
                "full_ingest": run_cli(ingest(n, 1, start, DAYS), env),
                "full_materialize": run_cli(materialize, env, home),
                # 1 % new tickets arriving the day after the window, as a daily load would.
                "incr_ingest": run_cli(ingest(increment, 2, days[0], 1), env),
                "incr_materialize": run_cli(materialize, env, home),
                # On each next day another 1 %: the alternatives - dbt in the step's own thread (no
                # worker started ahead), Dagster's own event log storage, dbt as a subprocess (last:
                # the parse state a `dbt` process leaves makes the next in-process run parse the
                # project again) - between two more samples of the defaults.
                "incr2_ingest": run_cli(ingest(increment, 3, days[1], 1), env),
            }
            results["incr_materialize_thread"] = run_cli(
                materialize, {**env, "TICKETOPS_DBT_WARM_WORKER": "false"}, home
            )
            results["incr3_ingest"] = run_cli(ingest(increment, 4, days[2], 1), env)
            results["incr_materialize_again"] = run_cli(materialize, env, home)
            results["incr4_ingest"] = run_cli(ingest(increment, 5, days[3], 1), env)
            dagster_own_event_log(home / "dagster")
            results["incr_materialize_dagster_event_log"] = run_cli(materialize, env, home)
            (home / "dagster" / "dagster.yaml").unlink()  # the CLI writes its own again
            results["incr5_ingest"] = run_cli(ingest(increment, 6, days[4], 1), env)
            results["incr_materialize_third"] = run_cli(materialize, env, home)
            results["incr6_ingest"] = run_cli(ingest(increment, 7, days[5], 1), env)
            results["incr_materialize_subprocess"] = run_cli(
                materialize, {**env, "TICKETOPS_DBT_IN_PROCESS": "false"}, home
            )
            db_url = url or _embedded_url(home)
            incremental = base.marts_fingerprint(db_url)
            with tempfile.TemporaryDirectory(prefix="bench-incr-dbt-") as target:
                results["refresh_dbt"] = base.run_dbt(
                    Path(target), base.dbt_environment(db_url), "--full-refresh"
                )
            if base.marts_fingerprint(db_url) != incremental:
                raise AssertionError(f"{n:,} tickets: the incremental run differs from a full refresh")
        finally:
            if url is None:
                subprocess.run(ticketops("down"), env={**os.environ, **env}, capture_output=True, check=False)
    return results


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 10 else f"{seconds:.2f}"


def render(
    sizes: dict[int, dict[str, base.Measured]], command: str, load: str, notes: list[str], server: str
) -> str:
    lines = [
        "## Incremental run as a user runs it (`benchmarks/bench_incremental_cli.py`)",
        "",
        f"Command: `{command}`  ",
        f"Machine: 2 CPU cores, 24 GB RAM, {server}, shared with other workloads "
        f"(1/5/15-minute load average at the end: {load}); CPU seconds = the command's process tree + the "
        "PostgreSQL backends serving it.",
        "",
        'What is timed: `ticketops ingest synthetic --n N` then `ticketops materialize -s "group:ingest or '
        'group:dbt"` as subprocesses (fresh data directory and Dagster home), for the full load, then for 1 % '
        "new tickets the day after (the defaults: a dbt process started and parsed while the run loads runs the "
        "dbt step; the pooled event log), then 1 % more on each of five next days: dbt in the step's own thread, "
        "the defaults again, Dagster's own SQLite event log, the defaults a third time, dbt as a subprocess "
        "(each other one an alternative). After the incremental runs `dbt build --full-refresh` must give "
        "identical stg_tickets, training_set and daily_ticket_volumes (checked; the run fails otherwise).",
        "",
        "| tickets | command | wall s | CPU s (client + db) | peak RSS MB |",
        "|---:|---|---:|---:|---:|",
    ]
    for n, r in sizes.items():
        for step in (
            "help",
            "full_ingest",
            "full_materialize",
            "incr_ingest",
            "incr_materialize",
            "incr2_ingest",
            "incr_materialize_thread",
            "incr3_ingest",
            "incr_materialize_again",
            "incr4_ingest",
            "incr_materialize_dagster_event_log",
            "incr5_ingest",
            "incr_materialize_third",
            "incr6_ingest",
            "incr_materialize_subprocess",
            "refresh_dbt",
        ):
            m = r[step]
            label = {
                "help": "`ticketops --help` (process start + CLI imports)",
                "incr2_ingest": f"incr ingest, the next day (+{max(1, n // 100):,})",
                "incr_materialize_thread": f"incr materialize (+{max(1, n // 100):,}), dbt in the step's own "
                "thread, no dbt process parsing ahead (`TICKETOPS_DBT_WARM_WORKER=false`, the alternative)",
                "incr3_ingest": f"incr ingest, the third day (+{max(1, n // 100):,})",
                "incr_materialize_dagster_event_log": f"incr materialize (+{max(1, n // 100):,}), Dagster's own "
                "SQLite event log (the alternative)",
                "incr4_ingest": f"incr ingest, the fourth day (+{max(1, n // 100):,})",
                "incr5_ingest": f"incr ingest, the fifth day (+{max(1, n // 100):,})",
                "incr6_ingest": f"incr ingest, the sixth day (+{max(1, n // 100):,})",
                "incr_materialize_again": f"incr materialize (+{max(1, n // 100):,}), the default again",
                "incr_materialize_third": f"incr materialize (+{max(1, n // 100):,}), the default a third time",
                "incr_materialize_subprocess": f"incr materialize (+{max(1, n // 100):,}), dbt as a subprocess "
                "(`TICKETOPS_DBT_IN_PROCESS=false`, the alternative)",
                "refresh_dbt": "`dbt build --full-refresh` (the alternative, same data)",
            }.get(
                step,
                step.replace("_", " ") + (f" (+{max(1, n // 100):,})" if step.startswith("incr") else ""),
            )
            lines.append(
                f"| {n:,} | {label} | {_fmt(m.wall)} | {_fmt(m.cpu)} ({_fmt(m.client_cpu)} + {_fmt(m.db_cpu)}) "
                f"| {m.peak_rss_mb:.0f} |"
            )
    lines.append("")
    for n, r in sizes.items():
        full = r["full_ingest"].wall + r["full_materialize"].wall
        full_cpu = r["full_ingest"].cpu + r["full_materialize"].cpu
        # The default incremental run, measured on days 1, 3 and 5: the median of the three.
        walls = [r[i].wall + r[m].wall for i, m in DEFAULT_SAMPLES]
        incr = statistics.median(walls)
        incr_cpu = statistics.median(r[i].cpu + r[m].cpu for i, m in DEFAULT_SAMPLES)
        lines.append(
            f"- **{n:,} tickets**: full run {_fmt(full)} s wall / {_fmt(full_cpu)} s CPU; incremental run (+1 %) "
            f"{_fmt(incr)} s / {_fmt(incr_cpu)} s (median of {', '.join(_fmt(w) for w in walls)} s) = "
            f"**{incr / full:.1%}** of the full run's wall time, {incr_cpu / full_cpu:.1%} of its CPU: "
            f"target ≤ 10 % **{'met' if incr / full <= 0.10 else 'not met'}**."
        )
        default = statistics.median(r[m].wall for _, m in DEFAULT_SAMPLES)
        dbt_start = "dbt start + parse (in the dbt step)"
        for step, what in (
            ("incr_materialize_thread", "dbt process parsing ahead vs dbt in the step's thread"),
            ("incr_materialize_subprocess", "dbt process parsing ahead vs dbt as a subprocess"),
            ("incr_materialize_dagster_event_log", "pooled event log vs Dagster's own"),
        ):
            alternative = r[step].wall
            lines.append(
                f"- {n:,}, {what}, same run: incr materialize {_fmt(default)} (median) vs {_fmt(alternative)} s "
                f"= **{default / alternative:.2f}x**; process start → run start "
                f"{_fmt(r['incr_materialize'].output['phases']['process start → run start'])} vs "
                f"{_fmt(r[step].output['phases']['process start → run start'])} s, {dbt_start} "
                f"{_fmt(r['incr_materialize'].output['phases'].get(dbt_start, 0))} vs "
                f"{_fmt(r[step].output['phases'].get(dbt_start, 0))} s."
            )
        for step in MATERIALIZE_STEPS:
            out = r[step].output
            phases = ", ".join(f"{name} {_fmt(seconds)}" for name, seconds in out["phases"].items())
            models = ", ".join(f"{name} {seconds:.2f}" for name, seconds in out["models"].items())
            lines.append(
                f"- {n:,}, {step.replace('_', ' ')} ({_fmt(r[step].wall)} s), wall s by phase: {phases}. "
                f"dbt execution s: {models or 'none'}; tests {out['tests']:.2f}."
            )
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("show server_version").fetchone()[0].split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--server-url",
        default=None,
        help="a PostgreSQL server to use instead of the embedded one (what nothing set gives)",
    )
    parser.add_argument("--write", action="store_true", help="update this benchmark's BENCHMARKS.md section")
    options = parser.parse_args()
    if not options.server_url:
        # The commands inherit this environment: a DATABASE_URL here would take them off the
        # embedded server this run measures and checks.
        os.environ.pop("DATABASE_URL", None)

    before = {path.name for path in DAGSTER_DBT_TARGETS.glob("*-*-*")}
    sizes: dict[int, dict[str, base.Measured]] = {}
    try:
        for n in options.sizes:
            sizes[n] = measure_size(options.server_url, n)
            print(
                f"{n}: { {k: (round(v.wall, 2), round(v.cpu, 2)) for k, v in sizes[n].items()} }", flush=True
            )
            for step in MATERIALIZE_STEPS:
                print(f"  {step}: {json.dumps(sizes[n][step].output)}", flush=True)
    finally:
        if options.server_url:
            with psycopg.connect(options.server_url, autocommit=True) as conn:
                conn.execute(f"drop database if exists {SERVER_DB} with (force)")
        # dagster-dbt leaves one target directory per dbt invocation; remove the ones this run made.
        for path in DAGSTER_DBT_TARGETS.glob("*-*-*"):
            if path.name not in before and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    command = "python benchmarks/bench_incremental_cli.py " + " ".join(sys.argv[1:])
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    server = (
        f"PostgreSQL {_server_version(options.server_url)} at --server-url"
        if options.server_url
        else "the embedded PostgreSQL 18 (unix socket, its default configuration: autovacuum on)"
    )
    markdown = render(sizes, command.strip(), load, NOTES, server)
    print(markdown)
    if options.write:
        write_section(BENCHMARKS_MD, SECTION_NAME, markdown)


if __name__ == "__main__":
    main()
