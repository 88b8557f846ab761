"""Dagster resources with explicit fields, chosen per environment in one place (:func:`resources_for`).

Resource config is shown in the Dagster UI, so secrets are ``dg.EnvVar`` references, never values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path

import dagster as dg
import psycopg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource
from dagster_dbt.compat import DBT_PYTHON_VERSION
from pydantic import PrivateAttr, SecretStr

from ticket_assets.alerts import Alert, send_alert
from ticket_assets.core.paths import DBT_PROJECT_DIR
from ticket_assets.services import postgres
from ticket_assets.services.dbt import DBT_EXECUTABLE
from ticket_assets.settings import Settings, env_source, scoped_environment, secret_fields


class PostgresResource(dg.ConfigurableResource):
    """The platform database: ``database_url`` when set, else the embedded server under ``data_dir``.

    The embedded server is started in :meth:`setup_for_execution` (before any step or sensor uses
    the resource); :meth:`url` only returns the address chosen there.
    """

    database_url: str | None = None
    data_dir: str = ".ticketops"
    _url: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.database_url is None:
            self._url = postgres.start_database(Settings(data_dir=Path(self.data_dir), database_url=None))
        else:
            self._url = self.database_url

    def url(self) -> str:
        url = self._url or self.database_url
        if url is None:
            raise postgres.DatabaseNotConfiguredError(
                "the embedded database is started when the resource is set up"
            )
        return url

    def connect(self, autocommit: bool = False) -> psycopg.Connection:
        return postgres.connect(self.url(), autocommit=autocommit)

    def dbt_env(self) -> dict[str, str]:
        return postgres.dbt_env(self.url())

    def migrate(self) -> None:
        """Upgrade the schema (idempotent; the graph's root asset runs it so runs on a fresh database work)."""
        from ticket_assets.services.migrations import migrate

        migrate(self.url())


class MlflowResource(dg.ConfigurableResource):
    """Tracking, registry and alias operations through a plain ``MlflowClient`` on ``tracking_uri``.

    Division of labour with dagster-mlflow: its ``end_mlflow_on_run_finished`` hook (attached to the
    training job) calls :meth:`end_run` so a failed step never leaves an MLflow run dangling; everything
    else (registering versions, moving ``challenger``/``champion``) lives here, because dagster-mlflow's
    own resource is the legacy function-style resource.
    """

    tracking_uri: str
    model_name: str
    # Artifacts of the default SQLite store live under data_dir/mlflow/artifacts.
    data_dir: str = ".ticketops"

    def _store(self) -> Settings:
        # The registry functions take the settings fields they read; no environment is consulted.
        return Settings.model_construct(
            data_dir=Path(self.data_dir), mlflow_tracking_uri=self.tracking_uri, model_name=self.model_name
        )

    def configure(self) -> str:
        from ticket_assets.ml import registry

        registry.configure_mlflow(self._store())
        return self.tracking_uri

    def alias_version(self, alias: str) -> str | None:
        from ticket_assets.ml import registry

        return registry.get_alias_version(self.model_name, alias, self._store())

    def client(self):
        from ticket_assets.ml import registry

        return registry.configure_mlflow(self._store())

    def end_run(self, status: str = "FINISHED") -> None:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)


class PlatformSettingsResource(dg.ConfigurableResource):
    """Gives assets the shared settings object (data directory, thresholds, service URLs).

    ``values`` holds every non-secret setting as JSON (unset ones as null, which Dagster's map
    config cannot hold); secrets are never resource config (the UI shows it): :meth:`get` builds
    :class:`Settings` from ``values``, which reads the secrets from the environment.
    """

    values: str

    def get(self) -> Settings:
        return Settings(**json.loads(self.values))


class AlertsResource(dg.ConfigurableResource):
    """Alerts to on-call: Slack-compatible webhook from ``ALERT_WEBHOOK_URL`` plus the log and ``ops.alerts``."""

    postgres: PostgresResource
    webhook_url: str | None = None
    dagster_url: str = "http://127.0.0.1:3000"  # the base of run links in notices

    def run_url(self, run_id: str) -> str:
        return f"{self.dagster_url.rstrip('/')}/runs/{run_id}"

    def asset_url(self, key: dg.AssetKey) -> str:
        return f"{self.dagster_url.rstrip('/')}/assets/{'/'.join(key.path)}"

    def send(
        self,
        title: str,
        body: str,
        *,
        severity: str = "warning",
        source: str = "dagster",
        dedup_key: str | None = None,
        url: str | None = None,
    ) -> bool:
        return send_alert(
            Alert(title=title, body=body, severity=severity, source=source, dedup_key=dedup_key, url=url),
            self.webhook_url,
            self.postgres.url(),
        )


class PlatformDbtCliResource(DbtCliResource):
    """dbt invoked with an explicit environment (the profile's connection, build variables).

    dagster-dbt 0.29 builds the dbt process's environment (and renders the profile in-process)
    from ``os.environ`` at the moment ``cli`` is called and has no ``env`` parameter: the given
    variables are laid over the environment for exactly that call, then the previous values return.
    """

    # dbt's programmatic runner in the run's process instead of a `dbt` subprocess (see
    # ticket_assets/services/dbt_runner.py); only for the dbt-core installed here.
    in_process: bool = True

    def cli_with_env(self, args: Sequence[str], env: Mapping[str, str], **kwargs):
        if self.in_process and self.dbt_executable == DBT_EXECUTABLE and DBT_PYTHON_VERSION is not None:
            return self._cli_in_process(args, env, context=kwargs.get("context"))
        with scoped_environment(env):
            return self.cli(args, **kwargs)

    def _cli_in_process(self, args: Sequence[str], env: Mapping[str, str], context=None):
        """What ``cli`` does, with the command run by :class:`InProcessDbt`: dagster-dbt's own
        selection for the context, a fresh target directory, and the variables it gives dbt."""
        from dagster_dbt.asset_utils import (
            DBT_INDIRECT_SELECTION_ENV,
            extract_runtime_selection_from_args,
            get_updated_cli_invocation_params_for_context,
        )
        from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation

        from ticket_assets.services import dbt_worker
        from ticket_assets.services.dbt_runner import InProcessDbt

        cleaned, selects, excludes = extract_runtime_selection_from_args(args)
        params = get_updated_cli_invocation_params_for_context(
            context=context,
            manifest={},
            dagster_dbt_translator=DagsterDbtTranslator(),
            runtime_selects=selects,
            runtime_excludes=excludes,
        )
        project_dir = Path(params.dbt_project.project_dir if params.dbt_project else self.project_dir)
        target_path = self._get_unique_target_path(context=context)
        if not target_path.is_absolute():
            target_path = project_dir / target_path
        dbt_env = {
            **env,
            "DAGSTER_DBT_CLI": "true",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_LOG_FORMAT": "json",
            "DBT_TARGET_PATH": str(target_path),
            "DBT_LOG_PATH": str(target_path),
            "DBT_PROJECT_DIR": str(project_dir),
            **({"DBT_PROFILES_DIR": self.profiles_dir} if self.profiles_dir else {}),
            **({DBT_INDIRECT_SELECTION_ENV: params.indirect_selection} if params.indirect_selection else {}),
        }
        profile = [
            *(["--profile", self.profile] if self.profile else []),
            *(["--target", self.target] if self.target else []),
        ]
        argv = [self.dbt_executable, *self.global_config_flags, *cleaned, *profile, *params.selection_args]
        process = dbt_worker.take(argv, dbt_env)
        if process is not None and context is not None:
            context.log.info(
                f"dbt runs in the process started and parsed ahead of this step (pid {process.pid})"
            )
        return DbtCliInvocation(
            process=process or InProcessDbt(argv, dbt_env),
            manifest=params.manifest,
            dagster_dbt_translator=params.dagster_dbt_translator,
            project_dir=project_dir,
            target_path=target_path,
            raise_on_error=True,
            context=context,
            adapter=None,
            cli_version=self._cli_version,
            project=params.dbt_project,
        )

    @cached_property
    def _cli_version(self):
        # dagster-dbt asks `dbt --version`, a dbt process start (seconds) per run; the dbt of this
        # environment is the installed dbt-core, whose version is known without one.
        if self.dbt_executable == DBT_EXECUTABLE and DBT_PYTHON_VERSION is not None:
            return DBT_PYTHON_VERSION
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args: Sequence[str]):
        # dagster-dbt builds an in-process dbt adapter (profile, project, macros: seconds) for each
        # `cli` call only so that the invocation can fetch_row_counts/fetch_column_metadata; the dbt
        # asset reads those from the database itself (defs/dbt.py: row_count, column_schema). Without
        # an adapter the invocation runs dbt all the same and those two methods add nothing.
        return None


def _secret(settings: Settings, field: str) -> str | dg.EnvVar | None:
    """A secret as resource config: a reference to the environment variable it was read from, so
    the value never appears in the UI; the literal only for settings built in code (tests)."""
    value = getattr(settings, field)
    if value is None:
        return None
    name = env_source(settings, field)
    if name is not None:
        return dg.EnvVar(name)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# Secrets, and the tracking URI (a database URL that may carry a password): Settings reads them.
_NOT_CONFIG = secret_fields() | {"mlflow_tracking_uri"}


def resources_for(settings: Settings) -> dict[str, object]:
    """The resources for one environment, chosen here only.

    - embedded local (no ``DATABASE_URL``): Postgres starts the embedded server at setup, MLflow uses
      the SQLite store under the data directory;
    - servers and Kubernetes: ``DATABASE_URL`` / ``MLFLOW_TRACKING_URI`` from the environment
      (``dg.EnvVar``, resolved at run time in the run or step process);
    - tests: the ``Settings`` object the test built, taken literally.
    """
    data_dir = str(settings.data_dir)
    tracking_uri = (
        _secret(settings, "mlflow_tracking_uri")
        if settings.mlflow_tracking_uri
        else settings.resolved_mlflow_uri
    )
    database = PostgresResource(database_url=_secret(settings, "database_url"), data_dir=data_dir)
    return {
        "postgres": database,
        "platform": PlatformSettingsResource(values=settings.model_dump_json(exclude=_NOT_CONFIG)),
        "alerts": AlertsResource(
            postgres=database,
            webhook_url=_secret(settings, "alert_webhook_url"),
            dagster_url=settings.dagster_url,
        ),
        "mlflow": MlflowResource(
            tracking_uri=tracking_uri, model_name=settings.model_name, data_dir=data_dir
        ),
        "dbt": PlatformDbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=DBT_EXECUTABLE,
            in_process=settings.dbt_in_process,
        ),
    }
