"""Resolve the services a command or run needs, once per process, without importing Dagster.

Commands that only write to the database (``ticketops ingest``) start in a fraction of a second;
the ones that load the asset graph prepare the dbt manifest too.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr

from ticket_assets.services import postgres
from ticket_assets.services.migrations import migrate
from ticket_assets.settings import Settings, use_settings

_WRITTEN_BY = "# Written by ticketops: a local instance on SQLite under DAGSTER_HOME."
DAGSTER_YAML = f"""\
{_WRITTEN_BY}
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
# Dagster's SQLite event log with its connections kept open (ticket_assets/services/dagster_storage.py).
event_log_storage:
  module: ticket_assets.services.dagster_storage
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {{event_log_dir}}
"""


def write_dagster_yaml(dagster_home: Path) -> Path:
    """The local instance's ``dagster.yaml``: written when absent, and rewritten when an earlier
    ticketops wrote it (a file someone else wrote is theirs and stays as it is)."""
    path = dagster_home / "dagster.yaml"
    # Where Dagster's default SQLite storage keeps event logs, so the runs recorded before stay.
    wanted = DAGSTER_YAML.format(event_log_dir=json.dumps(str(dagster_home.resolve() / "history" / "runs")))
    current = path.read_text() if path.exists() else None
    if current is None or (current.startswith(_WRITTEN_BY) and current != wanted):
        path.write_text(wanted)
    return path


def prepare_environment(
    settings: Settings, *, migrate_schema: bool = True, prepare_dbt: bool = True, warm_dbt: bool = False
) -> Settings:
    """Resolve every service once (database, data directory, Dagster home), migrate the schema
    (unless the caller only checks it, as the API does) and prepare the dbt manifest (for callers
    that load the asset graph). ``warm_dbt``: start a dbt process that parses while this one loads
    the graph, for the run's dbt step (ticket_assets/services/dbt_worker.py). The resolved settings
    become this process's settings; child processes get them through
    :func:`ticket_assets.settings.child_env`."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = postgres.start_database(settings)
    dagster_home = settings.resolved_dagster_home
    dagster_home.mkdir(parents=True, exist_ok=True)
    write_dagster_yaml(dagster_home)
    settings = use_settings(
        settings.model_copy(update={"database_url": SecretStr(url), "dagster_home": dagster_home})
    )
    if migrate_schema:
        migrate(url)
    if warm_dbt and settings.dbt_in_process and settings.dbt_warm_worker:
        # Started before this process imports dagster-dbt: its imports and parse use the other core.
        from ticket_assets.services import dbt_worker

        dbt_worker.start(postgres.dbt_env(url))
    if prepare_dbt:
        # Here, not at module level: dagster-dbt imports dbt, seconds a command like `ingest` never needs.
        from ticket_assets.services.dbt import prepare_manifest

        prepare_manifest()
    return settings
