"""Sensors and schedules that close the loop: drift or new labels → retraining; failures → alerts.

Sensors never compute drift: the ``drift_report`` asset does, and the drift sensor only reads its
materialisations. Every request carries a ``run_key`` and every sensor keeps a cursor, so one drift
episode (consecutive drifted windows) or one batch of labels starts exactly one retraining run. An
episode ends with a window that did not drift, or when a new champion serves: its reference is
another model's holdout, so a shift that is still (or newly) there is a new episode for it.
"""

import json

import dagster as dg

from ticket_assets.defs.keys import DRIFT_REPORT
from ticket_assets.defs.resources import AlertsResource, PlatformSettingsResource, PostgresResource
from ticket_assets.defs.training import retrain_job
from ticket_assets.settings import Settings

DRIFT_VERDICT_KEY = "verdict"


def _drift_cursor(raw: str | None) -> dict:
    cursor = json.loads(raw) if raw else {"storage_id": 0, "in_episode": False, "episode": None}
    cursor.setdefault("champion_version", None)
    return cursor


@dg.sensor(
    name="drift_retrain_sensor",
    job=retrain_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests one retraining per drift episode, read from drift_report materialisations.",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource):
    cursor = _drift_cursor(context.cursor)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=DRIFT_REPORT, after_storage_id=cursor["storage_id"]),
        limit=100,
        ascending=True,
    ).records
    requests = []
    for record in records:
        metadata = record.asset_materialization.metadata
        verdict = metadata[DRIFT_VERDICT_KEY].value if DRIFT_VERDICT_KEY in metadata else "insufficient_data"
        champion = metadata["champion_version"].value if "champion_version" in metadata else None
        if cursor["in_episode"] and champion is not None and champion != cursor["champion_version"]:
            # A new champion serves: the episode was about its predecessor's reference.
            cursor.update(in_episode=False, episode=None)
        if verdict == "drift" and not cursor["in_episode"]:
            # The first drifted window opens an episode; the next windows of the same episode ask nothing.
            cursor.update(in_episode=True, episode=record.storage_id, champion_version=champion)
            _drift_notice(metadata, champion, record.storage_id, alerts)
            requests.append(
                dg.RunRequest(
                    run_key=f"drift-episode-{record.storage_id}",
                    tags={
                        "ticketops/trigger": "drift",
                        "ticketops/drift_report_storage_id": str(record.storage_id),
                        "ticketops/drifted_champion": str(champion or ""),
                    },
                )
            )
        elif verdict == "no_drift":
            cursor.update(in_episode=False, episode=None)
        # "insufficient_data" neither opens nor closes an episode.
        cursor["storage_id"] = record.storage_id
    if not records:
        return dg.SkipReason("no new drift report")
    context.update_cursor(json.dumps(cursor))
    return requests or dg.SkipReason(f"{len(records)} new report(s), no new drift episode")


def _drift_notice(metadata, champion: str | None, storage_id: int, alerts: AlertsResource) -> None:
    """Once per episode (the run key's id): the windows after the first are the same problem."""

    def value(key: str) -> str:
        return str(metadata[key].value) if key in metadata else "?"

    alerts.send(
        f"Drift detected on champion v{champion or '?'}: retraining requested",
        f"{value('reason')} (window {value('window_start')} to {value('window_end')}, "
        f"{value('window_size')} predictions; drifted: {value('drifted_signals')}).",
        severity="warning",
        source="drift",
        # The window end keeps keys unique should the Dagster instance (its storage ids) be reset.
        dedup_key=f"drift-episode-{storage_id}:{champion or ''}:{value('window_end')}",
        url=str(metadata["report"].value) if "report" in metadata else None,
    )


@dg.sensor(
    name="new_labels_retrain_sensor",
    job=retrain_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests retraining when enough new agent feedback labels have arrived (TICKETOPS_RETRAIN_MIN_LABELS).",
)
def new_labels_retrain_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource, platform: PlatformSettingsResource
):
    threshold = platform.get().retrain_min_labels
    # Cursor: the newest feedback time already counted (feedback rows are updated in place).
    last_seen = context.cursor or "-infinity"
    with postgres.connect() as conn:
        exists = conn.execute("select to_regclass('ops.feedback')").fetchone()[0]
        if exists is None:
            return dg.SkipReason("ops.feedback does not exist yet")
        count, newest = conn.execute(
            "select count(*), max(updated_at) from ops.feedback"
            " where updated_at > %s::timestamptz and (true_topic is not null or true_urgency is not null"
            " or coalesce(true_labels, '{}'::jsonb) <> '{}'::jsonb)",
            (last_seen,),
        ).fetchone()
    if count < threshold:
        return dg.SkipReason(f"{count} new labels since the last request; waiting for {threshold}")
    newest_iso = newest.isoformat()
    context.update_cursor(newest_iso)
    return dg.RunRequest(
        run_key=f"labels-upto-{newest_iso}",
        tags={"ticketops/trigger": "new_labels", "ticketops/new_labels": str(count)},
    )


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts on-call when any run fails.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertsResource):
    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    alerts.send(
        f"Dagster run failed: {run.job_name}",
        f"Run {run.run_id} ({run.tags.get('ticketops/trigger', 'manual')}) failed: {message[:500]}",
        severity="critical",
        source="run_failure_sensor",
        dedup_key=f"run:{run.run_id}",
        url=alerts.run_url(run.run_id),
    )


def _why(run: dg.DagsterRun) -> str:
    trigger = run.tags.get("ticketops/trigger", "manual")
    detail = run.tags.get("ticketops/drift_episode") or run.tags.get("ticketops/new_labels")
    return f"{trigger} ({detail})" if detail else trigger


@dg.run_status_sensor(
    name="retrain_started_notice",
    run_status=dg.DagsterRunStatus.STARTED,
    monitored_jobs=[retrain_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells on-call a retraining run started, with a link to the run.",
)
def retrain_started_notice(context: dg.RunStatusSensorContext, alerts: AlertsResource):
    run = context.dagster_run
    alerts.send(
        "Retraining started",
        f"Run {run.run_id} retrains the triage model; trigger: {_why(run)}.",
        severity="info",
        source="retrain",
        dedup_key=f"retrain-started:{run.run_id}",
        url=alerts.run_url(run.run_id),
    )


@dg.run_status_sensor(
    name="retrain_finished_notice",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells on-call a retraining run finished (the gate and any champion change alert apart).",
)
def retrain_finished_notice(context: dg.RunStatusSensorContext, alerts: AlertsResource):
    run = context.dagster_run
    alerts.send(
        "Retraining finished",
        f"Run {run.run_id} finished; trigger: {_why(run)}. A champion change or a failed gate is announced "
        "separately.",
        severity="info",
        source="retrain",
        dedup_key=f"retrain-finished:{run.run_id}",
        url=alerts.run_url(run.run_id),
    )


drift_job = dg.define_asset_job(
    "drift_monitoring",
    selection=(
        dg.AssetSelection.assets(DRIFT_REPORT).upstream(depth=1) - dg.AssetSelection.groups("training")
    )
    | dg.AssetSelection.assets(dg.AssetKey(["marts", "live_quality"])),
    description="Refresh the production marts and compute the drift report for the latest window.",
)


def schedules_for(settings: Settings) -> list[dg.ScheduleDefinition]:
    # Schedules are fixed when the definitions are built, so the cron comes from the settings then.
    return [
        dg.ScheduleDefinition(
            name="drift_report_schedule",
            job=drift_job,
            cron_schedule=settings.drift_cron,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Computes the drift report regularly so the loop runs unattended (TICKETOPS_DRIFT_CRON).",
        )
    ]


sensors = [
    drift_retrain_sensor,
    new_labels_retrain_sensor,
    run_failure_alert,
    retrain_started_notice,
    retrain_finished_notice,
]
jobs = [drift_job]
