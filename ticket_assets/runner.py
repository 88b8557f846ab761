"""Run the asset graph headless (``ticketops materialize`` / ``ticketops up``) on a persistent instance.

Runs execute in this process (one import, one model load) but are recorded in the Dagster instance
under ``DAGSTER_HOME``, so the UI shows them with their metadata and check results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from ticket_assets.settings import Settings, get_settings


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent Dagster instance under the settings' Dagster home (what the UI shows)."""
    return dg.DagsterInstance.from_config(str(settings.resolved_dagster_home))


@dataclass
class MaterializeOutcome:
    success: bool
    run_id: str
    materialized: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    # Why steps failed: a dg.Failure's description, else the error message.
    errors: list[str] = field(default_factory=list)
    # Metadata of each materialisation by asset key.
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)


def materialize(
    selection: str | None = None,
    *,
    instance: dg.DagsterInstance,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    settings: Settings | None = None,
    partition_key: str | None = None,
    defs: dg.Definitions | None = None,
) -> MaterializeOutcome:
    """Materialise the selected assets (default: the whole graph) with the resources for ``settings``
    (default: the process's settings) and report what happened.

    Partitioned assets (the embedding backfill) run only for a ``partition_key``, and then only
    they: without one they are left out of the selection, so the daily graph stays unpartitioned.
    ``defs``: definitions already built for ``settings`` (a caller running many partitions builds
    them once).
    """
    from ticket_assets.definitions import build_definitions

    defs = defs or build_definitions(settings or get_settings())

    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    selected = dg.AssetSelection.from_string(selection) if selection else dg.AssetSelection.all()
    matched = selected.resolve(graph)
    if not matched:
        raise ValueError(f"selection {selection!r} matches no asset")
    partitioned = {key for key in matched if graph.get(key).partitions_def is not None}
    asset_keys = sorted(partitioned if partition_key is not None else matched - partitioned)
    if not asset_keys:
        if partition_key is not None:
            raise ValueError(f"selection {selection!r} holds no partitioned asset")
        raise ValueError(
            f"selection {selection!r} holds only partitioned assets: give a partition "
            "(`ticketops backfill embeddings`)"
        )
    # The console shows progress (INFO), not every engine event; the UI keeps the full event log.
    run_config = run_config or {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    result = job.execute_in_process(
        instance=instance,
        asset_selection=asset_keys,
        partition_key=partition_key,
        raise_on_error=False,
        run_config=run_config,
        tags=tags or {"ticketops/trigger": "cli"},
    )
    outcome = MaterializeOutcome(success=result.success, run_id=result.run_id)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            key = event.asset_key.to_user_string()
            outcome.materialized.append(key)
            materialization = event.step_materialization_data.materialization
            outcome.metadata[key] = {name: value.value for name, value in materialization.metadata.items()}
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            outcome.failed_steps.append(event.step_key or "?")
            failure = event.step_failure_data
            if failure.user_failure_data is not None and failure.user_failure_data.description:
                outcome.errors.append(failure.user_failure_data.description)
            elif failure.error is not None:
                outcome.errors.append(failure.error.message.strip())
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            outcome.checks[evaluation.asset_check_key.to_user_string()] = evaluation.passed
    return outcome


def move_champion(
    instance: dg.DagsterInstance,
    action: str,
    *,
    version: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> MaterializeOutcome:
    """Promote a version or roll back by materialising ``champion_model`` with that action, so the
    alias moves on Dagster's one promotion path and the asset's metadata names the serving champion."""
    from ticket_assets.defs.keys import CHAMPION_MODEL

    config = {"action": action, "version": version, "reason": reason, "actor": actor}
    run_config = {
        # The caller reports a failure in one line; the run's event log keeps the details.
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        "ops": {CHAMPION_MODEL.to_python_identifier(): {"config": config}},
    }
    return materialize(
        f"key:{CHAMPION_MODEL.to_user_string()}",
        instance=instance,
        run_config=run_config,
        tags={"ticketops/trigger": f"cli {action}"},
    )
