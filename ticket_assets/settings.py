"""One settings object for the CLI, the Dagster code location and the API.

Every value comes from the environment: either ``TICKETOPS_<NAME>`` or, for the
settings that have a conventional name (``DATABASE_URL``, ``QDRANT_URL``,
``MLFLOW_TRACKING_URI``, ``DAGSTER_HOME``, ``LLM_BASE_URL`` ...), that name.
Secrets are ``SecretStr`` so they never end up in logs, reprs or asset metadata.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _env(name: str, *conventional: str) -> AliasChoices:
    return AliasChoices(f"TICKETOPS_{name}", *conventional)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    # Everything embedded (Postgres cluster, MLflow store, KB snapshots, Dagster home) lives here.
    data_dir: Path = Field(default=Path(".ticketops"), validation_alias=_env("DATA_DIR"))

    database_url: SecretStr | None = Field(
        default=None, validation_alias=_env("DATABASE_URL", "DATABASE_URL")
    )
    qdrant_url: str | None = Field(default=None, validation_alias=_env("QDRANT_URL", "QDRANT_URL"))
    qdrant_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("QDRANT_API_KEY", "QDRANT_API_KEY")
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=_env("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
    )
    dagster_home: Path | None = Field(default=None, validation_alias=_env("DAGSTER_HOME", "DAGSTER_HOME"))

    # Model registry
    model_name: str = Field(default="ticket-triage", validation_alias=_env("MODEL_NAME"))
    # Base URL of the MLflow UI that run and model-version links point at; unset -> the tracking URI
    # when it is a server without credentials in it, else `mlflow ui`'s default address.
    public_mlflow_url: str | None = Field(default=None, validation_alias=_env("PUBLIC_MLFLOW_URL"))
    # Small hyper-parameter grids and 2 CV folds: demos, CI and laptops; production keeps the full search.
    train_quick: bool = Field(default=False, validation_alias=_env("TRAIN_QUICK"))
    # Training bounds (ml/train.py): rows fitted (a topic-stratified sample beyond), and training
    # vectors the kNN vote / out-of-scope detector keep per class, so the model stays bounded.
    train_max_rows: int = Field(default=300_000, ge=1000, validation_alias=_env("TRAIN_MAX_ROWS"))
    train_knn_max_per_class: int = Field(
        default=5_000, ge=10, validation_alias=_env("TRAIN_KNN_MAX_PER_CLASS")
    )

    # LLM (any OpenAI-compatible endpoint). Unset base URL -> extractive drafts.
    llm_base_url: str | None = Field(default=None, validation_alias=_env("LLM_BASE_URL", "LLM_BASE_URL"))
    llm_api_key: SecretStr | None = Field(default=None, validation_alias=_env("LLM_API_KEY", "LLM_API_KEY"))
    llm_model: str = Field(default="gpt-4o-mini", validation_alias=_env("LLM_MODEL", "LLM_MODEL"))
    llm_timeout_s: float = Field(default=20.0, validation_alias=_env("LLM_TIMEOUT_S"))

    # Embedding runtime: threads are explicit because oversubscribing 2 cores collapses latency.
    embed_threads: int = Field(default=2, ge=1, validation_alias=_env("EMBED_THREADS"))
    embed_batch_size: int = Field(default=64, ge=1, validation_alias=_env("EMBED_BATCH_SIZE"))
    # onnx = int8 ONNX Runtime (serves and trains: one runtime, no train/serve skew); torch = reference.
    embed_runtime: Literal["onnx", "onnx-fp32", "torch"] = Field(
        default="onnx", validation_alias=_env("EMBED_RUNTIME")
    )
    # Texts committed per transaction by the embedding assets: a killed run or pod loses at most one
    # chunk of work (~14 s at 148 tickets/s), and a rerun encodes only what was not committed.
    embed_write_chunk: int = Field(default=2048, ge=1, validation_alias=_env("EMBED_WRITE_CHUNK"))
    # Exported ONNX models; default data_dir/models. Point it at a directory baked into the image
    # (or shared by a test session) so a fresh data directory does not export again.
    model_cache_dir: Path | None = Field(default=None, validation_alias=_env("MODEL_CACHE_DIR"))

    # API
    api_host: str = Field(default="127.0.0.1", validation_alias=_env("API_HOST"))
    api_port: int = Field(default=8000, validation_alias=_env("API_PORT"))
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias=_env("API_KEYS")
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("CORS_ORIGINS")
    )
    low_confidence_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, validation_alias=_env("LOW_CONFIDENCE_THRESHOLD")
    )
    redact_text: bool = Field(default=False, validation_alias=_env("REDACT_TEXT"))
    api_workers: int = Field(default=1, ge=1, validation_alias=_env("API_WORKERS"))
    max_batch_size: int = Field(default=32, ge=1, validation_alias=_env("MAX_BATCH_SIZE"))
    max_text_chars: int = Field(default=8000, ge=1, validation_alias=_env("MAX_TEXT_CHARS"))
    max_body_bytes: int = Field(default=2_000_000, ge=1024, validation_alias=_env("MAX_BODY_BYTES"))
    answer_top_k: int = Field(default=4, ge=1, le=20, validation_alias=_env("ANSWER_TOP_K"))
    # Trust signals: out-of-scope scores and term reasons from the model, escalation rules. Off only
    # to measure their cost (benchmarks/bench_api.py --trust both).
    trust_signals_enabled: bool = Field(default=True, validation_alias=_env("TRUST_SIGNALS_ENABLED"))
    # Escalation rules (YAML, see ticket_assets/ml/escalation_rules.yaml, the default).
    escalation_rules_path: Path | None = Field(default=None, validation_alias=_env("ESCALATION_RULES_PATH"))
    # Display names of label keys for drafts and the API (YAML, ticket_assets/core/label_names.yaml).
    label_names_path: Path | None = Field(default=None, validation_alias=_env("LABEL_NAMES_PATH"))
    # /v1/answer abstains (draft.mode "no_answer") when the relevance, the best over articles of
    # (1 - w) * the article's best passage cosine + w * the share of the ticket's ANSWER_COVERAGE_TERMS
    # rarest words it holds (ticket_assets/rag/relevance.py, w = ANSWER_LEXICAL_WEIGHT, 0 terms: all),
    # is below the floor; calibrated on tests/data/kb_questions.yaml (BENCHMARKS.md "Answer abstention").
    answer_min_relevance: float = Field(
        default=0.422, ge=-1.0, le=1.0, validation_alias=_env("ANSWER_MIN_RELEVANCE")
    )
    answer_lexical_weight: float = Field(
        default=0.3, ge=0.0, le=1.0, validation_alias=_env("ANSWER_LEXICAL_WEIGHT")
    )
    answer_coverage_terms: int = Field(default=3, ge=0, validation_alias=_env("ANSWER_COVERAGE_TERMS"))
    # How often the API checks the `champion` alias and the KB snapshot for a new version.
    model_poll_s: float = Field(default=10.0, gt=0, validation_alias=_env("MODEL_POLL_S"))
    # One inference thread: torch/ONNX already use embed_threads cores; more would oversubscribe.
    inference_threads: int = Field(default=1, ge=1, validation_alias=_env("INFERENCE_THREADS"))
    # Concurrent requests arriving within the window are embedded and predicted as one batch.
    microbatch_enabled: bool = Field(default=True, validation_alias=_env("MICROBATCH_ENABLED"))
    microbatch_window_ms: float = Field(default=2.0, ge=0, validation_alias=_env("MICROBATCH_WINDOW_MS"))
    microbatch_max_items: int = Field(default=32, ge=1, validation_alias=_env("MICROBATCH_MAX_ITEMS"))
    # Prediction log writer: bounded buffer (oldest rows dropped when full), batched inserts.
    log_buffer_max: int = Field(default=50_000, ge=1, validation_alias=_env("LOG_BUFFER_MAX"))
    log_batch_size: int = Field(default=500, ge=1, validation_alias=_env("LOG_BATCH_SIZE"))
    log_flush_interval_s: float = Field(default=0.2, gt=0, validation_alias=_env("LOG_FLUSH_INTERVAL_S"))

    # Training on real exports: retrain even when data, code and config equal the champion's
    # (otherwise ticket_classifier skips and registers nothing new).
    force_train: bool = Field(default=False, validation_alias=_env("FORCE_TRAIN"))

    # Confidence tiers, set per class on the holdout at training time: the held-out precision a
    # class's predictions must reach for tier `auto` (act without a person) and `suggest`, and the
    # held-out predictions a class needs for an auto tier.
    tier_auto_precision: float = Field(default=0.95, gt=0, le=1, validation_alias=_env("TIER_AUTO_PRECISION"))
    tier_suggest_precision: float = Field(
        default=0.80, gt=0, le=1, validation_alias=_env("TIER_SUGGEST_PRECISION")
    )
    tier_min_examples: int = Field(default=20, ge=1, validation_alias=_env("TIER_MIN_EXAMPLES"))

    # Durable acknowledgement: predictions and queued feedback reach a local write-ahead spool
    # (fsync, group commit) before the reply. "postgres" instead waits for the group commit in
    # PostgreSQL (spool only while it is down); "off" keeps rows in memory only.
    log_durability: Literal["spool", "postgres", "off"] = Field(
        default="spool", validation_alias=_env("LOG_DURABILITY")
    )
    spool_dir: Path | None = Field(default=None, validation_alias=_env("SPOOL_DIR"))  # default data_dir/spool
    spool_segment_bytes: int = Field(
        default=8 * 1024 * 1024, ge=4096, validation_alias=_env("SPOOL_SEGMENT_BYTES")
    )
    # "postgres" durability: how long a request waits for the commit before spooling instead.
    log_commit_timeout_s: float = Field(default=1.0, gt=0, validation_alias=_env("LOG_COMMIT_TIMEOUT_S"))

    # Ticket memory: similar past tickets and duplicates in /v1/triage and /v1/answer.
    similar_enabled: bool = Field(default=True, validation_alias=_env("SIMILAR_ENABLED"))
    similar_top_k: int = Field(default=5, ge=0, le=50, validation_alias=_env("SIMILAR_TOP_K"))
    # Calibrated on the generator's duplicates (BENCHMARKS.md "Duplicate detection").
    duplicate_threshold: float = Field(
        default=0.98, ge=0.0, le=1.0, validation_alias=_env("DUPLICATE_THRESHOLD")
    )
    duplicate_window_h: float = Field(default=72.0, gt=0, validation_alias=_env("DUPLICATE_WINDOW_H"))

    # Dagster UI
    dagster_port: int = Field(default=3000, validation_alias=_env("DAGSTER_PORT"))
    # Base URL alerts link Dagster runs under; unset -> http://127.0.0.1:dagster_port.
    public_dagster_url: str | None = Field(default=None, validation_alias=_env("PUBLIC_DAGSTER_URL"))

    # Alerts (Slack-compatible webhook); unset -> alerts are only logged.
    alert_webhook_url: SecretStr | None = Field(
        default=None, validation_alias=_env("ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_URL")
    )

    # Automation and deployment: read once here instead of from os.environ in the Dagster layer.
    # New agent labels that trigger a retraining (new_labels_retrain_sensor).
    retrain_min_labels: int = Field(default=200, ge=1, validation_alias=_env("RETRAIN_MIN_LABELS"))
    # When the drift report is computed (drift_report_schedule).
    drift_cron: str = Field(default="*/15 * * * *", validation_alias=_env("DRIFT_CRON"))
    # Base URL the Dagster UI links drift reports under; unset -> http://api_host:api_port.
    public_api_url: str | None = Field(default=None, validation_alias=_env("PUBLIC_API_URL"))
    # dbt runs in the step's process (dbt's programmatic runner, ticket_assets/services/dbt_runner.py);
    # false: one `dbt` subprocess per invocation, as dagster-dbt does (2-3 s more per run).
    dbt_in_process: bool = Field(default=True, validation_alias=_env("DBT_IN_PROCESS"))
    # With dbt in process: `ticketops materialize` starts a dbt process that parses while the run's
    # process loads the graph, and the dbt step runs in it (ticket_assets/services/dbt_worker.py).
    dbt_warm_worker: bool = Field(default=True, validation_alias=_env("DBT_WARM_WORKER"))
    # Dagster executor: "k8s" runs one Kubernetes Job per step; unset runs steps in the run's process(es).
    executor: Literal["", "default", "multiprocess", "in_process", "k8s"] = Field(
        default="", validation_alias=_env("EXECUTOR")
    )

    @field_validator(
        "database_url",
        "qdrant_url",
        "qdrant_api_key",
        "mlflow_tracking_uri",
        "dagster_home",
        "llm_base_url",
        "llm_api_key",
        "alert_webhook_url",
        "public_api_url",
        "public_dagster_url",
        "public_mlflow_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Kubernetes ConfigMaps and shells often export VAR="" to mean "not configured".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("executor", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

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
    def dagster_url(self) -> str:
        return (self.public_dagster_url or f"http://127.0.0.1:{self.dagster_port}").rstrip("/")

    @property
    def resolved_mlflow_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.data_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def api_url(self) -> str:
        """The API's base URL as links in the Dagster UI and alerts name it."""
        return (self.public_api_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def mlflow_ui_url(self) -> str:
        if self.public_mlflow_url:
            return self.public_mlflow_url.rstrip("/")
        uri = self.resolved_mlflow_uri
        if uri.startswith(("http://", "https://")) and "@" not in uri.split("//", 1)[1].split("/", 1)[0]:
            return uri.rstrip("/")
        return "http://127.0.0.1:5000"

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.data_dir / "mlflow" / "artifacts"

    @property
    def resolved_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").expanduser().resolve()

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def kb_snapshot_dir(self) -> Path:
        return self.data_dir / "kb_index"

    @property
    def resolved_spool_dir(self) -> Path:
        return (self.spool_dir or self.data_dir / "spool").expanduser().resolve()

    @property
    def ticket_index_dir(self) -> Path:
        return self.data_dir / "ticket_index"


def secret_fields() -> set[str]:
    """Settings holding secrets (``SecretStr``): never copied into Dagster resource config."""
    return {name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)}


def env_source(settings: Settings, field: str) -> str | None:
    """The environment variable that holds ``settings.<field>``'s value, if one does (else the value
    was given in code): lets the Dagster layer refer to a secret by name instead of copying it."""
    value = getattr(settings, field)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    alias = Settings.model_fields[field].validation_alias
    names = alias.choices if isinstance(alias, AliasChoices) else []
    for name in names:
        if os.environ.get(str(name)) == value:
            return str(name)
    return None


_current: Settings | None = None


def get_settings() -> Settings:
    """The process's settings: read from the environment once, or the object given to use_settings."""
    global _current
    if _current is None:
        _current = Settings()
    return _current


def use_settings(settings: Settings) -> Settings:
    """Make ``settings`` the process's settings (the CLI resolves services once, then runs in-process)."""
    global _current
    _current = settings
    return settings


def reset_settings_cache() -> None:
    """Tests change the environment; this makes the next read see it."""
    global _current
    _current = None


@contextmanager
def scoped_environment(
    overlay: Mapping[str, str] | None = None, restore: Iterable[str] = ()
) -> Iterator[None]:
    """For libraries configured only through ``os.environ`` (dagster-dbt's dbt invocation, MLflow's
    fluent API): lay ``overlay`` over the environment for one call, and afterwards put back every
    variable in ``overlay`` and ``restore`` (names a library may export itself) as it was."""
    overlay = dict(overlay or {})
    keys = {*overlay, *restore}
    before = {key: os.environ.get(key) for key in keys}
    os.environ.update(overlay)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


OFFLINE_SWITCHES = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def forbid_model_hub() -> None:
    """Hugging Face libraries are configured only through these variables: never contact a model hub."""
    for key, value in OFFLINE_SWITCHES.items():
        os.environ.setdefault(key, value)


def _env_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(_env_value(item) or "" for item in value)
    return str(value)


def child_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes (dagster, the API, dbt) that makes them read ``settings``.

    Every set field is exported under all of its names, so tools that read a conventional name
    themselves (``DAGSTER_HOME`` for dagster, ``MLFLOW_TRACKING_URI`` for mlflow) agree with us.
    """
    env = dict(os.environ)
    for name, field in Settings.model_fields.items():
        value = _env_value(getattr(settings, name))
        if value is None or not isinstance(field.validation_alias, AliasChoices):
            continue
        for alias in field.validation_alias.choices:
            env[str(alias)] = value
    env["DAGSTER_HOME"] = str(settings.resolved_dagster_home)
    if sys.prefix != sys.base_prefix:  # dg resolves the project's environment from VIRTUAL_ENV
        env["VIRTUAL_ENV"] = sys.prefix
    # Models are baked into the package or the cache: never reach out to a model hub at run time.
    for key, value in OFFLINE_SWITCHES.items():
        env.setdefault(key, value)
    env.update(extra or {})
    return env
