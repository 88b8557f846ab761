"""Major-incident detection on real data paths: generator background + an outage burst in real
Postgres, real dbt and embeddings, the ``major_incidents`` asset materialised by Dagster, and the
sensor evaluated tick by tick; plus 30 stationary days scanned window by window."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import numpy as np
import psycopg
import pytest

from serving.schemas import model_text
from ticket_assets.memory.incidents import WindowItem, detect_incidents
from ticket_assets.settings import get_settings
from ticket_assets.sources.outage_burst import generate_outage_burst
from ticket_assets.sources.synthetic import generate_tickets

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
BURST_START = datetime(2026, 1, 29, 9, 0, tzinfo=UTC)


@pytest.fixture()
def instance(platform_env):
    with dg.instance_for_test() as instance:
        yield instance


def _log_prediction(conn: psycopg.Connection, text: str, at: datetime) -> str:
    request_id = str(uuid.uuid4())
    conn.execute(
        "insert into ops.predictions (request_id, call_request_id, created_at, endpoint, text, text_sha256,"
        " text_chars, topic, topic_confidence, probabilities, low_confidence, model_name, model_version,"
        " latency_ms) values (%s, %s, %s, 'triage', %s, 'x', %s, 'network', 0.9, '{}', false, 'm', '1', 5)",
        (request_id, str(uuid.uuid4()), at, text, len(text)),
    )
    return request_id


def test_forty_vpn_tickets_in_twenty_minutes_raise_exactly_one_incident_and_one_alert(instance, pg_url):
    from ticket_assets.defs.memory import incident_alert_job, major_incident_sensor
    from ticket_assets.defs.resources import AlertsResource, PostgresResource
    from ticket_assets.runner import materialize
    from ticket_assets.sources.store import ingest_synthetic, upsert_tickets

    ingest_synthetic(pg_url, n=1200, seed=21, start=date(2026, 1, 1), days=30)
    with psycopg.connect(pg_url) as conn:
        upsert_tickets(conn, generate_outage_burst(40, BURST_START, minutes=20, seed=3))
        prediction = _log_prediction(conn, "VPN down. I cannot connect to the VPN at all.", BURST_START)
        conn.commit()

    resources = {"postgres": PostgresResource(database_url=pg_url)}
    context = dg.build_sensor_context(instance=instance, resources=resources)
    assert isinstance(major_incident_sensor(context), dg.SkipReason)  # nothing detected yet

    end = (BURST_START + timedelta(minutes=30)).isoformat()
    config = {**QUIET, "ops": {"major_incidents": {"config": {"window_end": end}}}}
    outcome = materialize(
        "group:dbt or key:ticket_embeddings or key:major_incidents", instance=instance, run_config=config
    )
    assert outcome.success, outcome.failed_steps
    meta = instance.get_latest_materialization_event(
        dg.AssetKey("major_incidents")
    ).asset_materialization.metadata
    assert meta["incidents"].value == 1 and meta["baseline_tickets"].value > 500

    # One sensor tick: exactly one alert run for it; the next tick asks nothing more.
    tick = dg.build_sensor_context(instance=instance, resources=resources)
    requests = major_incident_sensor(tick)
    assert len(requests) == 1 and requests[0].run_key.startswith("incident-inc-20260129-")
    next_tick = dg.build_sensor_context(instance=instance, resources=resources, cursor=tick.cursor)
    assert isinstance(major_incident_sensor(next_tick), dg.SkipReason)

    with psycopg.connect(pg_url) as conn:
        size, terms, summary, first_seen = conn.execute(
            "select size, top_terms, summary, first_seen from ops.incidents"
        ).fetchone()
        tagged = conn.execute(
            "select incident_id from ops.predictions where request_id = %s", (prediction,)
        ).fetchone()[0]
    assert 38 <= size <= 45 and "vpn" in terms
    # The first report may be an earlier VPN ticket of the window that joins the group.
    assert BURST_START - timedelta(minutes=30) <= first_seen <= BURST_START + timedelta(minutes=20)
    assert len(summary["examples"]) == 3 and len(summary["departments"]) >= 3 and summary["channels"]
    assert tagged == requests[0].tags["ticketops/incident_id"]

    # The next window still sees the outage: the same incident is extended, not a second one opened.
    later = (BURST_START + timedelta(minutes=50)).isoformat()
    config = {**QUIET, "ops": {"major_incidents": {"config": {"window_end": later}}}}
    assert materialize("key:major_incidents", instance=instance, run_config=config).success
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select count(*) from ops.incidents").fetchone()[0] == 1

    result = incident_alert_job.execute_in_process(
        run_config=requests[0].run_config,
        instance=instance,
        resources={**resources, "alerts": AlertsResource(postgres=resources["postgres"])},
    )
    assert result.success
    with psycopg.connect(pg_url) as conn:
        title = conn.execute(
            "select title from ops.alerts where dedup_key = %s",
            (f"incident:{requests[0].tags['ticketops/incident_id']}",),
        ).fetchone()[0]
    assert "Major incident" in title


def test_thirty_stationary_days_raise_no_incident_in_any_window():
    from ticket_assets.ml.embed import get_embedder

    tickets = generate_tickets(2000, seed=5, start=date(2026, 2, 1), days=30).sort("created_at")
    texts = [model_text(t, b) for t, b in zip(tickets["title"], tickets["body"], strict=True)]
    vectors = get_embedder(get_settings()).encode(texts)
    created = tickets["created_at"].to_list()
    stamps = np.array([c.timestamp() for c in created])
    items = [WindowItem(i, c, t) for i, c, t in zip(tickets["ticket_id"], created, texts, strict=True)]
    start, hour, span = datetime(2026, 2, 1, tzinfo=UTC).timestamp(), 3600.0, 14 * 86400.0
    busiest, found = 0, []
    for h in range(30 * 24):  # every hourly window of the 30 days (the first days with a short baseline)
        lo = start + h * hour
        inside = np.flatnonzero((stamps >= lo) & (stamps < lo + hour))
        before = np.flatnonzero((stamps >= lo - span) & (stamps < lo))
        busiest = max(busiest, len(inside))
        found += detect_incidents(
            [items[i] for i in inside],
            vectors[inside],
            vectors[before],
            timedelta(days=14),
            timedelta(hours=1),
        )
    assert busiest >= 10, "the scan must include windows busy enough to form a group"
    assert found == []

    # The same scan does find a burst placed into one of those windows (the detector is not inert).
    burst = generate_outage_burst(40, datetime(2026, 2, 20, 10, 0, tzinfo=UTC), minutes=20, seed=4)
    burst_texts = [model_text(t, b) for t, b in zip(burst["title"], burst["body"], strict=True)]
    lo = datetime(2026, 2, 20, 10, 0, tzinfo=UTC).timestamp()
    inside = np.flatnonzero((stamps >= lo) & (stamps < lo + hour))
    before = np.flatnonzero((stamps >= lo - span) & (stamps < lo))
    window = [items[i] for i in inside] + [
        WindowItem(i, c, t)
        for i, c, t in zip(burst["ticket_id"], burst["created_at"], burst_texts, strict=True)
    ]
    incidents = detect_incidents(
        window,
        np.vstack([vectors[inside], get_embedder(get_settings()).encode(burst_texts)]),
        vectors[before],
        timedelta(days=14),
        timedelta(hours=1),
    )
    assert len(incidents) == 1 and sum(m.startswith("outage-") for m in incidents[0].members) >= 38
