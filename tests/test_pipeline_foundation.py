"""Real Dagster materialisations of ingest → dbt staging → marts on a real PostgreSQL."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

FOUNDATION = "group:ingest or group:dbt"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture()
def instance(platform_env):
    with dg.instance_for_test() as instance:
        yield instance


def run_config(n: int) -> dict:
    return {**QUIET, "ops": {"raw__tickets": {"config": {"synthetic_tickets": n, "seed": 7}}}}


def test_ingest_to_marts_materialises_with_passing_dbt_checks(instance, fresh_db):
    from pydantic import SecretStr

    from ticket_assets.runner import materialize
    from ticket_assets.settings import get_settings
    from ticket_assets.sources.store import ingest_synthetic

    # The run uses the settings it is given, not the environment's database (platform_env's pg_url).
    settings = get_settings().model_copy(update={"database_url": SecretStr(fresh_db)})
    outcome = materialize(FOUNDATION, instance=instance, run_config=run_config(400), settings=settings)
    assert outcome.success, outcome.failed_steps
    assert {
        "raw/tickets",
        "staging/stg_tickets",
        "marts/training_set",
        "marts/daily_ticket_volumes",
        "marts/dim_topics",
    } <= set(outcome.materialized)
    assert outcome.checks, "dbt tests must surface as asset checks"
    assert all(outcome.checks.values()), {k: v for k, v in outcome.checks.items() if not v}

    # Each built model's columns: the database's types, every one described in its schema.yml.
    with psycopg.connect(fresh_db) as conn:
        for key in ("staging/stg_tickets", "marts/training_set", "marts/dim_topics", "marts/live_quality"):
            schema = outcome.metadata[key]["dagster/column_schema"]  # the TableSchema
            built = conn.execute(
                "select column_name, data_type from information_schema.columns"
                " where table_schema || '/' || table_name = %s order by ordinal_position",
                (key,),
            ).fetchall()
            assert [(c.name, c.type) for c in schema.columns] == built, key
            assert all(c.description for c in schema.columns), (key, [c.name for c in schema.columns])
    # The contracts' constraints, as PostgreSQL enforces them, are in the column schema.
    columns = {
        c.name: c.constraints for c in outcome.metadata["marts/training_set"]["dagster/column_schema"].columns
    }
    assert columns["ticket_id"].unique and not columns["ticket_id"].nullable
    assert columns["title"].nullable and not columns["title"].unique
    assert columns["split"].other == ["CHECK ((split = ANY (ARRAY['train'::text, 'test'::text])))"]

    raw_event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "tickets"]))
    assert raw_event.asset_materialization.metadata["dagster/row_count"].value == 400
    with psycopg.connect(fresh_db) as conn:
        n_train, n_test = conn.execute(
            "select count(*) filter (where split = 'train'), count(*) filter (where split = 'test')"
            " from marts.training_set"
        ).fetchone()
        volume_total = conn.execute("select sum(n_tickets) from marts.daily_ticket_volumes").fetchone()[0]
        staged = conn.execute("select count(*) from staging.stg_tickets").fetchone()[0]
    assert n_train > n_test > 0
    assert volume_total == staged == 400

    # New tickets arrive: the incremental models pick them up, the existing ones are untouched.
    ingest_synthetic(fresh_db, n=40, seed=8)
    outcome = materialize("group:dbt", instance=instance, run_config=QUIET, settings=settings)
    assert outcome.success
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("select count(*) from staging.stg_tickets").fetchone()[0] == 440
    # Only the models new tickets reach are rebuilt: the production marts read ops.* (unchanged).
    assert {"staging/stg_tickets", "marts/training_set", "marts/dim_topics"} <= set(outcome.materialized)
    assert not {"marts/daily_predictions", "staging/stg_feedback_labels"} & set(outcome.materialized)
    assert all(outcome.checks.values()), {k: v for k, v in outcome.checks.items() if not v}

    # Nothing new: dbt does not run at all; a table dropped behind the platform's back is rebuilt.
    outcome = materialize("group:dbt", instance=instance, run_config=QUIET, settings=settings)
    assert outcome.success and outcome.materialized == []
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("drop table marts.daily_predictions cascade")
    outcome = materialize("group:dbt", instance=instance, run_config=QUIET, settings=settings)
    assert outcome.success
    assert set(outcome.materialized) == {"marts/daily_predictions"}
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("select to_regclass('marts.daily_predictions')").fetchone()[0] is not None


def test_raw_ticket_change_requests_the_marts(instance):
    """Declarative automation: once the graph exists, a new raw/tickets materialisation makes the
    dbt models downstream of it eager to run (and only those)."""
    from ticket_assets.definitions import build_definitions
    from ticket_assets.settings import get_settings

    defs = build_definitions(get_settings())

    raw = dg.AssetKey(["raw", "tickets"])
    graph = defs.resolve_asset_graph()
    dbt_keys = {key for key in graph.get_all_asset_keys() if graph.get(key).group_name == "dbt"}
    downstream = {dg.AssetKey(["staging", "stg_tickets"]), dg.AssetKey(["marts", "training_set"])}
    unrelated = dg.AssetKey(["marts", "live_quality"])  # built from the API's logs, not from raw tickets
    assert downstream | {unrelated} <= dbt_keys

    # The graph as after a first full materialisation.
    for key in sorted(dbt_keys | {raw}, key=lambda k: k.to_user_string()):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
    selection = dg.AssetSelection.assets(*dbt_keys, raw)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)

    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=raw))
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor
    )
    requested = {key for key in dbt_keys if second.get_num_requested(key) > 0}
    assert downstream <= requested
    assert unrelated not in requested


def test_every_load_is_reported_once_and_runs_cover_the_loads_before_them(instance, fresh_db):
    """`ticketops ingest` needs no Dagster: each committed load is logged in raw.ingest_loads and the
    raw_ticket_loads sensor reports it as a raw/tickets materialisation, once; a raw_tickets run
    covers the loads before it, so they are not reported again."""
    from datetime import date

    from pydantic import SecretStr

    from ticket_assets.defs.ingest import raw_ticket_loads
    from ticket_assets.defs.resources import PostgresResource
    from ticket_assets.runner import materialize
    from ticket_assets.settings import get_settings
    from ticket_assets.sources.store import ingest_synthetic

    resources = {"postgres": PostgresResource(database_url=fresh_db)}

    def tick(cursor=None):
        context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
        return raw_ticket_loads(context), context

    first = ingest_synthetic(fresh_db, n=30, seed=1, start=date(2026, 1, 5), days=3)
    again = ingest_synthetic(fresh_db, n=30, seed=1, start=date(2026, 1, 5), days=3)  # nothing new
    assert (first.inserted, again.inserted, again.unchanged) == (30, 0, 30)
    result, context = tick()
    assert [event.metadata["load_id"].value for event in result.asset_events] == [
        first.load_id,
        again.load_id,
    ]
    assert result.asset_events[0].metadata["inserted"].value == 30
    for event in result.asset_events:  # what the daemon does with a sensor's asset events
        instance.report_runless_asset_event(event)
    assert isinstance(tick(result.cursor)[0], dg.SkipReason)

    # A run of raw_tickets covers every load before it; only a later load is reported.
    covered = ingest_synthetic(fresh_db, n=10, seed=2, start=date(2026, 1, 8), days=1)
    settings = get_settings().model_copy(update={"database_url": SecretStr(fresh_db)})
    outcome = materialize("key:raw/tickets", instance=instance, run_config=QUIET, settings=settings)
    assert outcome.success and outcome.metadata["raw/tickets"]["last_load_id"] == covered.load_id
    assert isinstance(tick(result.cursor)[0], dg.SkipReason)
    later = ingest_synthetic(fresh_db, n=10, seed=3, start=date(2026, 1, 9), days=1)
    (event,) = tick(result.cursor)[0].asset_events
    assert event.metadata["load_id"].value == later.load_id and event.metadata["inserted"].value == 10

    # Loads commit out of id order: one still running holds back those after it, none is skipped.
    from ticket_assets.sources.store import IngestReport, record_load

    cursor = str(later.load_id)
    with psycopg.connect(fresh_db) as slow:
        slow_id = record_load(slow, IngestReport(read=1, inserted=1, updated=0, unchanged=0, quarantined=0,
                                                 source="slow"))  # fmt: skip
        fast = ingest_synthetic(fresh_db, n=5, seed=4, start=date(2026, 1, 10), days=1)
        assert fast.load_id > slow_id
        assert isinstance(tick(cursor)[0], dg.SkipReason)
        slow.commit()
    loads = [event.metadata["load_id"].value for event in tick(cursor)[0].asset_events]
    assert loads == [slow_id, fast.load_id]


@pytest.mark.parametrize("in_process", [True, False], ids=["dbt-in-process", "dbt-subprocess"])
def test_dbt_runs_in_process_as_it_does_as_a_subprocess(instance, fresh_db, in_process):
    """dbt's programmatic runner in the step's process and dagster-dbt's `dbt` subprocess give the
    same run: models materialised with metadata, dbt tests as passing checks, and on a failing
    model the step fails with dbt's own error message."""
    import json
    from pathlib import Path

    from pydantic import SecretStr

    from ticket_assets.core.paths import DBT_PROJECT_DIR
    from ticket_assets.runner import materialize
    from ticket_assets.settings import get_settings

    settings = get_settings().model_copy(
        update={"database_url": SecretStr(fresh_db), "dbt_in_process": in_process}
    )
    outcome = materialize(FOUNDATION, instance=instance, run_config=run_config(120), settings=settings)
    assert outcome.success, outcome.errors
    assert {"staging/stg_tickets", "marts/training_set", "marts/dim_topics"} <= set(outcome.materialized)
    assert outcome.metadata["marts/training_set"]["dagster/row_count"] > 0
    assert outcome.checks and all(outcome.checks.values())
    # Which way dbt ran: its log names the thread that ran the invocation.
    (target,) = (DBT_PROJECT_DIR / "target").glob(f"*-{outcome.run_id[:7]}-*")
    first_event = json.loads(Path(target, "dbt.log").read_text().splitlines()[0])
    assert (first_event["info"]["thread"] == "dbt-in-process") is in_process

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("alter table raw.tickets rename to tickets_elsewhere")
    outcome = materialize("group:dbt", instance=instance, run_config=QUIET, settings=settings)
    assert not outcome.success
    assert any("stg_tickets" in e and "does not exist" in e for e in outcome.errors), outcome.errors
