"""Drift episodes on a real Dagster instance: one retraining per episode, and a new champion
(a new reference) ends the episode so a shift after the retrain is acted on."""

from __future__ import annotations

import dagster as dg
import psycopg

from ticket_assets.defs.automation import DRIFT_REPORT


def _report(instance: dg.DagsterInstance, verdict: str, champion: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=DRIFT_REPORT, metadata={"verdict": verdict, "champion_version": champion}
        )
    )


def test_a_new_champion_ends_the_episode_so_a_later_shift_retrains_again(platform_env, pg_url) -> None:
    from ticket_assets.definitions import build_definitions
    from ticket_assets.settings import get_settings

    defs = build_definitions(get_settings())  # this test's database, not the one at first import
    sensor = defs.resolve_sensor_def("drift_retrain_sensor")
    with dg.instance_for_test() as instance:
        cursor = None

        def tick() -> list[dg.RunRequest]:
            nonlocal cursor
            with dg.build_sensor_context(
                instance=instance,
                cursor=cursor,
                definitions=defs,
                resources={"alerts": defs.resources["alerts"]},
            ) as context:  # the alerts resource's database is set up for the tick
                result = sensor.evaluate_tick(context)
            cursor = result.cursor or cursor
            return list(result.run_requests or [])

        _report(instance, "drift", "1")
        first = tick()
        assert len(first) == 1 and first[0].tags["ticketops/drifted_champion"] == "1"
        _report(instance, "drift", "1")
        assert tick() == []  # same episode, same champion
        _report(instance, "insufficient_data", "2")
        assert tick() == []
        # v2 serves (promoted by the retrain) and its first full window drifts: a new episode.
        _report(instance, "drift", "2")
        second = tick()
        assert len(second) == 1 and second[0].run_key != first[0].run_key
        assert second[0].tags["ticketops/drifted_champion"] == "2"
        _report(instance, "drift", "2")
        assert tick() == []
    # On-call heard one drift notice per episode, not one per drifted window.
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("select dedup_key, title from ops.alerts where source = 'drift'").fetchall()
    assert len(rows) == 2, rows
    for key, run in zip(
        sorted(k for k, _ in rows), sorted(r.run_key for r in (*first, *second)), strict=True
    ):
        assert key.startswith(f"{run}:")
    assert {title.split(":")[0] for _, title in rows} == {
        "Drift detected on champion v1",
        "Drift detected on champion v2",
    }
