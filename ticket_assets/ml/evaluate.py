"""Holdout evaluation: plain, JSON-serialisable metric dicts plus confusion-matrix PNGs.

Metric layout (per target, ``topic`` and ``urgency`` when the model has one)::

    {"n_holdout": int,
     "topic": {"n", "accuracy", "macro_f1", "weighted_f1", "ece", "brier", "labels",
               "per_class": {label: {"precision", "recall", "f1", "support"}},
               "confusion_matrix": [[int]], "reliability": [{"lower", "upper", "n", "confidence", "accuracy"}],
               "slices": {"language" | "text_length" | "channel": {value: {"n", "accuracy", "macro_f1"}}}},
     "urgency": {... same ..., "most_urgent_class", "most_urgent_recall"}}
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from ticket_assets.core.labels import match_labels, normalize_label, normalize_urgency
from ticket_assets.ml.features import length_buckets, most_urgent_label
from ticket_assets.ml.predict import TriageModel
from ticket_assets.settings import Settings

Progress = Callable[[int, int], None]

SLICE_COLUMNS = ("language", "channel")
# Slices smaller than this are reported by size only: their F1 would be noise.
MIN_SLICE_SUPPORT = 20
ECE_BINS = 10


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes


def evaluate_model(
    model: TriageModel,
    holdout: pl.DataFrame,
    embeddings: np.ndarray | None,
    embedding_model_id: str | None = None,
    with_figures: bool = True,
    probabilities: dict[str, np.ndarray] | None = None,
) -> Evaluation:
    """Score ``model`` on ``holdout`` (``text``, label keys, optional slice columns);
    ``probabilities`` when the caller already predicted them."""
    if probabilities is None:
        probabilities = model.predict_proba(holdout["text"].to_list(), embeddings, embedding_model_id)
    metrics: dict[str, Any] = {"n_holdout": holdout.height}
    figures: dict[str, bytes] = {}
    slices = slice_columns(holdout)
    for target, proba in probabilities.items():
        if target not in holdout.columns:
            continue
        labelled = np.array([label is not None for label in holdout[target].to_list()])
        if not labelled.any():
            continue
        target_model = model.targets[target]
        y_true = np.array(holdout[target].to_list(), dtype=object)[labelled]
        target_metrics = classification_metrics(
            y_true,
            proba[labelled],
            target_model.labels,
            most_urgent=target_model.most_urgent if target == "urgency" else None,
        )
        rare = model.metadata.get("rare_labels", {}).get(target)
        if rare is not None:
            target_metrics |= rare_class_metrics(target_metrics, set(rare))
        y_pred = np.array(target_model.labels, dtype=object)[proba[labelled].argmax(axis=1)]
        target_metrics["slices"] = {
            name: slice_metrics(y_true, y_pred, np.array(values, dtype=object)[labelled])
            for name, values in slices.items()
        }
        metrics[target] = target_metrics
        if with_figures:
            figures[f"confusion_matrix_{target}.png"] = confusion_matrix_png(
                target_metrics["confusion_matrix"], target_metrics["labels"], f"{target} (holdout)"
            )
    return Evaluation(metrics=metrics, figures=figures)


class LabelMismatchError(ValueError):
    """None of a file's labels is one the model knows."""


def rare_class_metrics(target_metrics: dict[str, Any], rare: set[str]) -> dict[str, Any]:
    """Macro-F1 of the rare classes (learned from few examples) and of the others, reported apart so
    a long tail's weakness is not averaged away. Only classes with holdout rows count."""
    present = {label: v for label, v in target_metrics["per_class"].items() if v["support"] > 0}
    rare_f1 = [v["f1"] for label, v in present.items() if label in rare]
    frequent_f1 = [v["f1"] for label, v in present.items() if label not in rare]
    return {
        "rare_classes": sorted(rare),
        "rare_macro_f1": float(np.mean(rare_f1)) if rare_f1 else None,
        "frequent_macro_f1": float(np.mean(frequent_f1)) if frequent_f1 else None,
    }


def evaluate_file(
    settings: Settings,
    path: Path,
    *,
    text_col: str,
    topic_col: str,
    urgency_col: str | None = None,
    alias: str = "champion",
    progress: Callable[[str], Progress] | None = None,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Score a labelled CSV (plain or gzip) with a registered model (alias or version number).

    The file's labels go through the label contract (``normalize_label`` / ``normalize_urgency``)
    so 'HR Support' meets the model's ``hr_support``; labels the model has no class for are listed
    under ``label_mapping`` (and count as errors), and a file none of whose topics the model knows
    fails with ``LabelMismatchError``. ``progress(step)`` returns a (done, total) callback per step.
    """
    from ticket_assets.ml.registry import load_model_version

    if not Path(path).exists():
        raise FileNotFoundError(path)
    frame = pl.read_csv(path, infer_schema_length=0)  # every column as text: labels stay labels
    columns = {"text": text_col, "topic": topic_col} | ({"urgency": urgency_col} if urgency_col else {})
    missing = [column for column in columns.values() if column not in frame.columns]
    if missing:
        raise KeyError(f"columns not in {path}: {missing} (has {frame.columns})")
    holdout = frame.select(pl.col(source).alias(name) for name, source in columns.items()).filter(
        pl.col("text").is_not_null() & pl.col("topic").is_not_null()
    )
    if holdout.is_empty():
        raise ValueError(f"{path} has no rows with both text and topic")
    model, info = load_model_version(settings.model_name, alias, settings)
    mapping: dict[str, Any] = {}
    for target, normalise in (("topic", normalize_label), ("urgency", normalize_urgency)):
        if target not in holdout.columns or target not in model.targets:
            continue
        match = match_labels(holdout[target].to_list(), model.labels(target), normalise)
        if target == "topic" and match.matched_rows == 0:
            shown = ", ".join(list(match.unmapped)[:8])
            raise LabelMismatchError(
                f"none of the {holdout.height} topics in {path.name} ({shown}) is a label of "
                f"{info.name} v{info.version} ({', '.join(model.topic_names.name(k) for k in model.labels('topic'))})"
            )
        holdout = holdout.with_columns(pl.Series(target, match.keys, dtype=pl.String))
        mapping[target] = {"matched_rows": match.matched_rows, "unmapped": match.unmapped}
    texts = holdout["text"].to_list()
    embeddings, embedding_model_id = None, None
    if model.needs_embeddings:
        from ticket_assets.ml.embed import get_embedder

        embedder = get_embedder(settings)
        embeddings = embedder.encode(
            texts,
            batch_size=settings.embed_batch_size,
            progress=progress("embedding") if progress else None,
        )
        embedding_model_id = embedder.model_id
    probabilities = predict_in_batches(
        model, texts, embeddings, embedding_model_id, batch_size, progress("predicting") if progress else None
    )
    metrics = evaluate_model(
        model, holdout, embeddings, embedding_model_id, with_figures=False, probabilities=probabilities
    ).metrics
    return {
        "model": {"name": info.name, "version": info.version},
        "file": str(path),
        "label_mapping": mapping,
        "display_names": model.topic_names.as_dict(),
        **metrics,
    }


def predict_in_batches(
    model: TriageModel,
    texts: Sequence[str],
    embeddings: np.ndarray | None,
    embedding_model_id: str | None,
    batch_size: int,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """``model.predict_proba`` in slices, reporting (done, total) after each."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(texts), batch_size):
        stop = min(start + batch_size, len(texts))
        chunk = model.predict_proba(
            texts[start:stop], None if embeddings is None else embeddings[start:stop], embedding_model_id
        )
        for target, proba in chunk.items():
            parts.setdefault(target, []).append(proba)
        if progress is not None:
            progress(stop, len(texts))
    return {target: np.vstack(chunks) for target, chunks in parts.items()}


def slice_columns(holdout: pl.DataFrame) -> dict[str, list[Any]]:
    """Slice name -> one value per row: language, text-length bucket, and channel when present."""
    slices: dict[str, list[Any]] = {}
    for column in SLICE_COLUMNS:
        if column in holdout.columns and holdout[column].null_count() < holdout.height:
            slices[column] = holdout[column].fill_null("unknown").to_list()
    slices["text_length"] = length_buckets(holdout["text"].to_list())
    return slices


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, model_labels: Sequence[str], most_urgent: str | None = None
) -> dict[str, Any]:
    """Metrics of one target; ``probabilities`` columns follow ``model_labels``.

    Holdout labels the model never saw are included (their recall is 0), so a new class in the
    data shows up as a weakness rather than disappearing from the report.
    """
    model_labels = list(model_labels)
    y_pred = np.array(model_labels, dtype=object)[probabilities.argmax(axis=1)]
    labels = sorted(set(model_labels) | set(y_true.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    present = [i for i, label in enumerate(labels) if label in set(y_true.tolist())]
    confidence = probabilities.max(axis=1)
    correct = y_pred == y_true
    metrics: dict[str, Any] = {
        "n": len(y_true),
        "accuracy": float(correct.mean()),
        # Macro over the classes present in the holdout: a class with no test rows has no recall.
        "macro_f1": float(np.mean(f1[present])),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "ece": expected_calibration_error(confidence, correct),
        "brier": brier_score(probabilities, y_true, model_labels),
        "labels": labels,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "reliability": reliability_table(confidence, correct),
    }
    if most_urgent is not None:
        metrics["most_urgent_class"] = most_urgent
        metrics["most_urgent_recall"] = metrics["per_class"].get(most_urgent, {}).get("recall", 0.0)
    return metrics


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: size-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if len(confidence) == 0:
        return 0.0
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def reliability_table(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> list[dict[str, float]]:
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    return [
        {
            "lower": b / n_bins,
            "upper": (b + 1) / n_bins,
            "n": int((bins == b).sum()),
            "confidence": float(confidence[bins == b].mean()),
            "accuracy": float(correct[bins == b].mean()),
        }
        for b in np.unique(bins)
    ]


def brier_score(probabilities: np.ndarray, y_true: np.ndarray, model_labels: Sequence[str]) -> float:
    """Multi-class Brier score: mean over rows of the squared distance to the one-hot truth."""
    if len(y_true) == 0:
        return 0.0
    index = {label: i for i, label in enumerate(model_labels)}
    one_hot = np.zeros_like(probabilities)
    rows = [(r, index[label]) for r, label in enumerate(y_true.tolist()) if label in index]
    if rows:
        r, c = zip(*rows, strict=True)
        one_hot[list(r), list(c)] = 1.0
    # A label unknown to the model contributes its full missing mass (1) to the distance.
    unknown = np.array([label not in index for label in y_true.tolist()], dtype=float)
    return float(np.mean(((probabilities - one_hot) ** 2).sum(axis=1) + unknown))


def slice_metrics(y_true: np.ndarray, y_pred: np.ndarray, values: np.ndarray) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for value in sorted({str(v) for v in values.tolist()}):
        rows = np.array([str(v) == value for v in values.tolist()])
        entry: dict[str, Any] = {"n": int(rows.sum())}
        if rows.sum() >= MIN_SLICE_SUPPORT:
            entry["accuracy"] = float((y_true[rows] == y_pred[rows]).mean())
            entry["macro_f1"] = float(f1_score(y_true[rows], y_pred[rows], average="macro", zero_division=0))
        result[value] = entry
    return result


def majority_baseline_metrics(
    train: pl.DataFrame, holdout: pl.DataFrame, targets: Sequence[str] = ("topic", "urgency")
) -> dict[str, Any]:
    """What always predicting the most frequent training label scores on the holdout."""
    result: dict[str, Any] = {}
    for target in targets:
        if target not in train.columns or target not in holdout.columns:
            continue
        train_labels = train[target].drop_nulls().to_list()
        y_true = np.array(holdout[target].drop_nulls().to_list(), dtype=object)
        if not train_labels or len(y_true) == 0:
            continue
        counts = Counter(train_labels)
        majority = min(counts, key=lambda label: (-counts[label], label))
        labels = sorted(counts)
        probabilities = np.zeros((len(y_true), len(labels)))
        probabilities[:, labels.index(majority)] = 1.0
        metrics = classification_metrics(
            y_true,
            probabilities,
            labels,
            most_urgent=most_urgent_label(labels, counts) if target == "urgency" else None,
        )
        result[target] = {key: metrics[key] for key in ("n", "accuracy", "macro_f1", "per_class")} | {
            "majority_class": majority,
            **({"most_urgent_recall": metrics["most_urgent_recall"]} if target == "urgency" else {}),
        }
    return result


def confusion_matrix_png(matrix: list[list[int]], labels: Sequence[str], title: str) -> bytes:
    """Row-normalised heat map with raw counts written in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=float)
    row_totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    size = max(4.0, 0.6 * len(labels) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    try:
        image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels=labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if counts[i, j]:
                    colour = "white" if normalised[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=colour, fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()
    finally:
        plt.close(fig)
