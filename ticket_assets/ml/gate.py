"""Promotion gate: may a challenger replace the champion?

``evaluate_gate`` is a pure function of metric dicts (the layout of ``evaluate.evaluate_model``).
Champion and challenger must be scored on the *same* holdout — the challenger's, which is the most
recent data — so ``score_on_holdout`` re-scores the champion there before the comparison.

Rules, per target the challenger has (topic, urgency):
- with a champion: macro-F1 may not drop by more than ``max_macro_f1_drop``; the most urgent
  class's recall may not drop by more than ``max_most_urgent_recall_drop``; no class's recall may
  drop by more than ``max_class_recall_drop``; a target the champion had may not disappear;
- without a champion: macro-F1 must beat the majority-class baseline by ``min_gain_over_baseline``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ticket_assets.ml.evaluate import evaluate_model
from ticket_assets.ml.predict import TriageModel

GATED_TARGETS = ("topic", "urgency")


@dataclass(frozen=True)
class GateConfig:
    max_macro_f1_drop: float = 0.01
    max_most_urgent_recall_drop: float = 0.0
    max_class_recall_drop: float = 0.05
    min_gain_over_baseline: float = 0.10
    # Per-class recall on fewer holdout rows than this is too noisy to veto a model.
    min_class_support: int = 10


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]
    comparisons: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_on_holdout(
    model: TriageModel,
    holdout: pl.DataFrame,
    embeddings: np.ndarray | None,
    embedding_model_id: str | None = None,
) -> dict[str, Any]:
    """Metrics of any model (e.g. the current champion) on a given holdout, without figures."""
    return evaluate_model(model, holdout, embeddings, embedding_model_id, with_figures=False).metrics


def evaluate_gate(
    challenger_metrics: dict[str, Any],
    champion_metrics: dict[str, Any] | None,
    baseline_metrics: dict[str, Any],
    config: GateConfig | None = None,
) -> GateDecision:
    config = config or GateConfig()
    failures: list[str] = []
    notes: list[str] = []
    comparisons: dict[str, Any] = {}
    targets = [t for t in GATED_TARGETS if t in challenger_metrics]
    if "topic" not in targets:
        return GateDecision(False, ["challenger has no topic metrics"], {})
    for target in targets:
        challenger = challenger_metrics[target]
        champion = (champion_metrics or {}).get(target)
        if champion is None:
            comparisons[target] = _against_baseline(
                target, challenger, baseline_metrics.get(target), config, failures, notes
            )
        else:
            comparisons[target] = _against_champion(target, challenger, champion, config, failures, notes)
    for target in GATED_TARGETS:
        if champion_metrics and target in champion_metrics and target not in challenger_metrics:
            failures.append(f"{target}: the champion predicts it, the challenger does not")
    return GateDecision(passed=not failures, reasons=failures or notes, comparisons=comparisons)


def _against_baseline(
    target: str,
    challenger: dict[str, Any],
    baseline: dict[str, Any] | None,
    config: GateConfig,
    failures: list[str],
    notes: list[str],
) -> dict[str, Any]:
    baseline_f1 = baseline["macro_f1"] if baseline else 0.0
    required = baseline_f1 + config.min_gain_over_baseline
    gain = challenger["macro_f1"] - baseline_f1
    message = (
        f"{target}: macro-F1 {challenger['macro_f1']:.4f} vs majority baseline {baseline_f1:.4f} "
        f"(gain {gain:+.4f}, required {config.min_gain_over_baseline:+.4f})"
    )
    (notes if challenger["macro_f1"] >= required else failures).append(message)
    return {
        "against": "baseline",
        "challenger_macro_f1": challenger["macro_f1"],
        "baseline_macro_f1": baseline_f1,
        "gain": gain,
    }


def _against_champion(
    target: str,
    challenger: dict[str, Any],
    champion: dict[str, Any],
    config: GateConfig,
    failures: list[str],
    notes: list[str],
) -> dict[str, Any]:
    f1_delta = challenger["macro_f1"] - champion["macro_f1"]
    message = f"{target}: macro-F1 {challenger['macro_f1']:.4f} vs champion {champion['macro_f1']:.4f} ({f1_delta:+.4f})"
    (failures if f1_delta < -config.max_macro_f1_drop else notes).append(message)
    comparison: dict[str, Any] = {
        "against": "champion",
        "challenger_macro_f1": challenger["macro_f1"],
        "champion_macro_f1": champion["macro_f1"],
        "macro_f1_delta": f1_delta,
    }

    if "most_urgent_class" in challenger:
        label = challenger["most_urgent_class"]
        before = _recall(champion, label)
        after = challenger["most_urgent_recall"]
        delta = after - before
        message = f"{target}: recall of most urgent class {label!r} {after:.4f} vs champion {before:.4f} ({delta:+.4f})"
        (failures if delta < -config.max_most_urgent_recall_drop - 1e-12 else notes).append(message)
        comparison["most_urgent"] = {"class": label, "challenger": after, "champion": before, "delta": delta}

    recall_deltas: dict[str, float] = {}
    for label, stats in challenger["per_class"].items():
        if label not in champion["per_class"] or stats["support"] < config.min_class_support:
            continue
        delta = stats["recall"] - champion["per_class"][label]["recall"]
        recall_deltas[label] = delta
        if delta < -config.max_class_recall_drop:
            failures.append(
                f"{target}: recall of {label!r} fell {champion['per_class'][label]['recall']:.4f} -> "
                f"{stats['recall']:.4f} ({delta:+.4f}, allowed -{config.max_class_recall_drop:.4f})"
            )
    comparison["class_recall_deltas"] = recall_deltas
    return comparison


def _recall(metrics: dict[str, Any], label: str) -> float:
    return float(metrics["per_class"].get(label, {}).get("recall", 0.0))
