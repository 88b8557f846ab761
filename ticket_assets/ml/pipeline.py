"""Training as small stages the Dagster training assets call one by one:
data -> train -> evaluate (+ majority baseline) -> register (alias ``challenger``) -> gate -> promote.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
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
    RegisteredVersion,
    get_alias_version,
    load_model_version,
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
) -> RegisteredVersion:
    version = version or data_version_of(data, config)
    return log_training_run(
        candidate.outcome.model,
        candidate.evaluation.metrics,
        candidate.evaluation.figures,
        params={"train": config.as_params(), "chosen": candidate.outcome.model.metadata["chosen"]},
        data_version=version,
        settings=settings,
        reports={
            "training": candidate.outcome.as_dict(),
            "baseline": candidate.baseline,
            # The tier table (also inside the model, which serving reads).
            "tiers": {
                "config": candidate.outcome.model.metadata.get("tier_config", {}),
                "rows": candidate.outcome.model.metadata.get("tiers", []),
            },
        },
        db_url=url,
        datasets={"train": data.train, "holdout": data.test},
    )


def gate_against_champion(
    challenger_metrics: dict[str, Any],
    baseline: dict[str, Any],
    data: TrainingData,
    settings: Settings,
    gate_config: GateConfig | None = None,
) -> tuple[GateDecision, str | None]:
    """Re-score the current champion on the challenger's holdout and apply the gate."""
    champion_version = get_alias_version(settings.model_name, CHAMPION, settings)
    if champion_version is None:
        return evaluate_gate(challenger_metrics, None, baseline, gate_config), None
    champion, _ = load_model_version(settings.model_name, champion_version, settings)
    if champion.needs_embeddings and champion.embedding_model_id != data.embedding_model_id:
        # Vectors from another embedding model would score the champion unfairly: a person decides.
        reason = (
            f"champion v{champion_version} uses {champion.embedding_model_id!r} embeddings, the holdout has "
            f"{data.embedding_model_id!r}: not comparable, promote manually if intended"
        )
        return GateDecision(False, [reason], {}), champion_version
    champion_metrics = score_on_holdout(champion, data.test, data.test_embeddings, data.embedding_model_id)
    return evaluate_gate(challenger_metrics, champion_metrics, baseline, gate_config), champion_version
