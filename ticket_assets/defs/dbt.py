"""dbt area: staging and marts built by dbt-postgres; dbt tests surface as asset checks.

The manifest is prepared by dagster-dbt (ticket_assets/services/dbt.py): ahead of time at install,
in CI and in the image build, and again at load under ``dagster dev``/``dg dev``.
"""

import functools
import hashlib
import json
import signal
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
from ticket_assets.services.dbt_parse import keep_partial_parse, partial_parse_file, project_fingerprint

OWNERS = ["team:data-platform"]
# Materialisation metadata: a digest of what a model was built from (code + its sources' state).
INPUTS_DIGEST = "ticketops/inputs_digest"

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
        # dbt reads the previous run's parse state for this connection (each run gets a new target).
        cache = partial_parse_file(env)
        if cache.exists():  # dbt rejects a path that does not exist
            env["DBT_PARTIAL_PARSE_FILE_PATH"] = str(cache)
        digests = inputs_digests(conn, project_fingerprint(env))
        selected = context.selected_asset_keys
        unchanged = [
            unique_id
            for unique_id, digest in digests.items()
            if (key := _keys_by_model()[unique_id]) in selected
            and built_from(context.instance, key) == digest
            and _relation_exists(conn, key)
        ]
        if unchanged and len(unchanged) == len(selected & set(_keys_by_model().values())):
            context.log.info("no new rows reach any selected dbt model: dbt not started")
            return
        if unchanged:
            context.log.info(
                "unchanged since their last build, not rebuilt: "
                + ", ".join(unique_id.split(".")[-1] for unique_id in unchanged)
            )
        # One value for the whole list: dagster-dbt merges it into the run's own selection.
        excluded = " ".join(unique_id.split(".")[-1] for unique_id in unchanged)
        args = ["build", *(["--exclude", excluded] if unchanged else [])]
        invocation = dbt.cli_with_env(args, env, context=context)
        try:
            yield from _with_metadata(context, conn, invocation, digests)
        except BaseException:
            # dagster-dbt forwards an interrupt to dbt only when it lands while dagster-dbt reads
            # dbt's output; one landing here (metadata queries) or in Dagster storing an event
            # (the generator is closed) would leave dbt building. Stop it the same way.
            if invocation.process.poll() is None:
                invocation.process.send_signal(signal.SIGINT)
                invocation.process.wait(timeout=invocation.termination_timeout_seconds)
            raise
        keep_partial_parse(invocation.target_path, cache)


def _with_metadata(context: dg.AssetExecutionContext, conn, invocation, digests: dict[str, str]):
    """dagster-dbt's events, each model's with its row count, column schema and inputs digest."""
    for event in invocation.stream():
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            unique_id = _model_for_key(key)
            extra = {INPUTS_DIGEST: digests[unique_id]} if unique_id in digests else {}
            documented = context.assets_def.specs_by_key[key].metadata.get("dagster/column_schema")
            event = event.with_metadata(
                {
                    **event.metadata,
                    **row_count(conn, key),
                    **column_schema(conn, key, documented),
                    **extra,
                }
            )
        yield event


@functools.cache
def _manifest() -> Mapping[str, Any]:
    return json.loads(dbt_project.manifest_path.read_text())


@functools.cache
def _keys_by_model() -> dict[str, dg.AssetKey]:
    nodes = _manifest()["nodes"]
    return {
        uid: translator.get_asset_key(node) for uid, node in nodes.items() if node["resource_type"] == "model"
    }


def _model_for_key(key: dg.AssetKey) -> str | None:
    return next((uid for uid, model_key in _keys_by_model().items() if model_key == key), None)


def _upstream_sources(unique_id: str) -> set[str]:
    parents = _manifest()["parent_map"].get(unique_id, [])
    found = {parent for parent in parents if parent.startswith("source.")}
    for parent in parents:
        if parent.startswith("model."):
            found |= _upstream_sources(parent)
    return found


def inputs_digests(conn, fingerprint: str) -> dict[str, str]:
    """For every model: a digest of the project's code and, per source it reads (directly or through
    other models), the row count and newest load time. Equal to the digest recorded at the model's
    last materialisation = nothing it is built from changed since, so rebuilding it would give the
    same table. Sources are insert/upsert tables whose load-time column moves on every write
    (sources.yml ``loaded_at_field``); the count also catches deleted rows."""
    states: dict[str, str] = {}
    for unique_id, source in _manifest()["sources"].items():
        ident = sql.Identifier(source["schema"], source["identifier"])
        newest = (
            sql.SQL("max({})::text").format(sql.Identifier(source["loaded_at_field"]))
            if source.get("loaded_at_field")
            else sql.SQL("''")
        )
        if conn.execute("select to_regclass(%s)", (f"{source['schema']}.{source['identifier']}",)).fetchone()[
            0
        ]:
            row = conn.execute(sql.SQL("select count(*), {} from {}").format(newest, ident)).fetchone()
            states[unique_id] = f"{row[0]}:{row[1] or ''}"
        else:
            states[unique_id] = "missing"
    digests = {}
    for unique_id in _keys_by_model():
        parts = [fingerprint, *(f"{s}={states.get(s, '?')}" for s in sorted(_upstream_sources(unique_id)))]
        digests[unique_id] = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    return digests


def built_from(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The inputs digest recorded by the asset's latest materialisation, if any."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(INPUTS_DIGEST)
    return getattr(value, "value", value)


def _relation_exists(conn, key: dg.AssetKey) -> bool:
    return conn.execute("select to_regclass(%s)", (".".join(key.path),)).fetchone()[0] is not None


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
    """The built relation's columns with the database's types and the constraints it enforces (NOT
    NULL, single-column unique indexes, check constraints: the contract's rules the UI shows beside
    the checks), described from schema.yml. dagster-dbt's fetch_column_metadata would ask the
    parse-time relation (see row_count) and drop the descriptions."""
    schema, table = key.path
    rows = conn.execute(
        """
        select c.column_name, c.data_type, c.is_nullable = 'YES',
            exists (
                select 1 from pg_index as i join pg_attribute as a
                    on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
                where i.indrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass
                    and i.indisunique and i.indnatts = 1 and i.indpred is null
                    and a.attname = c.column_name
            ),
            array(
                select pg_get_constraintdef(k.oid) from pg_constraint as k join pg_attribute as a
                    on a.attrelid = k.conrelid and a.attnum = any(k.conkey)
                where k.conrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass
                    and k.contype = 'c' and a.attname = c.column_name
                order by k.conname
            )
        from information_schema.columns as c
        where c.table_schema = %s and c.table_name = %s order by c.ordinal_position
        """,
        (schema, table),
    ).fetchall()
    if not rows:
        return {}
    documented = getattr(documented, "schema", documented)  # the spec may hold the metadata value
    described = {column.name: column.description for column in (documented.columns if documented else [])}
    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name,
                    data_type,
                    description=described.get(name),
                    constraints=dg.TableColumnConstraints(nullable=nullable, unique=unique, other=checks),
                )
                for name, data_type, nullable, unique, checks in rows
            ]
        )
    }
