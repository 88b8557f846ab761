"""The TicketOps code location: one ``Definitions`` object for the whole lineage.

:func:`build_definitions` makes it for given settings (tests and the CLI pass their own);
``defs`` is the code location's, built from the process's settings when Dagster loads it.
"""

import dagster as dg

from ticket_assets.defs import (
    automation,
    dbt,
    embeddings,
    ingest,
    kb,
    memory,
    monitoring,
    reports,
    serving,
    training,
)
from ticket_assets.defs.k8s import k8s_executor_or_default
from ticket_assets.defs.resources import resources_for
from ticket_assets.settings import Settings, get_settings

automation_sensor = dg.AutomationConditionSensorDefinition(
    "ticketops_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates declarative automation: marts follow raw tickets, derived assets follow marts.",
)


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            ingest.raw_tickets,
            dbt.ticket_dbt_models,
            reports.ticket_profile,
            embeddings.ticket_embeddings,
            embeddings.ticket_embeddings_backfill,
            kb.kb_chunks,
            kb.kb_index,
            *training.training_assets,
            *monitoring.monitoring_assets,
            *memory.memory_assets,
            *serving.serving_assets_for(settings),
        ],
        asset_checks=[*training.training_checks, *monitoring.monitoring_checks],
        jobs=[training.retrain_job, *automation.jobs, *memory.memory_jobs],
        schedules=automation.schedules_for(settings),
        sensors=[automation_sensor, ingest.raw_ticket_loads, *automation.sensors, *memory.memory_sensors],
        resources=resources_for(settings),
        executor=k8s_executor_or_default(settings),
    )


defs = build_definitions(get_settings())
