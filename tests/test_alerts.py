"""On-call notices: a real webhook receiver on 127.0.0.1, the real ops.alerts table, and champion
moves through the real MLflow registry."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pydantic import SecretStr

from tests.support.api import ApiWorld
from tests.support.webhook import WebhookReceiver
from ticket_assets.alerts import Alert, send_alert


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()


def _rows(url: str, where: str = "true", params: tuple = ()) -> list[dict]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(f"select * from ops.alerts where {where} order by id", params).fetchall()


def test_an_alert_with_a_dedup_key_goes_out_once_with_its_link(
    fresh_db: str, receiver: WebhookReceiver
) -> None:
    alert = Alert(
        "Drift detected", "topic mix shifted", dedup_key="drift-episode-7", url="http://ui/runs/abc"
    )

    assert send_alert(alert, receiver.url, fresh_db) is True
    assert send_alert(alert, receiver.url, fresh_db) is False  # a retried run or a second tick

    [payload] = receiver.payloads
    assert payload["url"] == "http://ui/runs/abc" and "<http://ui/runs/abc|Open>" in payload["text"]
    assert payload["dedup_key"] == "drift-episode-7"
    [row] = _rows(fresh_db)
    assert row["delivered"] and row["url"] == "http://ui/runs/abc" and row["dedup_key"] == "drift-episode-7"

    # Without a key every alert is its own.
    for _ in range(2):
        send_alert(Alert("Run failed", "boom"), receiver.url, fresh_db)
    assert len(receiver.payloads) == 3 and len(_rows(fresh_db)) == 3


def test_a_failing_webhook_is_recorded_undelivered_and_never_raises(fresh_db: str) -> None:
    broken = WebhookReceiver(status=500)
    try:
        assert send_alert(Alert("Gate failed", "worse", dedup_key="gate:1"), broken.url, fresh_db) is False
    finally:
        broken.close()
    assert len(broken.payloads) == 2  # one retry
    [row] = _rows(fresh_db)
    assert row["delivered"] is False and row["title"] == "Gate failed"


def test_promotion_and_rollback_each_notify_on_call_once(world: ApiWorld, receiver: WebhookReceiver) -> None:
    from ticket_assets.ml import registry

    settings = world.settings.model_copy(update={"alert_webhook_url": SecretStr(receiver.url)})
    url = settings.database_url.get_secret_value()
    first, second = world.first_version, world.second_version
    assert registry.get_alias_version(settings.model_name, registry.CHAMPION, settings) == first

    registry.promote(second, "cli:test", "better on the new topic", settings=settings, url=url)
    registry.promote(second, "cli:test", "again", settings=settings, url=url)  # no move, no notice
    assert registry.rollback("cli:test", "complaints", settings=settings, url=url) == first

    assert receiver.texts()[0].count(f"Champion changed: {settings.model_name} v{first} → v{second}") == 1
    assert f"Champion rolled back: {settings.model_name} v{second} → v{first}" in receiver.texts()[1]
    assert "better on the new topic" in receiver.texts()[0] and "complaints" in receiver.texts()[1]
    assert len(receiver.payloads) == 2
    with psycopg.connect(url) as conn:
        moves = conn.execute(
            "select id from ops.model_alias_events where model_name = %s order by id desc limit 2",
            (settings.model_name,),
        ).fetchall()
    keys = [row["dedup_key"] for row in _rows(url, "source = 'registry'")][-2:]
    assert keys == [
        f"alias:{settings.model_name}:{moves[1][0]}",
        f"alias:{settings.model_name}:{moves[0][0]}",
    ]


def _served_and_corrected(url: str, version: str, n: int) -> None:
    """``n`` served predictions of ``version`` that agents corrected (the model said printer)."""
    import uuid

    with psycopg.connect(url) as conn:
        for _ in range(n):
            request_id = uuid.uuid4()
            conn.execute(
                "insert into ops.predictions (request_id, call_request_id, endpoint, text, text_sha256,"
                " text_chars, topic, topic_confidence, probabilities, low_confidence, model_name,"
                " model_version, latency_ms) values (%s, %s, 'triage', 'vpn down', 'x', 8, 'printer', 0.9,"
                " '{}', false, 'ticket-triage-livetest', %s, 5)",
                (request_id, request_id, version),
            )
            conn.execute(
                "insert into ops.feedback (request_id, true_topic) values (%s, 'network')", (request_id,)
            )


def test_live_accuracy_under_its_threshold_notifies_once_with_a_link(
    fresh_db: str, tmp_path, receiver: WebhookReceiver
) -> None:
    """The real dbt mart and the real check: more feedback on the same failing champion stays quiet."""
    import dagster as dg

    from tests.support.ml import ml_settings, trained
    from ticket_assets.ml import registry
    from ticket_assets.runner import materialize

    quiet = ml_settings(tmp_path, fresh_db, "ticket-triage-livetest")
    registered = registry.log_training_run(
        trained().outcome.model,
        metrics={"topic": {"macro_f1": 0.9, "accuracy": 0.9}},
        figures={},
        params={},
        data_version={"training_set_rows": 1},
        settings=quiet,
        db_url=fresh_db,
    )
    registry.promote(registered.version, "test", "first champion", settings=quiet, url=fresh_db)
    settings = quiet.model_copy(
        update={"alert_webhook_url": SecretStr(receiver.url), "public_dagster_url": "http://dagster.example"}
    )
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    check = "marts/live_quality:live_quality_thresholds"
    with dg.instance_for_test() as instance:
        for n in (60, 10):
            _served_and_corrected(fresh_db, registered.version, n)
            outcome = materialize(
                "key:marts/live_quality", instance=instance, run_config=run_config, settings=settings
            )
            assert outcome.success and outcome.checks[check] is False, outcome.checks

    [payload] = [p for p in receiver.payloads if "Live quality" in p["text"]]
    assert f"Live quality below threshold for champion v{registered.version}" in payload["text"]
    assert "live topic accuracy 0.000 < 0.7" in payload["text"] and "on 60 agent labels" in payload["text"]
    assert payload["url"] == "http://dagster.example/assets/marts/live_quality"
    [row] = _rows(fresh_db, "source = 'live_quality'")
    assert row["delivered"] and row["url"] == payload["url"]
