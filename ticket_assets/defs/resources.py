"""Dagster resources, all chosen from the environment in one place (:func:`build_resources`).

Connection strings and keys are resolved at run time from :mod:`ticket_assets.settings` rather
than stored as resource config, because resource config is shown in the Dagster UI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource

from ticket_assets.alerts import Alert, send_alert
from ticket_assets.services import postgres
from ticket_assets.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


class PostgresResource(dg.ConfigurableResource):
    """The platform database (``DATABASE_URL`` or the embedded server)."""

    def url(self) -> str:
        return postgres.database_url(get_settings())

    def connect(self, autocommit: bool = False) -> psycopg.Connection:
        return postgres.connect(self.url(), autocommit=autocommit)

    def dbt_env(self) -> dict[str, str]:
        return postgres.dbt_env(self.url())


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

    def client(self):
        from mlflow import MlflowClient

        self.configure()
        return MlflowClient()

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
    ) -> bool:
        settings = get_settings()
        webhook = settings.alert_webhook_url.get_secret_value() if settings.alert_webhook_url else None
        return send_alert(
            Alert(title=title, body=body, severity=severity, source=source, dedup_key=dedup_key),
            webhook,
            postgres.database_url(settings),
        )


def build_resources() -> dict[str, object]:
    return {
        "postgres": PostgresResource(),
        "platform": PlatformSettingsResource(),
        "alerts": AlertsResource(),
        "mlflow": MlflowResource(),
        # dbt next to this interpreter: works from an unactivated venv and inside the image alike.
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=str(Path(sys.executable).with_name("dbt")),
        ),
    }
