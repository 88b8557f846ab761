"""Dagster resources, all chosen from the environment in one place (:func:`build_resources`).

Connection strings and keys are resolved at run time from :mod:`ticket_assets.settings` rather
than stored as resource config, because resource config is shown in the Dagster UI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource

from ticket_assets.alerts import Alert, send_alert
from ticket_assets.core.paths import DBT_PROJECT_DIR
from ticket_assets.services import postgres
from ticket_assets.services.dbt import DBT_EXECUTABLE
from ticket_assets.settings import Settings, get_settings, scoped_environment


class PostgresResource(dg.ConfigurableResource):
    """The platform database (``DATABASE_URL`` or the embedded server)."""

    def url(self) -> str:
        return postgres.start_database(get_settings())

    def connect(self, autocommit: bool = False) -> psycopg.Connection:
        return postgres.connect(self.url(), autocommit=autocommit)

    def dbt_env(self) -> dict[str, str]:
        return postgres.dbt_env(self.url())

    def migrate(self) -> None:
        """Upgrade the schema (idempotent; the graph's root asset runs it so runs on a fresh database work)."""
        from ticket_assets.services.migrations import migrate

        migrate(self.url())


class MlflowResource(dg.ConfigurableResource):
    """Tracking, registry and alias operations through a plain ``MlflowClient``.

    Division of labour with dagster-mlflow: its ``end_mlflow_on_run_finished`` hook (attached to the
    training job) calls :meth:`end_run` so a failed step never leaves an MLflow run dangling; everything
    else (registering versions, moving ``challenger``/``champion``) lives here, because dagster-mlflow's
    own resource is the legacy function-style resource.
    """

    def configure(self) -> str:
        from ticket_assets.ml import registry

        registry.configure_mlflow(get_settings())
        return get_settings().resolved_mlflow_uri

    @property
    def model_name(self) -> str:
        return get_settings().model_name

    def alias_version(self, alias: str) -> str | None:
        from ticket_assets.ml import registry

        return registry.get_alias_version(self.model_name, alias, get_settings())

    def client(self):
        from ticket_assets.ml import registry

        return registry.configure_mlflow(get_settings())

    def end_run(self, status: str = "FINISHED") -> None:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)


class PlatformSettingsResource(dg.ConfigurableResource):
    """Gives assets the shared settings object (data directory, thresholds, service URLs)."""

    def get(self) -> Settings:
        return get_settings()


class AlertsResource(dg.ConfigurableResource):
    """Alerts to on-call: Slack-compatible webhook from ``ALERT_WEBHOOK_URL`` plus the log and ``ops.alerts``."""

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
        settings = get_settings()
        webhook = settings.alert_webhook_url.get_secret_value() if settings.alert_webhook_url else None
        return send_alert(
            Alert(title=title, body=body, severity=severity, source=source, dedup_key=dedup_key, url=url),
            webhook,
            postgres.start_database(settings),
        )


class PlatformDbtCliResource(DbtCliResource):
    """dbt invoked with an explicit environment (the profile's connection, build variables).

    dagster-dbt 0.29 builds the dbt process's environment (and renders the profile in-process)
    from ``os.environ`` at the moment ``cli`` is called and has no ``env`` parameter: the given
    variables are laid over the environment for exactly that call, then the previous values return.
    """

    def cli_with_env(self, args: Sequence[str], env: Mapping[str, str], **kwargs):
        with scoped_environment(env):
            return self.cli(args, **kwargs)


def build_resources() -> dict[str, object]:
    return {
        "postgres": PostgresResource(),
        "platform": PlatformSettingsResource(),
        "alerts": AlertsResource(),
        "mlflow": MlflowResource(),
        "dbt": PlatformDbtCliResource(
            project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=DBT_EXECUTABLE
        ),
    }
