"""The drift story, end to end: train on period A, serve period-B traffic, let the platform notice,
retrain on agents' feedback, gate and promote, and show that the new champion does better on B.

The pieces (traffic, feedback, scoring) are plain functions over an HTTP client so the CLI demo
(real uvicorn + Dagster daemon) and the tests (TestClient + sensors evaluated in-process) share them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from ticket_assets.core.paths import WORKSPACE_YAML
from ticket_assets.services.processes import spawn, stop
from ticket_assets.settings import Settings
from ticket_assets.sources.synthetic import generate_tickets

PERIOD_A_START = date(2025, 1, 1)
PERIOD_A_DAYS = 60
BATCH = 32


class HttpClient(Protocol):
    def post(self, url: str, **kwargs: Any) -> Any: ...
    def get(self, url: str, **kwargs: Any) -> Any: ...


def model_input(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {"title": title, "text": body, "channel": channel}
        for title, body, channel in zip(frame["title"], frame["body"], frame["channel"], strict=True)
    ]


def period_b(n: int, seed: int, scenario: str | None, start: date) -> pl.DataFrame:
    """Traffic of period B: the scenario applies from its first day."""
    return generate_tickets(n, seed, scenario=scenario, start=start, days=14, scenario_start=start)


def send_traffic(client: HttpClient, frame: pl.DataFrame, headers: dict[str, str] | None = None) -> list[str]:
    """Triage every ticket through the API; returns the per-ticket request ids in frame order."""
    tickets = model_input(frame)
    request_ids: list[str] = []
    for offset in range(0, len(tickets), BATCH):
        response = client.post(
            "/v1/triage", json={"tickets": tickets[offset : offset + BATCH]}, headers=headers
        )
        response.raise_for_status()
        request_ids.extend(result["request_id"] for result in response.json()["results"])
    return request_ids


def send_feedback(
    client: HttpClient,
    request_ids: list[str],
    frame: pl.DataFrame,
    share: float,
    known_topics: set[str],
    headers: dict[str, str] | None = None,
) -> int:
    """Agents correct a share of the tickets (spread evenly over the traffic), naming new topics as such."""
    sent = 0
    for index, (request_id, topic, urgency) in enumerate(
        zip(request_ids, frame["topic"], frame["urgency"], strict=True)
    ):
        if int((index + 1) * share) == int(index * share):  # round(share * n) tickets, evenly spaced
            continue
        body = {
            "request_id": request_id,
            "true_topic": topic,
            "true_urgency": urgency,
            "new_topic": topic not in known_topics,
        }
        for attempt in range(20):  # a prediction may still be on its way to the database
            response = client.post("/v1/feedback", json=body, headers=headers)
            if response.status_code != 503:
                break
            time.sleep(0.25 * (attempt + 1))
        response.raise_for_status()
        sent += 1
    return sent


def macro_f1_on(frame: pl.DataFrame, version: str, settings) -> float:
    """Topic macro-F1 of a registered version on labelled tickets (scored in-process)."""
    from sklearn.metrics import f1_score

    from ticket_assets.core.text import model_text
    from ticket_assets.ml.predict import embedder_settings
    from ticket_assets.ml.registry import load_model_version

    model, _ = load_model_version(settings.model_name, version, settings)
    texts = [model_text(t, b) for t, b in zip(frame["title"], frame["body"], strict=True)]
    # The platform's embedder, not whichever the environment would configure.
    with embedder_settings(settings):
        predicted = [p.topic for p in model.predict(texts)]
    return float(f1_score(frame["topic"].to_list(), predicted, average="macro"))


def wait_for(condition: Callable[[], Any], timeout_s: float, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    return None


# --------------------------------------------------------------------------------------------------
# The CLI story: real API server and Dagster daemon


@dataclass
class DemoReport:
    steps: list[tuple[str, str, float]] = field(default_factory=list)  # (title, detail, seconds since start)
    started: float = field(default_factory=time.monotonic)
    echo: Callable[[str], None] = print

    def step(self, title: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self.started
        self.steps.append((title, detail, elapsed))
        self.echo(f"[{elapsed:6.1f}s] {title}" + (f": {detail}" if detail else ""))

    def seconds(self, title: str) -> float | None:
        return next((at for name, _, at in self.steps if name == title), None)


def _daemon_running(instance) -> bool:
    try:
        statuses = instance.get_daemon_statuses()
    except Exception:  # noqa: BLE001 - no heartbeat table yet means no daemon
        return False
    return bool(statuses) and all(status.healthy for status in statuses.values())


# The loop must run quickly enough to watch: a drift report every minute, a quick retraining. The
# story is about drift: the new-labels path (tested on its own) would retrain first.
DEMO_DEFAULTS: dict[str, Any] = {
    "drift_cron": "* * * * *",
    "train_quick": True,
    "model_poll_s": 2.0,
    "retrain_min_labels": 100_000,
}


def demo_settings(settings: Settings) -> Settings:
    """The demo's pace, except where the environment set a value explicitly."""
    update = {name: value for name, value in DEMO_DEFAULTS.items() if name not in settings.model_fields_set}
    return settings.model_copy(update=update)


def _api_up(base_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def run_drift_demo(
    scenario: str = "new_topic_surge",
    traffic: int = 600,
    feedback_share: float = 0.7,
    timeout_s: float = 1200,
    echo: Callable[[str], None] = print,
) -> DemoReport:
    """Run the whole story on the configured (by default embedded) platform; prints each step."""
    import httpx

    from ticket_assets.ml.registry import CHAMPION, configure_mlflow, get_alias_version
    from ticket_assets.runner import dagster_instance, materialize
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.services.postgres import connect, database_url
    from ticket_assets.settings import child_env, get_settings
    from ticket_assets.sources.store import ingest_synthetic

    report = DemoReport(echo=echo)
    settings = prepare_environment(demo_settings(get_settings()))
    url = database_url(settings)
    instance = dagster_instance(settings)
    configure_mlflow(settings)

    champion = get_alias_version(settings.model_name, CHAMPION, settings)
    if champion is None:
        ingest_synthetic(url, n=3000, seed=11, start=PERIOD_A_START, days=PERIOD_A_DAYS)
        report.step(
            "period A", f"3000 synthetic tickets from {PERIOD_A_START}, {PERIOD_A_DAYS} days; materialising"
        )
        outcome = materialize(
            None,
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={"ticketops/trigger": "demo drift"},
        )
        if not outcome.success:
            raise RuntimeError(f"materialisation failed: {outcome.failed_steps}")
        champion = get_alias_version(settings.model_name, CHAMPION, settings)
    report.step("champion before drift", f"v{champion}")

    with connect(url) as conn:
        last_day = conn.execute("select max(coalesce(created_at, ingested_at)) from raw.tickets").fetchone()[
            0
        ]
        known_topics = {row[0] for row in conn.execute("select topic from marts.dim_topics").fetchall()}
    b_start = (last_day or datetime.now(UTC)).date() + timedelta(days=1)
    traffic_frame = period_b(traffic, seed=101, scenario=scenario, start=b_start)
    evaluation_frame = period_b(400, seed=202, scenario=scenario, start=b_start)
    before = macro_f1_on(evaluation_frame, champion, settings)
    report.step(
        "period B", f"scenario {scenario} from {b_start}; champion v{champion} macro-F1 on B: {before:.3f}"
    )

    drift_seen_before = _latest_drift_storage_id(instance)
    story_started = datetime.now(UTC)
    env = child_env(settings)
    processes: list[subprocess.Popen] = []
    base_url = f"http://{settings.api_host}:{settings.api_port}"
    logs = settings.data_dir / "logs"
    try:
        if not _api_up(base_url):
            processes.append(spawn([sys.executable, "-m", "serving"], logs / "demo-api.log", env))
            if not wait_for(lambda: _api_up(base_url), 120, 1.0):
                raise RuntimeError(f"the API did not become ready; see {logs / 'demo-api.log'}")
        keys = settings.api_keys
        headers = {"X-API-Key": keys[0].get_secret_value()} if keys else None
        with httpx.Client(base_url=base_url, timeout=60) as client:
            request_ids = send_traffic(client, traffic_frame, headers)
            report.step(
                "traffic", f"{len(request_ids)} period-B tickets triaged through {base_url}/v1/triage"
            )
            sent = send_feedback(client, request_ids, traffic_frame, feedback_share, known_topics, headers)
            report.step("feedback", f"{sent} agent corrections posted to /v1/feedback")

            if not _daemon_running(instance):
                processes.append(
                    spawn(
                        [
                            str(Path(sys.executable).with_name("dagster-daemon")),
                            "run",
                            "-w",
                            str(WORKSPACE_YAML),
                        ],
                        logs / "demo-daemon.log",
                        env,
                    )
                )
                report.step("dagster daemon", "started: schedules and sensors now run by themselves")

            drift = wait_for(
                lambda: _latest_verdict(instance, "drift", drift_seen_before), timeout_s / 3, 5.0
            )
            if not drift:
                raise RuntimeError("no drift verdict within the time limit")
            report.step("drift detected", drift)
            run = wait_for(lambda: _retrain_run(instance, story_started), timeout_s / 3, 5.0)
            if not run:
                raise RuntimeError("the drift sensor did not request a retraining")
            report.step("retraining requested", f"run {run.run_id[:8]} ({run.tags.get('ticketops/trigger')})")
            finished = wait_for(lambda: _finished(instance, run.run_id), timeout_s, 5.0)
            report.step("retraining finished", str(finished))
            new_champion = get_alias_version(settings.model_name, CHAMPION, settings)
            if new_champion == champion:
                raise RuntimeError("the gate kept the old champion; see the promotion_gate check in the UI")
            report.step("promoted", f"champion v{champion} → v{new_champion} (gate passed)")
            served = wait_for(
                lambda: client.get("/v1/model", headers=headers).json().get("version") == new_champion,
                120,
                2.0,
            )
            report.step(
                "hot reload", f"API serves v{new_champion}" if served else "API did not reload in time"
            )
        after = macro_f1_on(evaluation_frame, new_champion, settings)
        report.step("result", f"macro-F1 on period B: v{champion} {before:.3f} → v{new_champion} {after:.3f}")
    finally:
        stop(processes)
    report.step(
        "done", "open the Dagster UI (`ticketops up --no-materialize`) to see the runs, checks and report"
    )
    return report


def _latest_drift_storage_id(instance) -> int:
    from ticket_assets.defs.keys import DRIFT_REPORT

    records = instance.fetch_materializations(DRIFT_REPORT, limit=1).records
    return records[0].storage_id if records else 0


def _latest_verdict(instance, wanted: str, after_storage_id: int = 0) -> str | None:
    from ticket_assets.defs.keys import DRIFT_REPORT

    records = instance.fetch_materializations(DRIFT_REPORT, limit=1).records
    if not records or records[0].storage_id <= after_storage_id:
        return None
    metadata = records[0].asset_materialization.metadata
    if "verdict" in metadata and metadata["verdict"].value == wanted:
        return f"{metadata['reason'].value} (report: {metadata['report'].value if 'report' in metadata else '-'})"
    return None


def _retrain_run(instance, after: datetime):
    import dagster as dg

    runs = instance.get_runs(
        dg.RunsFilter(job_name="retrain", tags={"ticketops/trigger": "drift"}, created_after=after), limit=1
    )
    return runs[0] if runs else None


def _finished(instance, run_id: str) -> str | None:
    run = instance.get_run_by_id(run_id)
    return run.status.value if run and run.is_finished else None
