"""Training as small stages the Dagster training assets call one by one:
data -> train -> evaluate (+ majority baseline, + the champion on the same holdout) -> register
(alias ``challenger``) -> gate -> promote.

Training has the holdout in memory, so it also scores the champion of the time there and records
that with the run; the gate judges from the recorded figures and reloads the data only when the
champion has moved since (``gate_decision``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from ticket_assets.core.paths import DBT_MANIFEST
from ticket_assets.ml.dataset import (
    TrainingData,
    data_version,
    load_training_data,
    split_rule_summary,
    topic_label_map,
)
from ticket_assets.ml.evaluate import Evaluation, evaluate_model, majority_baseline_metrics
from ticket_assets.ml.gate import GateConfig, GateDecision, evaluate_gate, score_on_holdout
from ticket_assets.ml.predict import TriageModel
from ticket_assets.ml.registry import (
    CHAMPION,
    ModelVersionInfo,
    RegisteredVersion,
    get_alias_version,
    load_model_version,
    load_run_document,
    log_training_run,
)
from ticket_assets.ml.tiers import TierConfig, fit_tiers, thresholds, tier_summary
from ticket_assets.ml.train import TrainConfig, TrainingOutcome, TrainingProgress, train_triage_model
from ticket_assets.services.postgres import connect
from ticket_assets.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class TrainedCandidate:
    outcome: TrainingOutcome
    evaluation: Evaluation
    baseline: dict[str, Any]


def load_data(settings: Settings, url: str, with_embeddings: bool = True) -> TrainingData:
    from ticket_assets.ml.embed import get_embedder

    with connect(url) as conn:
        return load_training_data(conn, get_embedder(settings) if with_embeddings else None)


def train_and_evaluate(
    data: TrainingData, config: TrainConfig | None = None, progress: TrainingProgress | None = None
) -> TrainedCandidate:
    outcome = train_triage_model(data.train, data.train_embeddings, data.embedding_model_id, config, progress)
    describe_training_data(outcome.model, data)
    outcome.model.metadata["rare_labels"] = {t: r.rare_labels for t, r in outcome.reports.items()}
    model = outcome.model
    probabilities = model.predict_proba(
        data.test["text"].to_list(), data.test_embeddings, data.embedding_model_id
    )
    evaluation = evaluate_model(
        model, data.test, data.test_embeddings, data.embedding_model_id, probabilities=probabilities
    )
    attach_tiers(model, data.test, probabilities, evaluation.metrics, config or TrainConfig())
    baseline = majority_baseline_metrics(data.train, data.test, list(model.targets))
    return TrainedCandidate(outcome, evaluation, baseline)


def tier_config(config: TrainConfig) -> TierConfig:
    return TierConfig(config.tier_auto_precision, config.tier_suggest_precision, config.tier_min_examples)


def attach_tiers(
    model: TriageModel,
    holdout: pl.DataFrame,
    probabilities: dict[str, Any],
    metrics: dict[str, Any],
    config: TrainConfig,
) -> list[dict[str, Any]]:
    """Fit every target's confidence tiers on the holdout (``ml.tiers``), store the table in the
    model's metadata (serving applies it) and each target's tier shares in ``metrics``."""
    rows: list[dict[str, Any]] = []
    for target, proba in probabilities.items():
        if target not in holdout.columns:
            continue
        truth = holdout[target].to_list()
        labelled = [i for i, label in enumerate(truth) if label is not None]
        labels = model.labels(target)
        target_rows = fit_tiers(
            target, labels, [truth[i] for i in labelled], proba[labelled], tier_config(config)
        )
        rows.extend(target_rows)
        if target in metrics:
            metrics[target]["tiers"] = tier_summary(
                labels, [truth[i] for i in labelled], proba[labelled], thresholds(target_rows).get(target, {})
            )
    model.metadata["tiers"] = rows
    model.metadata["tier_config"] = {
        "auto_precision": config.tier_auto_precision,
        "suggest_precision": config.tier_suggest_precision,
        "min_examples": config.tier_min_examples,
    }
    return rows


def describe_training_data(model: TriageModel, data: TrainingData) -> None:
    """What the model carries about its data: topic display names, the split rule, its training
    label mix and the ids of the holdout it never trained on (the drift reference is drawn from
    those, in that label mix)."""
    frame = pl.concat([data.train, data.test], how="vertical_relaxed")
    model.metadata["topic_display"] = topic_label_map(frame).as_dict()
    if "split_rule" in frame.columns:
        model.metadata["split_rule"] = split_rule_summary(frame)
    model.metadata["train_topic_counts"] = dict(Counter(data.train["topic"].drop_nulls().to_list()))
    model.metadata["holdout_ticket_ids"] = data.test["ticket_id"].to_list()


# What a model's behaviour depends on besides its data and config: the training code.
CODE_FILES = (
    "core/labels.py",
    "ml/dataset.py",
    "ml/embed.py",
    "ml/features.py",
    "ml/pipeline.py",
    "ml/predict.py",
    "ml/splits.py",
    "ml/tiers.py",
    "ml/train.py",
)
FINGERPRINT_TAG = "data.training_fingerprint"


def training_fingerprint(version: dict[str, Any], config: TrainConfig) -> str:
    """sha256 over the data version, the training config and the training code: equal fingerprints
    train the same model, so a new version would add nothing."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    data = {k: v for k, v in version.items() if k != "training_fingerprint"}
    digest.update(json.dumps(data, sort_keys=True, default=str).encode())
    digest.update(json.dumps(config.as_params(), sort_keys=True, default=str).encode())
    for name in CODE_FILES:
        digest.update(name.encode())
        digest.update((package / name).read_bytes())
    return digest.hexdigest()


def data_version_of(
    data: TrainingData, config: TrainConfig, kb_chunk_ids: list[str] | None = None
) -> dict[str, Any]:
    """The data-version tags of a model trained on ``data`` with ``config``, fingerprint included
    (the KB's chunk ids too: the model carries the KB topic map learned from them)."""
    version = data_version(pl.concat([data.train, data.test], how="vertical_relaxed"), DBT_MANIFEST)
    version["embedding_model_id"] = data.embedding_model_id
    if kb_chunk_ids is not None:
        version["kb_chunks_sha256"] = hashlib.sha256("\n".join(sorted(kb_chunk_ids)).encode()).hexdigest()
    version["training_fingerprint"] = training_fingerprint(version, config)
    return version


def unchanged_champion(version: dict[str, Any], settings: Settings) -> str | None:
    """The champion's version number when it was trained on this very data, code and config."""
    from ticket_assets.ml.registry import configure_mlflow, version_info

    champion = get_alias_version(settings.model_name, CHAMPION, settings)
    if champion is None:
        return None
    info = version_info(configure_mlflow(settings), settings.model_name, champion)
    return champion if info.tags.get(FINGERPRINT_TAG) == version["training_fingerprint"] else None


def attach_kb_topic_map(model: TriageModel, data: TrainingData, chunks: list[Any], embedder: Any) -> None:
    """Learn which KB topic each topic label's training tickets retrieve (``rag.topic_map``) and
    store it with the model; every model label is mapped or explicitly None."""
    from ticket_assets.rag.index import embed_chunks
    from ticket_assets.rag.topic_map import learn_kb_topic_map, unmapped_labels

    labels = model.labels("topic")
    if not chunks or data.train_embeddings is None:
        model.metadata["kb_topic_map"] = {label: None for label in labels}
        return
    vectors = embed_chunks(chunks, embedder)
    train_topics = data.train["topic"].to_list()
    keep = [i for i, label in enumerate(train_topics) if label in set(labels)]
    preferences = learn_kb_topic_map(
        [train_topics[i] for i in keep], data.train_embeddings[keep], vectors, [c.topic for c in chunks]
    )
    topic_map = {label: preferences[label].kb_topic if label in preferences else None for label in labels}
    missing = unmapped_labels(labels, topic_map)
    if missing:  # cannot happen by construction; a silent gap would disable the preference
        raise ValueError(f"KB topic map misses model labels {missing}")
    model.metadata["kb_topic_map"] = topic_map
    model.metadata["kb_topic_shares"] = {label: p.share for label, p in preferences.items()}


def register(
    candidate: TrainedCandidate,
    data: TrainingData,
    settings: Settings,
    url: str,
    config: TrainConfig,
    version: dict[str, Any] | None = None,
    champion: ChampionScore | None = None,
) -> RegisteredVersion:
    """Log the run and register the version; ``champion`` (``score_champion``) is recorded with it
    for the gate."""
    version = version or data_version_of(data, config)
    reports: dict[str, Any] = {
        "training": candidate.outcome.as_dict(),
        "baseline": candidate.baseline,
        # The tier table (also inside the model, which serving reads).
        "tiers": {
            "config": candidate.outcome.model.metadata.get("tier_config", {}),
            "rows": candidate.outcome.model.metadata.get("tiers", []),
        },
    }
    if champion is not None:
        reports[CHAMPION_REPORT] = champion.as_dict()
    return log_training_run(
        candidate.outcome.model,
        candidate.evaluation.metrics,
        candidate.evaluation.figures,
        params={"train": config.as_params(), "chosen": candidate.outcome.model.metadata["chosen"]},
        data_version=version,
        settings=settings,
        reports=reports,
        db_url=url,
        datasets={"train": data.train, "holdout": data.test},
    )


# The run's report holding the champion scored on the run's holdout (``ChampionScore``).
CHAMPION_REPORT = "champion_on_holdout"
# Where the gate's figures came from (the check's metadata says which).
RECORDED = "recorded by training"
RESCORED = "re-scored on the current holdout"


@dataclass(frozen=True)
class ChampionScore:
    """The champion (None: there was none) scored on a challenger's holdout, or why it could not be."""

    version: str | None
    metrics: dict[str, Any] | None = None
    not_comparable: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChampionScore:
        version = raw.get("version")
        return cls(None if version is None else str(version), raw.get("metrics"), raw.get("not_comparable"))


def score_champion(data: TrainingData, champion_version: str | None, settings: Settings) -> ChampionScore:
    """Score ``champion_version`` on ``data``'s holdout (the challenger's)."""
    if champion_version is None:
        return ChampionScore(None)
    champion, _ = load_model_version(settings.model_name, champion_version, settings)
    if champion.needs_embeddings and champion.embedding_model_id != data.embedding_model_id:
        # Vectors from another embedding model would score the champion unfairly: a person decides.
        reason = (
            f"champion v{champion_version} uses {champion.embedding_model_id!r} embeddings, the holdout has "
            f"{data.embedding_model_id!r}: not comparable, promote manually if intended"
        )
        return ChampionScore(champion_version, not_comparable=reason)
    metrics = score_on_holdout(champion, data.test, data.test_embeddings, data.embedding_model_id)
    return ChampionScore(champion_version, metrics)


def judge(
    challenger_metrics: dict[str, Any],
    baseline: dict[str, Any],
    champion: ChampionScore,
    gate_config: GateConfig | None = None,
) -> GateDecision:
    """The gate on a challenger's holdout metrics against the champion's there (or the baseline)."""
    if champion.not_comparable:
        return GateDecision(False, [champion.not_comparable], {})
    return evaluate_gate(challenger_metrics, champion.metrics, baseline, gate_config)


def recorded_gate(
    challenger: ModelVersionInfo,
    champion_version: str | None,
    settings: Settings,
    gate_config: GateConfig | None = None,
) -> GateDecision | None:
    """The gate from what the challenger's training run recorded; None when the run did not score
    ``champion_version`` (the champion moved since, or the version was registered otherwise)."""
    metrics = load_run_document(challenger.run_id, "metrics/holdout.json", settings)
    baseline = load_run_document(challenger.run_id, "reports/baseline.json", settings)
    if metrics is None or baseline is None:
        return None
    if champion_version == challenger.version:
        # Training was skipped: the champion is judged on its own holdout, against the baseline.
        return evaluate_gate(metrics, None, baseline, gate_config)
    recorded = load_run_document(challenger.run_id, f"reports/{CHAMPION_REPORT}.json", settings)
    if recorded is None:
        return None
    champion = ChampionScore.from_dict(recorded)
    if champion.version != champion_version:
        return None
    return judge(metrics, baseline, champion, gate_config)


def rescored_gate(
    challenger: ModelVersionInfo,
    champion_version: str | None,
    settings: Settings,
    url: str,
    gate_config: GateConfig | None = None,
) -> GateDecision:
    """The gate with challenger and champion scored again on the current training set's holdout."""
    data = load_data(settings, url)
    model, _ = load_model_version(settings.model_name, challenger.version, settings)
    metrics = score_on_holdout(model, data.test, data.test_embeddings, data.embedding_model_id)
    baseline = majority_baseline_metrics(data.train, data.test, list(model.targets))
    if champion_version == challenger.version:
        return evaluate_gate(metrics, None, baseline, gate_config)
    return judge(metrics, baseline, score_champion(data, champion_version, settings), gate_config)


def gate_decision(
    challenger: ModelVersionInfo,
    champion_version: str | None,
    settings: Settings,
    url: str,
    gate_config: GateConfig | None = None,
) -> tuple[GateDecision, str]:
    """The gate on ``challenger`` against ``champion_version`` and where its figures came from:
    recorded by training when it scored that champion, otherwise scored again."""
    decision = recorded_gate(challenger, champion_version, settings, gate_config)
    if decision is not None:
        return decision, RECORDED
    return rescored_gate(challenger, champion_version, settings, url, gate_config), RESCORED
