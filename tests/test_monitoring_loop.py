"""The closed loop on real parts: API traffic → ops.predictions → drift report (Evidently) → sensor →
retraining → gate → champion → the API hot-reloads. Sensors are evaluated on a real Dagster instance.

The tests share one platform (training it once keeps the module to minutes). The story's phases,
stationary traffic, a drift episode, a deliberately worse retraining, are module fixtures that
depend on each other explicitly, so the tests hold in any order and one at a time.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support.webhook import WebhookReceiver
from ticket_assets.defs.keys import CHAMPION_MODEL, DRIFT_REPORT
from ticket_assets.demo import PERIOD_A_START, macro_f1_on, period_b, send_feedback, send_traffic, wait_for
from ticket_assets.settings import get_settings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
PERIOD_A_DAYS = 60
B_START = PERIOD_A_START + timedelta(days=PERIOD_A_DAYS + 1)


class Loop:
    def __init__(self, instance, url, settings, client, webhook) -> None:
        from ticket_assets.definitions import build_definitions

        self.instance, self.url, self.settings, self.client, self.webhook = (
            instance,
            url,
            settings,
            client,
            webhook,
        )
        self.defs = build_definitions(settings)
        self.sensor_cursor: str | None = None

    def predictions(self) -> int:
        with psycopg.connect(self.url) as conn:
            return conn.execute("select count(*) from ops.predictions").fetchone()[0]

    def serve(self, frame) -> list[str]:
        expected = self.predictions() + frame.height
        ids = send_traffic(self.client, frame)
        assert wait_for(lambda: self.predictions() >= expected, 30, 0.2), "prediction rows were not written"
        return ids

    def drift_report(self) -> dict:
        result = self.defs.resolve_job_def("drift_monitoring").execute_in_process(
            instance=self.instance, run_config=QUIET
        )
        assert result.success
        event = self.instance.get_latest_materialization_event(DRIFT_REPORT)
        return {key: value.value for key, value in event.asset_materialization.metadata.items()}

    def tick_drift_sensor(self) -> list[dg.RunRequest]:
        sensor = self.defs.resolve_sensor_def("drift_retrain_sensor")
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.sensor_cursor,
            definitions=self.defs,
            resources={"alerts": self.defs.resources["alerts"]},
        ) as context:  # the alerts resource's database is set up for the tick
            result = sensor.evaluate_tick(context)
        self.sensor_cursor = result.cursor or self.sensor_cursor
        return list(result.run_requests or [])

    def retrain(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def("retrain").execute_in_process(
            instance=self.instance, tags=request.tags, run_config=QUIET, raise_on_error=False
        )

    def champion(self) -> str | None:
        from ticket_assets.ml.registry import CHAMPION, get_alias_version

        return get_alias_version(self.settings.model_name, CHAMPION, self.settings)


@pytest.fixture(scope="module")
def loop(tmp_path_factory, pg_server_url):
    from tests.conftest import temporary_database
    from tests.support.platform import platform_environment
    from ticket_assets.runner import materialize
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.sources.store import ingest_synthetic

    data_dir = tmp_path_factory.mktemp("loop")
    webhook = WebhookReceiver()
    with (
        temporary_database(pg_server_url, "ticketops_loop") as url,
        platform_environment(data_dir, url, TICKETOPS_MODEL_POLL_S="0.5", ALERT_WEBHOOK_URL=webhook.url),
    ):
        settings = prepare_environment(get_settings())
        ingest_synthetic(url, n=1300, seed=3, start=PERIOD_A_START, days=PERIOD_A_DAYS)
        with dg.instance_for_test() as instance:
            outcome = materialize(None, instance=instance, run_config=QUIET)
            assert outcome.success, outcome.failed_steps
            from serving.app import create_app

            with TestClient(create_app(settings)) as client:
                yield Loop(instance, url, settings, client, webhook)
    webhook.close()


def test_the_materialised_classifier_reports_its_tier_table_and_serves_routing(loop: Loop) -> None:
    """The default graph end to end: synthetic assignment_group -> dbt -> trained, tiered, served."""
    event = loop.instance.get_latest_materialization_event(dg.AssetKey("ticket_classifier"))
    metadata = event.asset_materialization.metadata
    records = [record.data for record in metadata["tiers"].value.records]
    assert {r["target"] for r in records} == {"topic", "urgency", "assignment_group"}
    assert {r["tier"] for r in records} == {"auto", "suggest"}
    assert 0.0 <= metadata["topic_auto_share"].value <= 1.0
    assert "assignment_group_macro_f1" in metadata
    [result] = loop.client.post(
        "/v1/triage", json={"ticket": {"text": "The VPN client rejects my password since this morning"}}
    ).json()["results"]
    assert set(result["routing"]) == {"assignment_group"}
    assert result["routing"]["assignment_group"]["tier"] in {"auto", "suggest", "review"}
    assert result["topic_tier"] in {"auto", "suggest", "review"}
    # Leave the production log as the story's phases expect it (their windows count every row).
    assert wait_for(lambda: _delete_prediction(loop.url, result["request_id"]), 30, 0.2)


def _delete_prediction(url: str, request_id: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("delete from ops.predictions where request_id = %s", (request_id,)).rowcount == 1


# The story's phases are module fixtures, each naming the phase it follows, so any one test (run
# alone or in any order) gets exactly the platform state it asserts on.


@pytest.fixture(scope="module")
def rematerialised(loop: Loop) -> dict:
    """Materialise again with nothing changed: training must be skipped, not a new version."""
    from ticket_assets.ml.registry import list_versions
    from ticket_assets.runner import materialize

    before = [v["version"] for v in list_versions(loop.settings.model_name, loop.settings)]
    champion = loop.champion()
    outcome = materialize(
        "key:ticket_classifier or key:champion_model", instance=loop.instance, run_config=QUIET
    )
    event = loop.instance.get_latest_materialization_event(dg.AssetKey("ticket_classifier"))
    return {
        "success": outcome.success,
        "failed_steps": outcome.failed_steps,
        "versions_before": before,
        "versions_after": [v["version"] for v in list_versions(loop.settings.model_name, loop.settings)],
        "champion_before": champion,
        "champion_after": loop.champion(),
        "note": event.asset_materialization.metadata["training"].value,
    }


def test_materialising_again_without_changes_registers_no_new_version(rematerialised: dict) -> None:
    assert rematerialised["success"], rematerialised["failed_steps"]
    assert rematerialised["versions_after"] == rematerialised["versions_before"]
    assert rematerialised["champion_after"] == rematerialised["champion_before"]
    champion = rematerialised["champion_before"]
    assert rematerialised["note"].startswith(f"skipped: data, code and config equal champion v{champion}")


@pytest.fixture(scope="module")
def stationary(loop: Loop, rematerialised: dict) -> dict:
    loop.serve(period_b(260, seed=41, scenario=None, start=B_START))
    return {"report": loop.drift_report(), "requests": loop.tick_drift_sensor()}


@pytest.fixture(scope="module")
def drift_episode(loop: Loop, stationary: dict) -> dict:
    champion_before = loop.champion()
    drifted = period_b(300, seed=42, scenario="new_topic_surge", start=B_START + timedelta(days=14))
    with psycopg.connect(loop.url) as conn:
        known = {row[0] for row in conn.execute("select topic from marts.dim_topics").fetchall()}
    ids = loop.serve(drifted)
    send_feedback(loop.client, ids, drifted, share=0.8, known_topics=known)
    first, first_requests = loop.drift_report(), loop.tick_drift_sensor()
    # More drifted traffic: the same episode, so no second retraining.
    loop.serve(period_b(220, seed=43, scenario="new_topic_surge", start=B_START + timedelta(days=15)))
    second, second_requests = loop.drift_report(), loop.tick_drift_sensor()
    result = loop.retrain(first_requests[0]) if len(first_requests) == 1 else None
    return {
        "champion_before": champion_before,
        "first": first,
        "first_requests": first_requests,
        "second": second,
        "second_requests": second_requests,
        "retrain_success": result is not None and result.success,
        "retrain_run_id": None if result is None else result.run_id,
        "champion_after": loop.champion(),
    }


@pytest.fixture(scope="module")
def worse_retraining(loop: Loop, drift_episode: dict) -> dict:
    champion = loop.champion()
    # Scramble the training labels (not the holdout's): the next model learns noise.
    with psycopg.connect(loop.url) as conn:
        rows = conn.execute(
            "select t.ticket_id, t.topic from marts.training_set t"
            " where t.split = 'train' and t.ticket_id not like 'feedback:%'"
        ).fetchall()
        shuffled = np.random.default_rng(0).permutation([topic for _, topic in rows])
        with conn.cursor() as cur:
            cur.executemany(
                "update raw.tickets set topic = %s, updated_at = now() where ticket_id = %s",
                [(str(topic), ticket_id) for (ticket_id, _), topic in zip(rows, shuffled, strict=True)],
            )
        conn.commit()
    loop.webhook.payloads.clear()
    result = loop.retrain(dg.RunRequest(run_key="scrambled", tags={"ticketops/trigger": "test"}))
    return {"champion_before": champion, "result": result, "payloads": list(loop.webhook.payloads)}


def test_stationary_traffic_requests_no_retraining(stationary: dict) -> None:
    report = stationary["report"]
    assert report["verdict"] == "no_drift", report["reason"]
    assert report["window_size"] == 260
    assert "Domain classifier ROC AUC" in Path(report["report_path"]).read_text()
    assert stationary["requests"] == []


def test_drift_episode_requests_exactly_one_retraining_that_promotes_a_better_model(
    loop: Loop, drift_episode: dict
) -> None:
    first, requests = drift_episode["first"], drift_episode["first_requests"]
    assert first["verdict"] == "drift", first["reason"]
    assert len(requests) == 1
    assert requests[0].run_key.startswith("drift-episode-")
    assert drift_episode["second"]["verdict"] == "drift"
    assert drift_episode["second_requests"] == []

    assert drift_episode["retrain_success"]
    champion_before, champion_after = drift_episode["champion_before"], drift_episode["champion_after"]
    assert champion_after != champion_before

    served = wait_for(lambda: loop.client.get("/v1/model").json()["version"] == loop.champion(), 30, 0.5)
    assert served, "the API did not hot-reload the new champion"

    fresh_b = period_b(300, seed=44, scenario="new_topic_surge", start=B_START + timedelta(days=16))
    assert macro_f1_on(fresh_b, champion_after, loop.settings) > macro_f1_on(
        fresh_b, champion_before, loop.settings
    )
    with psycopg.connect(loop.url) as conn:
        moves = conn.execute(
            "select to_version, actor from ops.model_alias_events where alias = 'champion' order by id"
        ).fetchall()
    promoted = [actor for version, actor in moves if version == int(champion_after)]
    assert promoted and promoted[-1].startswith("dagster:run:")


def _alerts(loop: Loop, source: str) -> list[dict]:
    with psycopg.connect(loop.url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("select * from ops.alerts where source = %s order by id", (source,)).fetchall()


def _notify_run_status(loop: Loop, sensor_name: str, run_id: str, event_type: dg.DagsterEventType) -> None:
    """Evaluate a run-status sensor as the daemon would, for the run's real status event."""

    run = loop.instance.get_run_by_id(run_id)
    [record] = loop.instance.get_records_for_run(run_id, of_type=event_type).records
    sensor = loop.defs.resolve_sensor_def(sensor_name)
    with dg.build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=loop.instance,
        dagster_run=run,
        resources={"alerts": loop.defs.resources["alerts"]},
    ) as context:
        sensor(context)


def test_on_call_hears_drift_retraining_and_the_champion_change_once_each(
    loop: Loop, drift_episode: dict
) -> None:
    # Two drifted windows, one episode: one drift notice, linking the report the API serves.
    [drift] = _alerts(loop, "drift")
    assert drift["delivered"] and drift["url"].startswith(loop.settings.public_api_url or "http://")
    assert "/reports/" in drift["url"]
    assert loop.client.get(drift["url"].split("/reports/", 1)[1].join(["/reports/", ""])).status_code == 200

    # The promotion the retraining made: one notice naming both versions.
    changes = [a for a in _alerts(loop, "registry") if f"v{drift_episode['champion_after']}" in a["title"]]
    assert len(changes) == 1 and changes[0]["delivered"]
    assert f"v{drift_episode['champion_before']} → v{drift_episode['champion_after']}" in changes[0]["title"]

    # Retraining started / finished, from the run's own status events; a second tick stays quiet.
    run_id = drift_episode["retrain_run_id"]
    for _ in range(2):
        _notify_run_status(loop, "retrain_started_notice", run_id, dg.DagsterEventType.RUN_START)
        _notify_run_status(loop, "retrain_finished_notice", run_id, dg.DagsterEventType.RUN_SUCCESS)
    notices = _alerts(loop, "retrain")
    assert [n["title"] for n in notices] == ["Retraining started", "Retraining finished"]
    assert all(n["delivered"] and n["url"].endswith(f"/runs/{run_id}") for n in notices)
    assert all("drift" in n["body"] for n in notices)
    texts = [payload["text"] for payload in loop.webhook.payloads]
    assert sum("Retraining started" in text for text in texts) == 1
    assert sum("Retraining finished" in text for text in texts) == 1


def test_a_worse_retrained_model_fails_the_gate_keeps_the_champion_and_alerts(
    loop: Loop, worse_retraining: dict
) -> None:
    result = worse_retraining["result"]
    gate = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and e.event_specific_data.check_name == "promotion_gate"
    ]
    assert len(gate) == 1 and not gate[0].passed
    assert loop.champion() == worse_retraining["champion_before"]
    assert not any(
        e.asset_key == CHAMPION_MODEL
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    [failed] = [p for p in worse_retraining["payloads"] if "Promotion gate failed" in p["text"]]
    assert failed["url"] == f"{loop.settings.dagster_url}/runs/{result.run_id}"  # the run that judged
    with psycopg.connect(loop.url) as conn:
        assert (
            conn.execute("select count(*) from ops.alerts where source = 'promotion_gate'").fetchone()[0] >= 1
        )
    # The verdict is the last line of the rejected version's description in the MLflow UI.
    from ticket_assets.ml import registry

    rejected = registry.configure_mlflow(loop.settings).get_model_version(
        loop.settings.model_name, gate[0].metadata["challenger_version"].value
    )
    assert rejected.description.splitlines()[-1].startswith("Gate: failed: ")


def test_the_ui_shows_links_as_urls_and_a_first_drift_report_before_any_traffic(loop: Loop) -> None:
    """Every materialisation of the first full run: serialisable metadata, every link url-typed."""
    graph = loop.defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        event = loop.instance.fetch_materializations(key, limit=1, ascending=True).records
        for name, value in event[0].asset_materialization.metadata.items() if event else []:
            text = str(value.value) if isinstance(value, dg.TextMetadataValue) else ""
            assert "(unserializable)" not in text and not text.startswith("http"), (key, name, text)
    first = loop.instance.fetch_materializations(dg.AssetKey("ticket_classifier"), limit=1, ascending=True)
    metadata = first.records[0].asset_materialization.metadata
    assert isinstance(metadata["mlflow_run"], dg.UrlMetadataValue)
    assert metadata["mlflow_run"].value.endswith(f"/runs/{metadata['mlflow_run_id'].value}")
    # A champion serves before any traffic: the drift report says what its verdict still needs.
    first = loop.instance.fetch_materializations(DRIFT_REPORT, limit=1, ascending=True).records[0]
    report = first.asset_materialization.metadata
    assert report["verdict"].value == "insufficient_data"
    assert report["reason"].value == "0 of 200 predictions needed for a verdict"
    assert isinstance(report["report"], dg.UrlMetadataValue)
    page = loop.client.get("/reports/" + report["report"].value.rsplit("/", 1)[1])
    assert page.status_code == 200 and "0 of 200 predictions needed for a verdict" in page.text


def test_new_labels_sensor_requests_retraining_once_per_batch(loop: Loop, drift_episode: dict) -> None:
    from ticket_assets.definitions import build_definitions

    defs = build_definitions(loop.settings.model_copy(update={"retrain_min_labels": 50}))
    sensor = defs.resolve_sensor_def("new_labels_retrain_sensor")
    resources = {"postgres": defs.resources["postgres"], "platform": defs.resources["platform"]}
    first = sensor.evaluate_tick(
        dg.build_sensor_context(instance=loop.instance, definitions=defs, resources=resources)
    )
    assert len(first.run_requests) == 1  # the feedback of the drift episode is > 50 labels
    again = sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=loop.instance, cursor=first.cursor, definitions=defs, resources=resources
        )
    )
    assert not again.run_requests
    assert date.fromisoformat(first.cursor[:10]) >= date(2020, 1, 1)


def test_holdout_of_an_older_model_is_rebuilt_from_the_version_tags_whatever_the_zone_name() -> None:
    from datetime import datetime

    import polars as pl

    from ticket_assets.monitoring.reference import holdout_from_tags

    days = [datetime(2025, 1, day, tzinfo=UTC) for day in range(1, 11)]
    mart = pl.DataFrame({"event_at": days, "split": ["train"] * 8 + ["test"] * 2}).with_columns(
        pl.col("event_at").dt.convert_time_zone("Etc/UTC")
    )
    # The champion saw tickets up to Jan 7 and held out its latest 2: later rows (feedback) are not its data.
    holdout = holdout_from_tags(
        mart, {"data.max_event_at": "2025-01-07 00:00:00+00:00", "data.test_rows": "2"}
    )
    assert [d.day for d in holdout["event_at"].to_list()] == [6, 7]


def test_drift_reference_is_held_out_rows_in_the_training_label_mix() -> None:
    """Undated imports share one event_at: the reference must still be the rows the champion held
    out (not the last ticket ids), sampled in its training data's label mix."""
    from datetime import datetime

    import polars as pl

    from ticket_assets.ml.splits import stratified_hash_split
    from ticket_assets.monitoring.reference import drift_reference

    ids = [f"ITS-{i:06d}" for i in range(2000)]
    topics = ["hardware" if i < 1000 else "hr_support" if i < 1600 else "access" for i in range(2000)]
    split = stratified_hash_split(ids, topics)
    mart = pl.DataFrame(
        {
            "ticket_id": ids,
            "topic": topics,
            "split": split,
            "event_at": [datetime(2025, 1, 1, tzinfo=UTC)] * 2000,
        }
    )
    held_out = {i for i, s in zip(ids, split, strict=True) if s == "test"}
    train_counts = dict(
        pl.Series([t for t, s in zip(topics, split, strict=True) if s == "train"]).value_counts().iter_rows()
    )
    metadata = {"holdout_ticket_ids": sorted(held_out), "train_topic_counts": train_counts}
    tags = {"data.max_event_at": "2025-01-01 00:00:00+00:00", "data.test_rows": str(len(held_out))}
    reference = drift_reference(mart, metadata, tags, size=200)
    assert set(reference["ticket_id"]) <= held_out
    shares = reference["topic"].value_counts(normalize=True)
    assert dict(shares.iter_rows()) == {"hardware": 0.5, "hr_support": 0.3, "access": 0.2}
