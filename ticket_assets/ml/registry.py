"""MLflow tracking and model registry with a plain ``MlflowClient`` (no Dagster).

Aliases: a new version is ``challenger``; the promotion gate moves ``champion``. Every alias move is
also a row in Postgres ``ops.model_alias_events`` (who, why, from which version), and a promoted
version carries the tag ``ticketops.previous_champion`` so ``rollback`` knows where to go back to
without parsing history.

Registered artifacts: an MLflow pyfunc (``TriagePyfunc``) whose ``triage_model`` artifact is the
joblib-pickled ``TriageModel``. Loading needs the ``ticket_assets`` package importable (the pickled
classes live there); the pip requirements logged with the model pin the libraries it uses.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticket_assets.alerts import Alert, send_alert
from ticket_assets.core.names import CHALLENGER, CHAMPION
from ticket_assets.services.postgres import connect, database_url
from ticket_assets.settings import Settings, scoped_environment

if TYPE_CHECKING:  # the model classes import scikit-learn, pandas and MLflow
    from ticket_assets.ml.predict import TriageModel

log = logging.getLogger(__name__)

PREVIOUS_CHAMPION_TAG = "ticketops.previous_champion"
# The champion when a challenger's training started ("none" for a first model).
BASE_CHAMPION_TAG = "ticketops.base_champion"
# First key of pg_advisory_lock(int, int) for alias moves; the second is the model name's hash.
ALIAS_LOCK_NAMESPACE = 742002
MODEL_ARTIFACT = "model"
# The MLflow UI (3.x) opens an experiment on its traces unless this tag says it trains models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Columns of the train and holdout datasets logged as run inputs (their schema shows in the UI).
DATASET_COLUMNS = ("ticket_id", "text", "topic", "topic_display", "urgency", "channel", "event_at", "split")
# What the registered model is, whatever version: its description in the MLflow UI.
MODEL_DESCRIPTION = (
    "Triage model for IT support tickets: predicts the topic (and, when labels exist, the urgency and "
    "routing targets such as the assignment group) with calibrated confidences and tiers, from the ticket "
    "text (TF-IDF and sentence embeddings). Trained on `marts.training_set` by the `ticket_classifier` "
    "asset; the `champion` alias is what the API serves, moved only by the `promotion_gate`-guarded "
    "`champion_model` asset (or `ticketops model promote|rollback`)."
)
# Metrics shown by list_versions and copied onto each version as tags.
KEY_METRICS = (
    "topic.macro_f1",
    "topic.accuracy",
    "topic.ece",
    "urgency.macro_f1",
    "urgency.most_urgent_recall",
)
_REQUIREMENTS = (
    "mlflow",
    "scikit-learn",
    "scipy",
    "numpy",
    "pandas",
    "polars",
    "joblib",
    "sentence-transformers",
)
_METRIC_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
_experiment_ids: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str | None
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class ChampionMovedError(RuntimeError):
    """The champion changed while the challenger trained: another run promoted meanwhile (two
    training runs racing), and promoting too would move the champion twice for one change."""


class NoPreviousChampionError(LookupError):
    pass


class UnknownVersionError(LookupError):
    pass


# --------------------------------------------------------------------------------------------------
# Tracking


def configure_mlflow(settings: Settings) -> Any:
    """A client on the platform's store (URIs passed explicitly, no process-global state), with the
    experiment created.

    With the default SQLite store the experiment's artifact location is set explicitly to
    ``settings.mlflow_artifact_root`` so ``mlflow ui --backend-store-uri sqlite:///<data>/mlflow/mlflow.db``
    (from any working directory) finds runs, figures and registered models.
    """
    from mlflow import MlflowClient

    uri = settings.resolved_mlflow_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id(client, settings)
    return client


@contextmanager
def _fluent_store(settings: Settings) -> Iterator[None]:
    """MLflow's fluent API (``start_run``, ``pyfunc.log_model``/``load_model``) has no client argument:
    it reads a process-global store, and ``set_*_uri`` also export ``MLFLOW_*_URI`` into the
    environment, which the settings would then read as configured. Only the two calls that need the
    fluent API run inside this; the environment is put back afterwards."""
    import mlflow

    uri = settings.resolved_mlflow_uri
    with scoped_environment(restore=("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        yield


def experiment_id(client: Any, settings: Settings) -> str:
    key = (settings.resolved_mlflow_uri, settings.model_name)
    if key not in _experiment_ids:  # the API polls aliases often: look the experiment up once
        _experiment_ids[key] = _get_or_create_experiment(client, settings)
    return _experiment_ids[key]


def _get_or_create_experiment(client: Any, settings: Settings) -> str:
    experiment = client.get_experiment_by_name(settings.model_name)
    if experiment is not None:
        if (experiment.tags or {}).get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the tag
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id
    artifact_location = None
    if _is_local_store(settings.resolved_mlflow_uri):
        settings.mlflow_artifact_root.mkdir(parents=True, exist_ok=True)
        artifact_location = settings.mlflow_artifact_root.resolve().as_uri()
    try:
        return client.create_experiment(
            settings.model_name,
            artifact_location=artifact_location,
            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
        )
    except Exception:  # another process created it first
        experiment = client.get_experiment_by_name(settings.model_name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/"))


def log_training_run(
    model: TriageModel,
    metrics: dict[str, Any],
    figures: dict[str, bytes],
    params: dict[str, Any],
    data_version: dict[str, Any],
    *,
    settings: Settings,
    reports: dict[str, Any] | None = None,
    run_name: str | None = None,
    actor: str = "training",
    db_url: str | None = None,
    datasets: dict[str, Any] | None = None,
) -> RegisteredVersion:
    """Log one training run and register its model as a new version with alias ``challenger``.

    ``metrics`` are holdout metrics (``evaluate`` layout) — logged flattened as MLflow metrics and
    whole as JSON; ``reports`` are extra JSON documents (CV results, baseline, gate ...) by name;
    ``datasets`` (``train``, ``holdout`` polars frames) are logged as the run's inputs. The run is
    named after the model, its version and its data; the version gets a description.
    """
    import mlflow

    client = configure_mlflow(settings)
    exp_id = experiment_id(client, settings)
    data_tags = {f"data.{key}": _tag_value(value) for key, value in data_version.items()}
    with (
        _fluent_store(settings),
        mlflow.start_run(
            experiment_id=exp_id,
            run_name=run_name or training_run_name(settings.model_name, None, model, data_version),
            tags=data_tags,
        ) as run,
    ):
        run_id = run.info.run_id
        for context, frame in (datasets or {}).items():
            mlflow.log_input(training_dataset(frame, settings.model_name, context), context=context)
        _log_params(client, run_id, params)
        _log_metrics(client, run_id, flatten_metrics(metrics))
        mlflow.log_dict(metrics, "metrics/holdout.json")
        mlflow.log_dict(data_version, "data_version.json")
        for name, document in (reports or {}).items():
            mlflow.log_dict(document, f"reports/{name}.json")
        with tempfile.TemporaryDirectory() as tmp:
            figure_dir = Path(tmp) / "figures"
            figure_dir.mkdir()
            for file_name, png in figures.items():
                (figure_dir / file_name).write_bytes(png)
            if figures:
                mlflow.log_artifacts(str(figure_dir), "figures")
            from ticket_assets.ml.predict import embedder_settings

            with embedder_settings(settings):  # MLflow predicts the input example while logging
                model_info = _log_pyfunc(model, Path(tmp), settings.model_name)
    version = str(model_info.registered_model_version)
    if run_name is None:  # the version number is known now
        client.update_run(run_id, name=training_run_name(settings.model_name, version, model, data_version))
    for key, value in {**data_tags, **_key_metric_tags(metrics)}.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    client.update_registered_model(settings.model_name, description=MODEL_DESCRIPTION)
    client.update_model_version(
        settings.model_name, version, description=version_description(model, metrics, data_version)
    )
    set_alias(settings.model_name, CHALLENGER, version, actor, "new training run", db_url, settings=settings)
    log.info("registered %s version %s (run %s)", settings.model_name, version, run_id)
    return RegisteredVersion(name=settings.model_name, version=version, run_id=run_id)


def data_label(data_version: dict[str, Any]) -> str:
    """The data version in a few characters: rows and the content hash's prefix."""
    rows = data_version.get("training_set_rows")
    digest = str(data_version.get("training_set_sha256", ""))[:8]
    return " · ".join(
        part
        for part in (f"{rows:,} rows" if isinstance(rows, int) else "", digest and f"data {digest}")
        if part
    )


def training_run_name(
    name: str, version: str | None, model: TriageModel, data_version: dict[str, Any]
) -> str:
    """``ticket-triage v7 · stack · 1,234 rows · data 1a2b3c4d`` (``candidate`` before registration)."""
    chosen = model.metadata.get("chosen", {}).get("topic")
    parts = [f"{name} v{version}" if version else f"{name} candidate", chosen, data_label(data_version)]
    return " · ".join(part for part in parts if part)


def training_dataset(frame: Any, model_name: str, context: str) -> Any:
    """A run input: the split's rows as an MLflow polars dataset named after the split, its digest the
    split's content hash (the data is not copied; its schema and row count show in the UI)."""
    import mlflow.data
    import polars as pl

    from ticket_assets.ml.dataset import content_hash

    columns = [c for c in DATASET_COLUMNS if c in frame.columns]
    selected = frame.select(columns).with_columns(
        [pl.col(c).cast(pl.String) for c in columns if frame.schema[c] == pl.Object]
    )
    return mlflow.data.from_polars(
        selected,
        name=f"{model_name}-{context}",
        digest=content_hash(frame)[:16],  # MLflow stores at most 36 characters
        targets="topic" if "topic" in columns else None,
    )


def version_description(model: TriageModel, metrics: dict[str, Any], data_version: dict[str, Any]) -> str:
    """What a version predicts, from which data, how well on its holdout; the gate verdict follows."""
    targets = ", ".join(sorted(model.targets))
    flat = flatten_metrics(metrics)
    scores = ", ".join(f"{key} {flat[key]:.3f}" for key in KEY_METRICS if key in flat)
    data = data_label(data_version)
    split = data_version.get("split_rule")
    lines = [
        f"Predicts: {targets} (chosen: {', '.join(f'{t}={c}' for t, c in sorted(model.metadata.get('chosen', {}).items()))}).",
        f"Data: marts.training_set, {data}"
        + (
            f", {data_version['train_rows']:,} train / {data_version['test_rows']:,} holdout"
            if "train_rows" in data_version and "test_rows" in data_version
            else ""
        )
        + (f", split {split}" if split else "")
        + ".",
        f"Holdout: {scores or 'no metrics'}.",
        "Gate: not judged yet.",
    ]
    return "\n".join(lines)


def record_gate_verdict(settings: Settings, version: str, passed: bool, summary: str) -> None:
    """The gate's verdict as the last line of the version's description (what the UI shows first)."""
    client = configure_mlflow(settings)
    current = client.get_model_version(settings.model_name, str(version)).description or ""
    kept = [line for line in current.splitlines() if not line.startswith("Gate:")]
    verdict = f"Gate: {'passed' if passed else 'failed'}: {summary}"[:2000]
    client.update_model_version(settings.model_name, str(version), description="\n".join([*kept, verdict]))


def mlflow_run_url(base: str, experiment: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"


def _log_pyfunc(model: TriageModel, tmp: Path, registered_name: str) -> Any:
    import joblib
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from ticket_assets.ml.predict import TriagePyfunc

    model_path = tmp / "triage_model.joblib"
    joblib.dump(model, model_path, compress=3)
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema(
            [
                ColSpec("string", "topic"),
                ColSpec("double", "topic_confidence"),
                ColSpec("string", "urgency", required=False),
                ColSpec("double", "urgency_confidence", required=False),
            ]
        ),
    )
    example = pd.DataFrame(
        {"text": ["Laptop does not turn on after the update. Please help, I have a demo at 3pm."]}
    )
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=TriagePyfunc(),
        artifacts={TriagePyfunc.ARTIFACT_KEY: str(model_path)},
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_name,
        metadata={"embedding_model_id": model.embedding_model_id, "targets": sorted(model.targets)},
    )


def pip_requirements() -> list[str]:
    """Pinned to what trained the model; listing them explicitly skips MLflow's slow inference."""
    pins = []
    for package in _REQUIREMENTS:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves as ``a.b.c`` names; lists (confusion matrix, reliability) stay in the JSON."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = _METRIC_NAME_UNSAFE.sub("_", f"{prefix}{key}")
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float):
            flat[name] = float(value)
    return flat


def _flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _tag_value(value)[:6000]
    return flat


def _log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    flat = _flatten_params(params)
    items = [Param(key, value) for key, value in flat.items()]
    for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        client.log_batch(run_id, params=items[start : start + 100])


def _log_metrics(client: Any, run_id: str, flat: dict[str, float]) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(key, value, now, 0) for key, value in flat.items()]
    for start in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[start : start + 1000])


def _tag_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, sort_keys=True)


def _key_metric_tags(metrics: dict[str, Any]) -> dict[str, str]:
    flat = flatten_metrics(metrics)
    return {f"metric.{key}": f"{flat[key]:.6f}" for key in KEY_METRICS if key in flat}


# --------------------------------------------------------------------------------------------------
# Loading


def load_model_version(
    name: str | None, alias_or_version: str | int, settings: Settings
) -> tuple[TriageModel, ModelVersionInfo]:
    """Load a registered version (by alias or number) and unwrap the ``TriageModel`` inside."""
    import mlflow.pyfunc

    from ticket_assets.ml.predict import TriageModel

    name = name or settings.model_name
    client = configure_mlflow(settings)
    info = version_info(client, name, alias_or_version)
    # Load by number: the alias could move between resolving it and loading.
    with _fluent_store(settings):
        pyfunc = mlflow.pyfunc.load_model(info.uri)
    model = pyfunc.unwrap_python_model().model
    if not isinstance(model, TriageModel):
        raise TypeError(f"{info.uri} does not hold a TriageModel")
    return model, info


def load_run_document(run_id: str | None, path: str, settings: Settings) -> dict[str, Any] | None:
    """A JSON document logged with a run (``metrics/holdout.json``, ``reports/<name>.json``), or
    None when the run has no such document."""
    from mlflow.exceptions import MlflowException

    if run_id is None:
        return None
    client = configure_mlflow(settings)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError):
            return None
        document = json.loads(Path(local).read_text())
    return document if isinstance(document, dict) else None


def version_info(client: Any, name: str, alias_or_version: str | int) -> ModelVersionInfo:
    key = str(alias_or_version)
    mv = (
        client.get_model_version(name, key) if key.isdigit() else client.get_model_version_by_alias(name, key)
    )
    return ModelVersionInfo(
        name=name,
        version=str(mv.version),
        run_id=mv.run_id,
        aliases=sorted(getattr(mv, "aliases", []) or []),
        tags=dict(mv.tags or {}),
        created_at=_iso(mv.creation_timestamp),
    )


def _iso(timestamp_ms: int | None) -> str | None:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).isoformat() if timestamp_ms else None


# --------------------------------------------------------------------------------------------------
# Aliases


def get_alias_version(name: str | None, alias: str, settings: Settings) -> str | None:
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(settings)
    try:
        return str(client.get_model_version_by_alias(name or settings.model_name, alias).version)
    except MlflowException:
        return None


@contextmanager
def alias_lock(url: str, name: str) -> Iterator[None]:
    """One alias move at a time per registered model, across processes (CLI, Dagster runs, API tests).

    A PostgreSQL session advisory lock: released when the block ends or the connection dies, so a
    crashed mover cannot leave it held.
    """
    key = zlib.crc32(name.encode()) - 2**31  # int4 range
    with connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s, %s)", (ALIAS_LOCK_NAMESPACE, key))
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s, %s)", (ALIAS_LOCK_NAMESPACE, key))


def set_alias(
    name: str | None,
    alias: str,
    version: str | int,
    actor: str,
    reason: str,
    url: str | None = None,
    *,
    settings: Settings,
) -> str | None:
    """Point ``alias`` at ``version`` and record the move in ``ops.model_alias_events``.

    Returns the version the alias pointed at before (None if it was unset).
    """
    name = name or settings.model_name
    url = url or database_url(settings)
    with alias_lock(url, name):
        return _move_alias(name, alias, version, actor, reason, url, settings)


def _move_alias(
    name: str,
    alias: str,
    version: str | int,
    actor: str,
    reason: str,
    url: str,
    settings: Settings,
    *,
    rollback: bool = False,
) -> str | None:
    """The move itself; callers hold ``alias_lock``. A champion move notifies on-call."""
    client = configure_mlflow(settings)
    mv = client.get_model_version(name, str(version))  # fails loudly for a version that does not exist
    previous = get_alias_version(name, alias, settings)
    client.set_registered_model_alias(name, alias, str(version))
    event_id = record_alias_event(url, name, alias, previous, str(version), actor, reason)
    log.info("%s@%s: %s -> %s by %s (%s)", name, alias, previous, version, actor, reason)
    if alias == CHAMPION:
        notice = champion_notice(
            name,
            previous,
            str(version),
            actor,
            reason,
            event_id,
            rollback=rollback,
            run_id=mv.run_id,
            mlflow_url=settings.mlflow_ui_url,
        )
        webhook = settings.alert_webhook_url.get_secret_value() if settings.alert_webhook_url else None
        send_alert(notice, webhook, url)
    return previous


def champion_notice(
    name: str,
    previous: str | None,
    version: str,
    actor: str,
    reason: str,
    event_id: int,
    *,
    rollback: bool,
    run_id: str | None,
    mlflow_url: str,
) -> Alert:
    was = f"v{previous}" if previous else "no champion"
    what = "rolled back" if rollback else "changed"
    return Alert(
        title=f"Champion {what}: {name} {was} → v{version}",
        body=f"By {actor}: {reason}. The API hot-reloads it."
        + (f" Training run {run_id}." if run_id else ""),
        severity="warning" if rollback else "info",
        source="registry",
        dedup_key=f"alias:{name}:{event_id}",
        url=mlflow_version_url(mlflow_url, name, version),
    )


def mlflow_version_url(base: str, name: str, version: str) -> str:
    """The version's page in the MLflow UI (``Settings.mlflow_ui_url``)."""
    return f"{base.rstrip('/')}/#/models/{name}/versions/{version}"


def record_alias_event(
    url: str, name: str, alias: str, from_version: str | None, to_version: str, actor: str, reason: str
) -> int:
    statement = (
        "insert into ops.model_alias_events (model_name, alias, from_version, to_version, actor, reason) "
        "values (%s, %s, %s, %s, %s, %s)"
    )
    row = (name, alias, int(from_version) if from_version else None, int(to_version), actor, reason)
    with connect(url) as conn:
        return int(conn.execute(statement + " returning id", row).fetchone()[0])


def promote(
    version: str | int,
    actor: str,
    reason: str,
    *,
    name: str | None = None,
    url: str | None = None,
    settings: Settings,
    expected_champion: str | None = None,
) -> str | None:
    """Make ``version`` the champion; returns the previous champion (remembered on the version).

    ``expected_champion`` ("none" for no champion) is the champion the caller's decision was based
    on; when the champion has moved since, ``ChampionMovedError`` is raised instead of moving it.
    """
    name = name or settings.model_name
    url = url or database_url(settings)
    with alias_lock(url, name):
        client = configure_mlflow(settings)
        previous = get_alias_version(name, CHAMPION, settings)
        if previous == str(version):
            return previous
        if expected_champion is not None and (previous or "none") != expected_champion:
            was = "no champion" if expected_champion == "none" else f"v{expected_champion}"
            raise ChampionMovedError(
                f"{name}: not promoting v{version}: the champion moved from {was} to v{previous} while "
                "it trained (another run promoted meanwhile; run again to train against the new champion)"
            )
        if previous is not None:
            client.set_model_version_tag(name, str(version), PREVIOUS_CHAMPION_TAG, previous)
        elif _has_tag(client, name, version, PREVIOUS_CHAMPION_TAG):
            # A stale pointer from an earlier promotion would make rollback jump somewhere odd.
            client.delete_model_version_tag(name, str(version), PREVIOUS_CHAMPION_TAG)
        _move_alias(name, CHAMPION, version, actor, reason, url, settings)
        return previous


def rollback(
    actor: str,
    reason: str,
    *,
    name: str | None = None,
    url: str | None = None,
    settings: Settings,
) -> str:
    """Move ``champion`` back to the version it replaced; returns that version."""
    name = name or settings.model_name
    url = url or database_url(settings)
    with alias_lock(url, name):
        client = configure_mlflow(settings)
        current = get_alias_version(name, CHAMPION, settings)
        if current is None:
            raise NoPreviousChampionError(f"{name} has no champion to roll back")
        previous = client.get_model_version(name, current).tags.get(PREVIOUS_CHAMPION_TAG)
        if not previous:
            raise NoPreviousChampionError(f"{name} version {current} replaced no earlier champion")
        _move_alias(name, CHAMPION, previous, actor, reason, url, settings, rollback=True)
        return previous


def model_version_exists(name: str, version: str, settings: Settings) -> None:
    """Raise ``UnknownVersionError`` unless ``name`` has ``version``."""
    from mlflow.exceptions import MlflowException

    if not str(version).isdigit():
        raise UnknownVersionError(f"{name}: version must be a number, got {version!r}")
    try:
        configure_mlflow(settings).get_model_version(name, str(version))
    except MlflowException:
        raise UnknownVersionError(f"{name} has no version {version}") from None


def _has_tag(client: Any, name: str, version: str | int, key: str) -> bool:
    return key in (client.get_model_version(name, str(version)).tags or {})


def list_versions(name: str | None, settings: Settings) -> list[dict[str, Any]]:
    """Every version, newest first, with its aliases, data version and key holdout metrics."""
    name = name or settings.model_name
    client = configure_mlflow(settings)
    versions = client.search_model_versions(f"name = '{name}'")
    # Version search does not fill in aliases; the registered model holds them.
    aliases_of: dict[str, list[str]] = {}
    if versions:
        for alias, version in (client.get_registered_model(name).aliases or {}).items():
            aliases_of.setdefault(str(version), []).append(alias)
    result = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = dict(mv.tags or {})
        metrics = {
            key.removeprefix("metric."): float(v) for key, v in tags.items() if key.startswith("metric.")
        }
        result.append(
            {
                "name": name,
                "version": str(mv.version),
                "aliases": sorted(aliases_of.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "created_at": _iso(mv.creation_timestamp),
                "status": mv.status,
                "metrics": metrics,
                # Headline figures at the top level for tables (CLI, UI).
                "macro_f1": metrics.get("topic.macro_f1"),
                "most_urgent_recall": metrics.get("urgency.most_urgent_recall"),
                "data_version": {
                    key.removeprefix("data."): v for key, v in tags.items() if key.startswith("data.")
                },
                "previous_champion": tags.get(PREVIOUS_CHAMPION_TAG),
            }
        )
    return result
