"""dbt area: staging and marts built by dbt-postgres; dbt tests surface as asset checks.

The manifest is prepared by dagster-dbt (ticket_assets/services/dbt.py): ahead of time at install,
in CI and in the image build, and again at load under ``dagster dev``/``dg dev``.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    dbt_assets,
)
from psycopg import sql

from ticket_assets.defs.resources import PlatformDbtCliResource, PostgresResource
from ticket_assets.services.dbt import dbt_project

OWNERS = ["team:data-platform"]

dbt_project.prepare_if_dev()
if not dbt_project.manifest_path.exists():
    raise FileNotFoundError(
        f"dbt manifest not found at {dbt_project.manifest_path}: prepare it with `ticketops prepare` or "
        "`dagster-dbt project prepare-and-package --file ticket_assets/services/dbt.py`."
    )


class TicketDbtTranslator(DagsterDbtTranslator):
    """Keys mirror Postgres schemas (``staging/stg_tickets``, ``marts/training_set``) so lineage reads like the database."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        schema = dbt_resource_props.get("config", {}).get("schema") or dbt_resource_props["schema"]
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "dbt"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return OWNERS

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        # dagster-dbt falls back to the model's raw SQL; the schema.yml description is what to read.
        description = (dbt_resource_props.get("description") or "").strip()
        if description:
            return description
        kind = dbt_resource_props["resource_type"]
        return f"dbt {kind} `{dbt_resource_props['name']}` (no description in its schema.yml)"

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        # Marts follow raw tickets as soon as they change; dbt models are cheap and incremental.
        return dg.AutomationCondition.eager()


translator = TicketDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


# No `project=`: dagster-dbt would put the DbtProject object in every spec's metadata, which the UI
# can only show as "[DbtProject] (unserializable)"; the resource knows the project directory.
@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=translator,
    name="ticket_dbt_models",
)
def ticket_dbt_models(
    context: dg.AssetExecutionContext, dbt: PlatformDbtCliResource, postgres: PostgresResource
):
    # dbt reads its connection from TICKETOPS_PG_* (profiles.yml); they are derived here from the
    # one place that knows the database, so dbt and the platform can never point at different ones.
    with postgres.connect(autocommit=True) as conn:
        env = {**postgres.dbt_env(), "TICKETOPS_DBT_TESTS_SINCE": tests_since(conn)}
        for event in dbt.cli_with_env(["build"], env, context=context).stream():
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                documented = context.assets_def.specs_by_key[key].metadata.get("dagster/column_schema")
                event = event.with_metadata(
                    {**event.metadata, **row_count(conn, key), **column_schema(conn, key, documented)}
                )
            yield event


def tests_since(conn) -> str:
    """On incremental builds the large models' data tests check only the rows staged by this build:
    the staging watermark before it (dbt_project/macros/tests_since.sql). Empty on a first build,
    which tests every row. An env var, not --vars: changed vars force dbt to re-parse everything."""
    if conn.execute("select to_regclass('staging.stg_tickets')").fetchone()[0] is None:
        return ""
    return conn.execute("select coalesce(max(updated_at)::text, '') from staging.stg_tickets").fetchone()[0]


def row_count(conn, key: dg.AssetKey) -> dict[str, object]:
    """Row counts by schema and table (keys mirror them). dagster-dbt's own fetch_row_counts uses the
    parse-time relation name, which names the database the manifest was prepared against."""
    schema, table = key.path
    kind = conn.execute(
        "select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = %s",
        (schema, table),
    ).fetchone()
    if kind is None or kind[0] == "v":  # views are not counted: that would run their query
        return {}
    count = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))).fetchone()[
        0
    ]
    return {"dagster/row_count": dg.MetadataValue.int(int(count))}


def column_schema(conn, key: dg.AssetKey, documented: dg.TableSchema | None) -> dict[str, object]:
    """The built relation's columns with the database's types, described from schema.yml. dagster-dbt's
    fetch_column_metadata would ask the parse-time relation (see row_count) and drop the descriptions."""
    schema, table = key.path
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table),
    ).fetchall()
    if not rows:
        return {}
    documented = getattr(documented, "schema", documented)  # the spec may hold the metadata value
    described = {column.name: column.description for column in (documented.columns if documented else [])}
    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name, data_type, description=described.get(name)) for name, data_type in rows
            ]
        )
    }
