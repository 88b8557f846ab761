"""One settings object for the CLI, the Dagster code location and the API.

Every value comes from the environment: either ``TICKETOPS_<NAME>`` or, for the
settings that have a conventional name (``DATABASE_URL``, ``QDRANT_URL``,
``MLFLOW_TRACKING_URI``, ``DAGSTER_HOME``, ``LLM_BASE_URL`` ...), that name.
Secrets are ``SecretStr`` so they never end up in logs, reprs or asset metadata.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated


def _env(name: str, *conventional: str) -> AliasChoices:
    return AliasChoices(f"TICKETOPS_{name}", *conventional)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    # Everything embedded (Postgres cluster, MLflow store, KB snapshots, Dagster home) lives here.
    data_dir: Path = Field(default=Path(".ticketops"), validation_alias=_env("DATA_DIR"))

    database_url: SecretStr | None = Field(default=None, validation_alias=_env("DATABASE_URL", "DATABASE_URL"))
    qdrant_url: str | None = Field(default=None, validation_alias=_env("QDRANT_URL", "QDRANT_URL"))
    qdrant_api_key: SecretStr | None = Field(default=None, validation_alias=_env("QDRANT_API_KEY", "QDRANT_API_KEY"))
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=_env("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
    )
    dagster_home: Path | None = Field(default=None, validation_alias=_env("DAGSTER_HOME", "DAGSTER_HOME"))

    # Model registry
    model_name: str = Field(default="ticket-triage", validation_alias=_env("MODEL_NAME"))

    # LLM (any OpenAI-compatible endpoint). Unset base URL -> extractive drafts.
    llm_base_url: str | None = Field(default=None, validation_alias=_env("LLM_BASE_URL", "LLM_BASE_URL"))
    llm_api_key: SecretStr | None = Field(default=None, validation_alias=_env("LLM_API_KEY", "LLM_API_KEY"))
    llm_model: str = Field(default="gpt-4o-mini", validation_alias=_env("LLM_MODEL", "LLM_MODEL"))
    llm_timeout_s: float = Field(default=20.0, validation_alias=_env("LLM_TIMEOUT_S"))

    # Embedding runtime: threads are explicit because oversubscribing 2 cores collapses latency.
    embed_threads: int = Field(default=2, ge=1, validation_alias=_env("EMBED_THREADS"))
    embed_batch_size: int = Field(default=64, ge=1, validation_alias=_env("EMBED_BATCH_SIZE"))

    # API
    api_host: str = Field(default="127.0.0.1", validation_alias=_env("API_HOST"))
    api_port: int = Field(default=8000, validation_alias=_env("API_PORT"))
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, validation_alias=_env("API_KEYS"))
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias=_env("CORS_ORIGINS"))
    low_confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0, validation_alias=_env("LOW_CONFIDENCE_THRESHOLD"))
    redact_text: bool = Field(default=False, validation_alias=_env("REDACT_TEXT"))

    # Dagster UI
    dagster_port: int = Field(default=3000, validation_alias=_env("DAGSTER_PORT"))

    # Alerts (Slack-compatible webhook); unset -> alerts are only logged.
    alert_webhook_url: SecretStr | None = Field(
        default=None, validation_alias=_env("ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_URL")
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # Derived locations -------------------------------------------------------------------
    @property
    def pg_data_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def resolved_dagster_home(self) -> Path:
        return (self.dagster_home or self.data_dir / "dagster_home").expanduser().resolve()

    @property
    def resolved_mlflow_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.data_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.data_dir / "mlflow" / "artifacts"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def kb_snapshot_dir(self) -> Path:
        return self.data_dir / "kb_index"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Tests and the CLI change the environment; this makes the next read see it."""
    get_settings.cache_clear()
