"""Ingest area: the raw ticket table that everything downstream is built from."""

import dagster as dg
from psycopg.rows import dict_row

from ticket_assets.core.names import SETTLED_LOADS
from ticket_assets.defs.embeddings import progress_logger
from ticket_assets.defs.keys import RAW_TICKETS
from ticket_assets.defs.metadata import counts_markdown, table_metadata
from ticket_assets.defs.resources import PostgresResource

OWNERS = ["team:data-platform"]
# raw/tickets metadata: every load up to this id is in the materialisation (the sensor skips them).
LAST_LOAD_ID = "last_load_id"


class RawTicketsConfig(dg.Config):
    seed_if_empty: bool = True
    synthetic_tickets: int = 3000
    seed: int = 42


@dg.asset(
    key=RAW_TICKETS,
    group_name="ingest",
    kinds={"postgres", "python"},
    owners=OWNERS,
    description=(
        "Raw support tickets in `raw.tickets`, upserted by stable ticket id from every source "
        "(synthetic generator, CSV exports via `ticketops ingest`). Malformed input rows are kept in "
        "`raw.tickets_rejected` with the reason. Materialising seeds synthetic tickets when the table is "
        "empty and publishes the table's state. Every load is logged in `raw.ingest_loads`; the "
        "`raw_ticket_loads` sensor reports the loads no run has covered as materialisations."
    ),
)
def raw_tickets(
    context: dg.AssetExecutionContext, config: RawTicketsConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    url = postgres.url()
    postgres.migrate()
    with postgres.connect() as conn:
        empty = not conn.execute("select exists (select 1 from raw.tickets)").fetchone()[0]
    seeded = 0
    if empty and config.seed_if_empty:
        from ticket_assets.sources.store import ingest_synthetic

        context.log.info(f"raw.tickets is empty: seeding {config.synthetic_tickets} synthetic tickets")
        report = ingest_synthetic(
            url,
            n=config.synthetic_tickets,
            seed=config.seed,
            progress=progress_logger(context, "seeding synthetic tickets"),
        )
        seeded = report.inserted
    return dg.MaterializeResult(metadata=raw_tickets_metadata(postgres, seeded=seeded))


def raw_tickets_metadata(postgres: PostgresResource, seeded: int = 0) -> dict[str, object]:
    with postgres.connect() as conn:
        # One pass for every count, over the (source, topic) index (migration 0012), not the rows.
        counts = conn.execute(
            "select source, count(*), count(*) filter (where topic is not null) from raw.tickets group by 1"
        ).fetchall()
        metadata = table_metadata(
            conn,
            "raw",
            "tickets",
            preview_columns=["ticket_id", "source", "title", "topic", "urgency", "channel", "created_at"],
            row_count=sum(n for _, n, _ in counts),
        )
        rejected = dict(
            conn.execute("select reason, count(*) from raw.tickets_rejected group by 1").fetchall()
        )
        last_load = conn.execute(
            f"select coalesce(max(load_id), 0) from raw.ingest_loads where {SETTLED_LOADS}"
        ).fetchone()[0]
    metadata.update(
        {
            "seeded_tickets": dg.MetadataValue.int(seeded),
            "labelled_tickets": dg.MetadataValue.int(sum(n for _, _, n in counts)),
            "tickets_by_source": counts_markdown("source", {source: n for source, n, _ in counts}),
            "quarantined_rows": dg.MetadataValue.int(int(sum(rejected.values()))),
            "quarantine_reasons": counts_markdown("reason", rejected),
            LAST_LOAD_ID: dg.MetadataValue.int(int(last_load)),
        }
    )
    return metadata


def load_metadata(row: dict) -> dict[str, object]:
    """A logged load as the materialisation metadata the UI shows (the counts, then how it was read)."""
    details = row["details"]
    metadata: dict[str, object] = {
        "load_id": dg.MetadataValue.int(row["load_id"]),
        "source": row["source"],
        "loaded_at": dg.MetadataValue.timestamp(row["loaded_at"]),
        "rows_read": row["rows_read"],
        "inserted": row["inserted"],
        "updated": row["updated"],
        "unchanged": row["unchanged"],
        "quarantined": row["quarantined"],
        LAST_LOAD_ID: dg.MetadataValue.int(row["load_id"]),
    }
    if details.get("quarantine_reasons"):
        metadata["quarantine_reasons"] = counts_markdown("reason", details["quarantine_reasons"])
    for name in ("encoding", "delimiter", "repaired_rows"):
        if name in details:
            metadata[name] = details[name]
    return metadata


@dg.sensor(
    name="raw_ticket_loads",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reports each load logged in raw.ingest_loads (`ticketops ingest` on any machine, any other "
        "writer) as a raw/tickets materialisation, so declarative automation refreshes the marts. "
        "Loads a raw_tickets run already covered are skipped."
    ),
)
def raw_ticket_loads(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    # Cursor: the newest load reported. A raw_tickets run covers every load up to its last_load_id.
    after = int(context.cursor or 0)
    latest = context.instance.get_latest_materialization_event(RAW_TICKETS)
    if latest is not None and latest.asset_materialization is not None:
        covered = latest.asset_materialization.metadata.get(LAST_LOAD_ID)
        after = max(after, int(covered.value) if covered is not None else 0)
    with postgres.connect() as conn:
        if conn.execute("select to_regclass('raw.ingest_loads')").fetchone()[0] is None:
            return dg.SkipReason("raw.ingest_loads does not exist yet (run `ticketops migrate`)")
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                "select load_id, loaded_at, source, rows_read, inserted, updated, unchanged, quarantined,"
                f" details from raw.ingest_loads where load_id > %s and {SETTLED_LOADS}"
                " order by load_id limit 100",
                (after,),
            )
            .fetchall()
        )
    if not rows:
        return dg.SkipReason(f"no load after load {after}")
    events = [
        dg.AssetMaterialization(
            asset_key=RAW_TICKETS,
            description=f"Load {row['load_id']} ({row['source']}), logged in raw.ingest_loads",
            metadata=load_metadata(row),
        )
        for row in rows
    ]
    return dg.SensorResult(asset_events=events, cursor=str(rows[-1]["load_id"]))
