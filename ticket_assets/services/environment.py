"""Resolve the services a command or run needs, once per process, without importing Dagster.

Commands that only write to the database (``ticketops ingest``) start in a fraction of a second;
the ones that load the asset graph prepare the dbt manifest too.
"""

from __future__ import annotations

from pydantic import SecretStr

from ticket_assets.services import postgres
from ticket_assets.services.migrations import migrate
from ticket_assets.settings import Settings, use_settings

DAGSTER_YAML = """\
# Written by ticketops: a local instance on SQLite under DAGSTER_HOME.
telemetry:
  enabled: false
concurrency:
  default_op_concurrency_limit: 2
run_queue:
  max_concurrent_runs: 2
  # Two retrainings at once (drift and new labels) would race to move the champion alias.
  tag_concurrency_limits:
    - key: ticketops/job
      value: retrain
      limit: 1
"""


def prepare_environment(
    settings: Settings, *, migrate_schema: bool = True, prepare_dbt: bool = True
) -> Settings:
    """Resolve every service once (database, data directory, Dagster home), migrate the schema
    (unless the caller only checks it, as the API does) and prepare the dbt manifest (for callers
    that load the asset graph). The resolved settings become this process's settings; child processes
    get them through :func:`ticket_assets.settings.child_env`."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = postgres.start_database(settings)
    dagster_home = settings.resolved_dagster_home
    dagster_home.mkdir(parents=True, exist_ok=True)
    dagster_yaml = dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.write_text(DAGSTER_YAML)
    settings = use_settings(
        settings.model_copy(update={"database_url": SecretStr(url), "dagster_home": dagster_home})
    )
    if migrate_schema:
        migrate(url)
    if prepare_dbt:
        # Here, not at module level: dagster-dbt imports dbt, seconds a command like `ingest` never needs.
        from ticket_assets.services.dbt import prepare_manifest

        prepare_manifest()
    return settings
