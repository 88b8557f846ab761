"""Asset keys referenced across Dagster modules, declared once. Keys mirror Postgres schema.table."""

import dagster as dg

from ticket_assets.core.names import TRAINING_SET_TABLE

RAW_TICKETS = dg.AssetKey(["raw", "tickets"])
TRAINING_SET = dg.AssetKey(TRAINING_SET_TABLE.split("."))
TICKET_EMBEDDINGS = dg.AssetKey("ticket_embeddings")
TICKET_EMBEDDINGS_BACKFILL = dg.AssetKey("ticket_embeddings_backfill")
KB_CHUNKS = dg.AssetKey("kb_chunks")
CHAMPION_MODEL = dg.AssetKey("champion_model")
DRIFT_REPORT = dg.AssetKey("drift_report")
