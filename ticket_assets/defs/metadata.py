"""Materialisation metadata analysts read in the UI: row counts, schemas, previews, pictures."""

from __future__ import annotations

import base64

import dagster as dg
import psycopg
from psycopg import sql

PREVIEW_CHARS = 80


def table_schema(conn: psycopg.Connection, schema: str, table: str) -> dg.TableSchema:
    rows = conn.execute(
        "select column_name, data_type, is_nullable from information_schema.columns"
        " where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table),
    ).fetchall()
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, data_type, constraints=dg.TableColumnConstraints(nullable=nullable == "YES"))
            for name, data_type, nullable in rows
        ]
    )


def markdown_table(columns: list[str], rows: list[tuple]) -> str:
    def cell(value: object) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"

    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return header + "\n".join("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)


def table_metadata(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    *,
    row_count: int,
    preview_rows: int = 5,
    preview_columns: list[str] | None = None,
) -> dict[str, object]:
    """Row count (the caller counts it, usually with other counts in one pass), column schema and a
    small preview of a Postgres table."""
    ident = sql.Identifier(schema, table)
    table_schema_value = table_schema(conn, schema, table)
    columns = preview_columns or [c.name for c in table_schema_value.columns][:8]
    preview = conn.execute(
        sql.SQL("select {} from {} limit %s").format(sql.SQL(", ").join(map(sql.Identifier, columns)), ident),
        (preview_rows,),
    ).fetchall()
    return {
        "dagster/row_count": dg.MetadataValue.int(int(row_count)),
        "dagster/column_schema": table_schema_value,
        "dagster/relation_identifier": f"{schema}.{table}",
        "preview": dg.MetadataValue.md(markdown_table(columns, preview)),
    }


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """Inline a PNG in markdown metadata so the picture shows in the asset's page."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def counts_markdown(title: str, counts: dict[str, int]) -> dg.MetadataValue:
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return dg.MetadataValue.md(markdown_table([title, "count"], rows))
