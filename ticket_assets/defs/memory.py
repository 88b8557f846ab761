"""Ticket memory area: the index of past tickets the API finds similar tickets and duplicates in."""

import dagster as dg

from ticket_assets.defs.resources import PlatformSettingsResource, PostgresResource
from ticket_assets.memory.ticket_index import index_rows, sync_index, vector_fetcher
from ticket_assets.ml.embed import get_embedder

OWNERS = ["team:ml-platform"]
STG_TICKETS = dg.AssetKey(["staging", "stg_tickets"])


@dg.asset(
    key="ticket_index",
    deps=["ticket_embeddings", STG_TICKETS],
    group_name="memory",
    kinds={"qdrant", "python"},
    owners=OWNERS,
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Every embedded ticket with its payload (labels, created, channel, department, status, resolution) in "
        "an in-process Qdrant Edge shard (HNSW). Incremental: only tickets whose text or payload changed are "
        "upserted into a copy of the current version, which an atomic pointer swap then publishes."
    ),
)
def ticket_index(
    context: dg.AssetExecutionContext, postgres: PostgresResource, platform: PlatformSettingsResource
) -> dg.MaterializeResult:
    settings = platform.get()
    model_id = get_embedder(settings).model_id
    with postgres.connect() as conn:
        rows = index_rows(conn, model_id)
        if rows.is_empty():
            raise dg.Failure("no embedded tickets: materialise ticket_embeddings first")
        report = sync_index(
            rows,
            vector_fetcher(conn, model_id),
            settings.ticket_index_dir,
            model_id,
            progress=context.log.info,
        )
    return dg.MaterializeResult(
        metadata={
            "index_version": report.version,
            "published": report.published,
            "full_build": report.full_build,
            "points": report.n_points,
            "upserted": report.upserted,
            "deleted": report.deleted,
            "unchanged": report.unchanged,
            "sync_seconds": dg.MetadataValue.float(round(report.seconds, 2)),
            "embedding_model": model_id,
            "engine": "qdrant-edge (in-process HNSW)",
            "index_path": dg.MetadataValue.path(str(settings.ticket_index_dir)),
        }
    )


memory_assets = [ticket_index]
