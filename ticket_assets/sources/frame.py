"""The frame contract every ticket source produces (``raw.tickets`` minus its bookkeeping columns)."""

from __future__ import annotations

import polars as pl

UTC_DATETIME = pl.Datetime("us", "UTC")

TICKET_SCHEMA: dict[str, pl.DataType] = {
    "ticket_id": pl.String(),
    "source": pl.String(),
    "title": pl.String(),
    "body": pl.String(),
    "topic": pl.String(),
    "urgency": pl.String(),
    "channel": pl.String(),
    "department": pl.String(),
    "requester": pl.String(),
    "language": pl.String(),
    "created_at": UTC_DATETIME,
    "text_hash": pl.String(),
    "extra": pl.String(),  # a JSON object, stored as jsonb
    # Routing targets besides topic and urgency: a JSON object {target name: label}, stored as jsonb.
    "labels": pl.String(),
}
TICKET_COLUMNS: list[str] = list(TICKET_SCHEMA)

REJECTED_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "row_ref": pl.String(),
    "reason": pl.String(),
    "raw_record": pl.String(),
}
REJECTED_COLUMNS: list[str] = list(REJECTED_SCHEMA)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType] = TICKET_SCHEMA) -> pl.DataFrame:
    """Select the contract's columns in order with their types; missing optional columns become null."""
    columns = []
    for name, dtype in schema.items():
        if name in df.columns:
            columns.append(pl.col(name).cast(dtype))
        else:
            columns.append(pl.repeat(None, df.height, dtype=dtype).alias(name))
    return df.select(columns)


def empty_rejected() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECTED_SCHEMA)
