"""The promotion gate's step: judging from what training recorded vs scoring both models again.

A fresh database (on the PostgreSQL of ``DATABASE_URL``, created and dropped here) and data
directory; ``--tickets`` synthetic tickets; the graph up to the champion materialised once (a first
model), then ``ticket_classifier`` + ``champion_model`` again with ``force_train`` so the gate judges
a challenger against a champion. Reported from those runs: the Dagster step times of
``ticket_classifier`` and its ``promotion_gate`` check. Then, in the same process on the same two
versions, alternating ``--repeat`` times: ``pipeline.recorded_gate`` (what the gate step runs) vs
``pipeline.rescored_gate`` (what it ran before: reload the training set and its embeddings, load
and score the challenger, the baseline, load and score the champion), and ``pipeline.score_champion``
(the part that moved into training).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/bench_gate.py [--tickets 1500] [--repeat 5] [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# dagster-dbt runs `dbt` from PATH: this environment's, activated or not.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from benchmarks.report import write_section  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
UPSTREAM = "group:ingest or group:dbt or key:ticket_embeddings or key:kb_chunks"
TRAINING = "key:ticket_classifier or key:champion_model"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def step_seconds(instance, run_id: str) -> dict[str, float]:
    import dagster as dg

    return {
        record.step_key: record.dagster_event.event_specific_data.duration_ms / 1000
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    }


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def run(url: str, data_dir: Path, args: argparse.Namespace) -> dict:
    import dagster as dg
    from pydantic import SecretStr

    from ticket_assets.ml import pipeline, registry
    from ticket_assets.runner import materialize
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.settings import Settings
    from ticket_assets.sources.store import ingest_synthetic

    # The ONNX export of the embedding model is shared with the tests' cache (exporting takes ~1 min).
    cache = Path(os.environ.get("TICKETOPS_MODEL_CACHE_DIR", REPO / ".ticketops" / "model-cache"))
    settings = prepare_environment(
        Settings(
            data_dir=data_dir,
            database_url=SecretStr(url),
            model_cache_dir=cache,
            train_quick=True,
            model_name="bench-gate",
        )
    )
    ingest_synthetic(url, n=args.tickets, seed=5)
    with dg.instance_for_test() as instance:
        log(f"materialising the graph up to a first champion on {args.tickets} tickets")
        for selection in (UPSTREAM, TRAINING):
            outcome = materialize(selection, instance=instance, run_config=QUIET, settings=settings)
            if not outcome.success:
                raise SystemExit(f"{selection} failed: {outcome.failed_steps} {outcome.errors}")
        log("training a challenger against that champion (force_train)")
        forced = {**QUIET, "ops": {"ticket_classifier": {"config": {"force_train": True}}}}
        outcome = materialize(TRAINING, instance=instance, run_config=forced, settings=settings)
        if not outcome.success:
            raise SystemExit(f"forced training failed: {outcome.failed_steps} {outcome.errors}")
        steps = step_seconds(instance, outcome.run_id)
        gate_meta = {}
        for record in instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = record.dagster_event.event_specific_data
            gate_meta = {key: value.value for key, value in evaluation.metadata.items()}

    client = registry.configure_mlflow(settings)
    challenger = registry.version_info(client, settings.model_name, str(gate_meta["challenger_version"]))
    champion = str(gate_meta["champion_version"])
    data = pipeline.load_data(settings, url)
    recorded_s, rescored_s, champion_s = [], [], []
    for i in range(args.repeat):
        log(f"repeat {i + 1}/{args.repeat}")
        recorded_s.append(timed(lambda: pipeline.recorded_gate(challenger, champion, settings)))
        rescored_s.append(timed(lambda: pipeline.rescored_gate(challenger, champion, settings, url)))
        champion_s.append(timed(lambda: pipeline.score_champion(data, champion, settings)))
    recorded = pipeline.recorded_gate(challenger, champion, settings)
    rescored = pipeline.rescored_gate(challenger, champion, settings, url)
    return {
        "steps": steps,
        "evidence": gate_meta.get("evidence"),
        "recorded_s": recorded_s,
        "rescored_s": rescored_s,
        "champion_s": champion_s,
        "same_verdict": recorded is not None and recorded.passed == rescored.passed,
        "holdout": data.test.height,
        "train": data.train.height,
    }


def markdown(result: dict, args: argparse.Namespace, load: tuple[float, float]) -> str:
    steps = result["steps"]
    classifier = steps.get("ticket_classifier")
    gate = next((s for k, s in steps.items() if "promotion_gate" in k), None)
    rec, res, champ = (statistics.median(result[k]) for k in ("recorded_s", "rescored_s", "champion_s"))
    command = (
        "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_gate.py"
    )
    command += f" --tickets {args.tickets} --repeat {args.repeat} --write"
    return "\n".join(
        [
            "## Promotion gate step (`benchmarks/bench_gate.py`)",
            "",
            f"Command: `{command}`. Machine: 2 CPU cores, 24 GiB RAM, shared with other jobs; load average "
            f"{load[0]:.1f} at the start, {load[1]:.1f} at the end. In-process Dagster runs, quick training "
            f"grids; {result['train']} training and {result['holdout']} holdout tickets.",
            "",
            "The gate judges from what training recorded with the challenger's run (its holdout metrics, the "
            "majority baseline, the champion of the time scored on the same holdout); before, it reloaded the "
            "training set and its embeddings and scored both models again, which it still does when the "
            "champion has moved since training.",
            "",
            f"| | seconds (median of {args.repeat}) |",
            "| --- | ---: |",
            f"| gate from the recorded figures (`recorded_gate`, the gate step now) | {rec:.3f} |",
            f"| gate scoring both again (`rescored_gate`, the gate step before) | {res:.3f} |",
            f"| of which moved into training: scoring the champion (`score_champion`) | {champ:.3f} |",
            "",
            f"**Recorded vs re-scored: {res / rec:.0f}x less time in the gate** "
            f"(same verdict: {'yes' if result['same_verdict'] else 'NO'}); the whole run saves "
            f"{res - rec - champ:.2f} s, since scoring the champion ({champ:.2f} s) now runs in training.",
            f"Dagster step times of the forced run: `ticket_classifier` {classifier:.1f} s, "
            f"`promotion_gate` {gate:.2f} s (evidence: {result['evidence']}). With one process per step "
            "(the Kubernetes executor) the old gate also paid for loading the embedding model.",
        ]
    )


def main() -> None:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update the section of BENCHMARKS.md")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL")
    if not server:
        print("error: set DATABASE_URL to a PostgreSQL server this benchmark may create a database on")
        raise SystemExit(2)
    name = f"ticketops_bench_gate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    load_start = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
            result = run(url, Path(tmp), args)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")
    section = markdown(result, args, (load_start, os.getloadavg()[0]))
    print(section)
    if args.write:
        write_section(REPO / "BENCHMARKS.md", "gate", section)


if __name__ == "__main__":
    main()
