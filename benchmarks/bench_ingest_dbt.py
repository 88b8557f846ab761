"""Ingest + dbt at 10k / 100k / 1M synthetic tickets: full load, then an incremental run with 1 % new tickets.

Questions:
- Does the part of the cost that grows with rows grow linearly (or better)?
- Is an incremental run (1 % new tickets: ingest + ``dbt build``) at most 10 % of the full run?
- How do the obvious alternatives compare, in the same run: row-by-row ``executemany`` upserts
  instead of COPY + one merge, and ``dbt build --full-refresh`` instead of the incremental build?

Every step runs in its own process, as in production (CLI / Dagster run / dbt), and is measured
from outside: wall time and peak RSS of the process tree (sampled every 20 ms with psutil; the
PostgreSQL server's own memory is not included). Fixed costs are measured apart - Python start +
imports, dbt start (an empty ``dbt build``), a Dagster run of a no-op asset - and subtracted to
get the growing part.

    .venv/bin/python benchmarks/bench_ingest_dbt.py                       # 10k, 100k, 1M
    .venv/bin/python benchmarks/bench_ingest_dbt.py --sizes 10000 --write # update BENCHMARKS.md

Uses the database ``ticketops_bench`` on the server given by ``--server-url`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), dropped and re-created for every size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psutil
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
SECTION = "## Ingest + dbt"
BENCH_DB = "ticketops_bench"
FULL_SEED, NEW_SEED = 1, 2
DAYS = 90
NAIVE_MAX_ROWS = 100_000  # row-by-row upserts of 1M rows would take long enough to prove the point anyway

sys.path.insert(0, str(REPO_ROOT))
from benchmarks.report import write_section  # noqa: E402


@dataclass
class Measured:
    wall: float
    peak_rss_mb: float
    client_cpu: float  # user + system seconds of the step's process tree
    db_cpu: float  # user + system seconds of the PostgreSQL backends serving the bench database
    output: dict

    @property
    def cpu(self) -> float:
        return self.client_cpu + self.db_cpu


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _backend_cpu(seen: dict[int, float]) -> None:
    """Record the CPU seconds of every backend of the bench database (keyed by pid: they come and go)."""
    for backend in psutil.process_iter(["name", "cmdline"]):
        try:
            if backend.info["name"] != "postgres" or f" {BENCH_DB} " not in " ".join(
                backend.info["cmdline"] or []
            ):
                continue
            times = backend.cpu_times()
            seen[backend.pid] = max(seen.get(backend.pid, 0.0), times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run a command; measure wall time, peak RSS of its process tree, its CPU and the database's CPU.

    The machine may be shared, so CPU seconds are the steadier figure; wall time includes waiting.
    """
    backends_before: dict[int, float] = {}
    _backend_cpu(backends_before)
    backends: dict[int, float] = {}
    cpu_before = _children_cpu()
    start = time.perf_counter()
    popen = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process = psutil.Process(popen.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, _tree_rss(process))
            except psutil.NoSuchProcess:
                pass
            _backend_cpu(backends)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = popen.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    _backend_cpu(backends)
    client_cpu = _children_cpu() - cpu_before
    # Backends alive before the step (autovacuum, an idle pool) only count what they used during it.
    db_cpu = sum(seconds - backends_before.get(pid, 0.0) for pid, seconds in backends.items())
    if popen.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:4])} failed ({popen.returncode}):\n{stdout[-3000:]!r}\n{stderr[-3000:]!r}"
        )
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    return Measured(
        wall=wall,
        peak_rss_mb=peak / 2**20,
        client_cpu=client_cpu,
        db_cpu=db_cpu,
        output=json.loads(lines[-1]) if lines else {},
    )


# --- the measured steps (each runs in a child process of this script) ------------------------


def _python(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def step_ingest(url: str, n: int, seed: int, start_offset_days: int, days: int) -> None:
    """Generate and upsert synthetic tickets; prints generation and write times as JSON."""
    from ticket_assets.services.postgres import connect
    from ticket_assets.sources.store import upsert_tickets
    from ticket_assets.sources.synthetic import DEFAULT_START, generate_tickets

    started = time.perf_counter()
    frame = generate_tickets(n, seed, start=DEFAULT_START + timedelta(days=start_offset_days), days=days)
    generated = time.perf_counter()
    with connect(url) as conn:
        result = upsert_tickets(conn, frame)
    written = time.perf_counter()
    print(json.dumps({"generate_s": generated - started, "write_s": written - generated, **vars(result)}))


_NAIVE_UPSERT = """
insert into raw.tickets as t (ticket_id, source, title, body, topic, urgency, channel, department, requester,
                              language, created_at, text_hash, extra)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
on conflict (ticket_id) do update set
    source = excluded.source, title = excluded.title, body = excluded.body, topic = excluded.topic,
    urgency = excluded.urgency, channel = excluded.channel, department = excluded.department,
    requester = excluded.requester, language = excluded.language, created_at = excluded.created_at,
    text_hash = excluded.text_hash, extra = excluded.extra, updated_at = now()
where (t.title, t.body, t.topic, t.urgency, t.text_hash) is distinct from
      (excluded.title, excluded.body, excluded.topic, excluded.urgency, excluded.text_hash)
"""


def step_naive_ingest(url: str, n: int, seed: int) -> None:
    """The obvious alternative: one parameterised upsert per row (psycopg executemany, pipelined)."""
    from ticket_assets.services.postgres import connect
    from ticket_assets.sources.synthetic import generate_tickets

    started = time.perf_counter()
    frame = generate_tickets(n, seed)
    generated = time.perf_counter()
    with connect(url) as conn, conn.cursor() as cursor:
        cursor.executemany(_NAIVE_UPSERT, frame.rows())
    written = time.perf_counter()
    print(json.dumps({"generate_s": generated - started, "write_s": written - generated}))


def step_imports() -> None:
    """Python start + the imports an ingest process pays before its first row."""
    import ticket_assets.sources.store  # noqa: F401

    print(json.dumps({}))


def step_dagster_noop() -> None:
    """A Dagster run of an asset that does nothing: the orchestration overhead per run."""
    import dagster as dg

    @dg.asset
    def noop() -> None:
        return None

    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([noop], instance=instance)
    assert result.success
    print(json.dumps({"run_s": time.perf_counter() - started}))


def dbt_command(target: Path, *args: str) -> list[str]:
    return [
        str(Path(sys.executable).with_name("dbt")), "build", "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target), "--log-path", str(target / "logs"),
        "--quiet", *args,
    ]  # fmt: skip


# --- orchestration --------------------------------------------------------------------------


def with_database(url: str, dbname: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{dbname}"))


def reset_database(server_url: str) -> str:
    from ticket_assets.services.migrations import migrate

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {BENCH_DB} with (force)")
        conn.execute(f"create database {BENCH_DB}")
    url = with_database(server_url, BENCH_DB)
    migrate(url)
    return url


def dbt_environment(url: str) -> dict[str, str]:
    from ticket_assets.services.postgres import dbt_env

    return {**dbt_env(url), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}


def measure_fixed(url: str, target: Path) -> dict[str, Measured]:
    env = dbt_environment(url)
    run_measured(dbt_command(target, "--select", "tag:no_such_tag"), env)  # warm-up: full parse once
    return {
        "python_start": run_measured(_python("imports")),
        "dbt_start": run_measured(dbt_command(target, "--select", "tag:no_such_tag"), env),
        "dagster_run": run_measured(_python("dagster-noop")),
    }


def run_dbt(target: Path, env: dict[str, str], *args: str) -> Measured:
    """``dbt build`` measured from outside, plus dbt's own per-model execution times."""
    measured = run_measured(dbt_command(target, *args), env)
    run_results = json.loads((target / "run_results.json").read_text())
    models: dict[str, float] = {"tests": 0.0}
    for node in run_results["results"]:
        if node["unique_id"].startswith("model."):
            models[node["unique_id"].split(".")[-1]] = node["execution_time"]
        else:
            models["tests"] += node["execution_time"]
    measured.output["models"] = models
    return measured


def tests_since_env(url: str) -> dict[str, str]:
    """Limits the expensive data tests to rows staged by this build, as the Dagster dbt asset does:
    the staging watermark before it (an env var: changed ``--vars`` make dbt re-parse everything)."""
    with psycopg.connect(url, autocommit=True) as conn:
        since = conn.execute("select max(updated_at)::text from staging.stg_tickets").fetchone()[0]
    return {"TICKETOPS_DBT_TESTS_SINCE": since or ""}


def marts_fingerprint(url: str) -> tuple[str, str, str]:
    """Content of the incremental marts, to check that incremental builds equal a full refresh."""
    queries = (
        "select count(*) || ':' || md5(string_agg(ticket_id || ':' || is_duplicate || ':' || coalesce(duplicate_of, ''),"
        " ',' order by ticket_id)) from staging.stg_tickets",
        "select count(*) || ':' || md5(string_agg(ticket_id || ':' || split || ':' || text_hash, ',' order by ticket_id))"
        " from marts.training_set",
        "select md5(string_agg(concat_ws(':', day, topic, urgency, channel, n_tickets), ','"
        " order by day, topic, urgency, channel)) from marts.daily_ticket_volumes",
    )
    with psycopg.connect(url, autocommit=True) as conn:
        return tuple(conn.execute(query).fetchone()[0] for query in queries)  # type: ignore[return-value]


def measure_size(server_url: str, n: int, target: Path) -> dict[str, Measured]:
    url = reset_database(server_url)
    env = dbt_environment(url)
    increment = max(1, n // 100)
    results = {
        "full_ingest": run_measured(_python("ingest", url, str(n), str(FULL_SEED), "0", str(DAYS))),
        "full_dbt": run_dbt(target, env),
        # 1 % new tickets arriving the day after the window, as a daily load would.
        "incr_ingest": run_measured(_python("ingest", url, str(increment), str(NEW_SEED), str(DAYS), "1")),
        "incr_dbt": run_dbt(target, {**env, **tests_since_env(url)}),
    }
    incremental_marts = marts_fingerprint(url)
    results |= {
        # Alternatives on the same data: rebuild everything; re-run the whole source unchanged.
        "refresh_dbt": run_dbt(target, env, "--full-refresh"),
        "reingest_unchanged": run_measured(_python("ingest", url, str(n), str(FULL_SEED), "0", str(DAYS))),
    }
    if marts_fingerprint(url) != incremental_marts:
        raise AssertionError(f"{n:,} tickets: the incremental build differs from a full refresh")
    if n <= NAIVE_MAX_ROWS:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("truncate raw.tickets")
        results["naive_ingest"] = run_measured(_python("naive-ingest", url, str(n), str(FULL_SEED)))
    return results


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 10 else f"{seconds:.2f}"


def render(fixed: dict[str, Measured], sizes: dict[int, dict[str, Measured]], command: str, load: str) -> str:
    py, dbt0, dag = fixed["python_start"], fixed["dbt_start"], fixed["dagster_run"]
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: 2 CPU cores, 24 GB RAM, PostgreSQL 15 on 127.0.0.1, Python {platform.python_version()}; "
        f"other workloads shared the cores (load average {load}), so wall times include waiting for a core "
        "and **CPU seconds** (the step's process tree + the PostgreSQL backends serving it) are the steadier "
        "figure.",
        "",
        "What runs: synthetic tickets (`generate_tickets`) upserted by `upsert_tickets` (COPY into a temp "
        "table + one `insert … on conflict … where changed` per 100k rows), then `dbt build` of the whole "
        "`dbt_project` (incremental staging and marts, small tables rebuilt on every run, dbt tests; the "
        "incremental build tests only the rows staged since the previous build via `TICKETOPS_DBT_TESTS_SINCE`, "
        "as the Dagster dbt asset does; per-model times below). After the incremental build a `--full-refresh` "
        "must give the same stg_tickets, training_set and daily_ticket_volumes (checked; the run fails otherwise). "
        "Every step is its own process, as under the CLI or a Dagster run; peak RSS is that process tree's "
        "(the PostgreSQL server's memory is not included).",
        "",
        "Fixed costs per run, independent of rows (wall / CPU): "
        f"Python start + imports {_fmt(py.wall)} s / {_fmt(py.cpu)} s ({py.peak_rss_mb:.0f} MB); "
        f"dbt start (an empty `dbt build`) {_fmt(dbt0.wall)} s / {_fmt(dbt0.cpu)} s ({dbt0.peak_rss_mb:.0f} MB); "
        f"a Dagster run of a no-op asset {_fmt(dag.output['run_s'])} s in-process, {_fmt(dag.wall)} s / "
        f"{_fmt(dag.cpu)} s with process start and `import dagster` ({dag.peak_rss_mb:.0f} MB).",
        "",
        "| tickets | step | wall s | CPU s (client + db) | generate s | write s | growing CPU s | CPU µs/ticket | peak RSS MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, results in sizes.items():
        increment = max(1, n // 100)
        for step, measured in results.items():
            rows = increment if step.startswith("incr") else n
            overhead = dbt0 if step.endswith("dbt") else py
            growing = max(measured.cpu - overhead.cpu, 0.0)
            gen, write = measured.output.get("generate_s"), measured.output.get("write_s")
            label = step.replace("_", " ") + (f" (+{increment:,})" if step.startswith("incr") else "")
            lines.append(
                f"| {n:,} | {label} | {_fmt(measured.wall)} | {_fmt(measured.cpu)} "
                f"({_fmt(measured.client_cpu)} + {_fmt(measured.db_cpu)}) | "
                f"{_fmt(gen) if gen is not None else ''} | {_fmt(write) if write is not None else ''} | "
                f"{_fmt(growing)} | {growing / rows * 1e6:.0f} | {measured.peak_rss_mb:.0f} |"
            )
    lines += ["", *summary(fixed, sizes)]
    return "\n".join(lines) + "\n"


def summary(fixed: dict[str, Measured], sizes: dict[int, dict[str, Measured]]) -> list[str]:
    py, dbt0 = fixed["python_start"], fixed["dbt_start"]
    out = []
    for n, r in sizes.items():
        full_wall = r["full_ingest"].wall + r["full_dbt"].wall
        incr_wall = r["incr_ingest"].wall + r["incr_dbt"].wall
        full_cpu = r["full_ingest"].cpu + r["full_dbt"].cpu
        incr_cpu = r["incr_ingest"].cpu + r["incr_dbt"].cpu
        full_growing = full_cpu - py.cpu - dbt0.cpu
        incr_growing = max(incr_cpu - py.cpu - dbt0.cpu, 0.0)
        line = (
            f"- **{n:,} tickets**: full run (ingest + dbt) {_fmt(full_wall)} s wall / {_fmt(full_cpu)} s CPU; "
            f"incremental run with 1 % new tickets {_fmt(incr_wall)} s / {_fmt(incr_cpu)} s = "
            f"**{incr_wall / full_wall:.0%}** of the full run's wall time, {incr_cpu / full_cpu:.0%} of its CPU, "
            f"{incr_growing / full_growing:.0%} of its growing part. Alternatives: `dbt build --full-refresh` "
            f"{_fmt(r['refresh_dbt'].cpu)} s CPU vs the incremental build's {_fmt(r['incr_dbt'].cpu)} s; "
            f"re-running the whole source unchanged {_fmt(r['reingest_unchanged'].cpu)} s CPU (0 rows written)"
        )
        if "naive_ingest" in r:
            naive, copy = r["naive_ingest"], r["full_ingest"]
            line += (
                f"; row-by-row `executemany` upserts write in {_fmt(naive.output['write_s'])} s vs COPY + merge "
                f"{_fmt(copy.output['write_s'])} s ({naive.output['write_s'] / copy.output['write_s']:.1f}x), "
                f"{_fmt(naive.cpu)} s vs {_fmt(copy.cpu)} s CPU for the whole step"
            )
        out.append(line + ".")
    for n, r in sizes.items():
        cells = []
        for step in ("full_dbt", "incr_dbt", "refresh_dbt"):
            models = r[step].output["models"]
            cells.append(
                f"{step.replace('_', ' ')}: " + ", ".join(f"{name} {t:.2f}" for name, t in models.items())
            )
        out.append(f"- {n:,} tickets, dbt's own execution seconds per model: " + "; ".join(cells) + ".")
    out.append(verdict(fixed, sizes))
    ordered = sorted(sizes)
    if len(ordered) >= 2:
        per_ticket = {
            n: (sizes[n]["full_ingest"].cpu + sizes[n]["full_dbt"].cpu - py.cpu - dbt0.cpu) / n * 1e6
            for n in ordered
        }
        out.append(
            "- Growing part of a full run, CPU per ticket: "
            + ", ".join(f"{per_ticket[n]:.0f} µs at {n:,}" for n in ordered)
            + " (flat or falling = linear or better)."
        )
    return out


def verdict(fixed: dict[str, Measured], sizes: dict[int, dict[str, Measured]]) -> str:
    """The 10 % target at the largest size, and where an incremental run's time goes."""
    n = max(sizes)
    r = sizes[n]
    full = r["full_ingest"].wall + r["full_dbt"].wall
    incremental = r["incr_ingest"].wall + r["incr_dbt"].wall
    share = incremental / full
    heaviest = sorted(r["incr_dbt"].output["models"].items(), key=lambda item: -item[1])[:3]
    return (
        f"- Target at {n:,} tickets, an incremental run ≤ 10 % of a full run: **{'met' if share <= 0.10 else 'not met'}** "
        f"({share:.0%} of the wall time). Ingest alone: {r['incr_ingest'].wall / r['full_ingest'].wall:.0%} "
        f"({_fmt(r['incr_ingest'].wall)} s vs {_fmt(r['full_ingest'].wall)} s). The incremental `dbt build` takes "
        f"{_fmt(r['incr_dbt'].wall)} s of {_fmt(incremental)} s; its largest parts (dbt execution s): "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in heaviest)
        + f"; dbt's fixed start alone is {_fmt(fixed['dbt_start'].wall)} s / {_fmt(fixed['dbt_start'].cpu)} s CPU."
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in {"ingest", "naive-ingest", "imports", "dagster-noop"}:
        step, args = sys.argv[1], sys.argv[2:]
        if step == "ingest":
            step_ingest(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
        elif step == "naive-ingest":
            step_naive_ingest(args[0], int(args[1]), int(args[2]))
        elif step == "imports":
            step_imports()
        else:
            step_dagster_noop()
        return

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--write", action="store_true", help=f"update the '{SECTION}' section of BENCHMARKS.md"
    )
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dbt-") as tmp:
        target = Path(tmp)
        url = reset_database(options.server_url)
        fixed = measure_fixed(url, target)
        print(f"fixed: { {k: (round(v.wall, 2), round(v.cpu, 2)) for k, v in fixed.items()} }", flush=True)
        sizes: dict[int, dict[str, Measured]] = {}
        for n in options.sizes:
            sizes[n] = measure_size(options.server_url, n, target)
            print(
                f"{n}: { {k: (round(v.wall, 2), round(v.cpu, 2)) for k, v in sizes[n].items()} }", flush=True
            )
        with psycopg.connect(options.server_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {BENCH_DB} with (force)")

    command = "python benchmarks/bench_ingest_dbt.py " + " ".join(sys.argv[1:])
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    markdown = render(fixed, sizes, command.strip(), load)
    print(markdown)
    if options.write:
        write_section(BENCHMARKS_MD, "ingest-dbt", markdown)


if __name__ == "__main__":
    main()
