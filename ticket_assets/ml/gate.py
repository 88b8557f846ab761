"""Promotion gate: may a challenger replace the champion?

``evaluate_gate`` is a pure function of metric dicts (the layout of ``evaluate.evaluate_model``).
Champion and challenger must be scored on the *same* holdout — the challenger's, which is the most
recent data — so ``score_on_holdout`` scores the champion there too (during training, which has
that holdout at hand: ``pipeline.score_champion``).

Rules, per target the challenger has (topic, urgency, each routing target):
- with a champion: macro-F1 may not drop by more than ``max_macro_f1_drop``; the most urgent
  class's recall may not drop by more than ``max_most_urgent_recall_drop``; no class's recall may
  drop by more than ``max_class_recall_drop``; a target the champion had may not disappear.
  Each allowed drop is widened to the holdout's sampling noise when that is larger (``noise_z``),
  so a small holdout cannot veto a model on a chance dip, while a real regression still fails;
- without a champion: macro-F1 must beat the majority-class baseline by ``min_gain_over_baseline``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a model is scored: the asset graph declares GateConfig without them
    import numpy as np
    import polars as pl

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
    # A drop is only held against the challenger when it exceeds both the margin above and the
    # holdout's sampling noise: z x the standard error of the difference of two proportions,
    # sqrt(2 p (1 - p) / n). One-sided 95 % by default; 0 turns the noise allowance off. On large
    # holdouts the configured margins bind; on small ones a 1-point dip is not evidence.
    noise_z: float = 1.645


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]
    comparisons: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# MLflow caps a model version tag value at 5000 characters.
_TAG_LIMIT = 5000


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision about one challenger, as stored on its model version (one JSON tag)."""

    passed: bool
    challenger_version: str
    champion_version: str | None
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)

    def to_json(self) -> str:
        reasons = list(self.reasons)
        while True:
            text = json.dumps({**asdict(self), "reasons": reasons}, sort_keys=True)
            if len(text) <= _TAG_LIMIT or not reasons:
                return text
            reasons = reasons[:-1] if len(reasons) > 1 else [reasons[0][: _TAG_LIMIT // 2]]

    @classmethod
    def from_json(cls, text: str | None) -> GateVerdict | None:
        """The stored verdict, or None when there is none or it is unreadable."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(
                passed=raw["passed"] is True,
                challenger_version=str(raw["challenger_version"]),
                champion_version=None
                if raw.get("champion_version") is None
                else str(raw["champion_version"]),
                reasons=[str(reason) for reason in raw.get("reasons", [])],
            )
        except (ValueError, KeyError, TypeError):
            return None


def score_on_holdout(
    model: TriageModel,
    holdout: pl.DataFrame,
    embeddings: np.ndarray | None,
    embedding_model_id: str | None = None,
) -> dict[str, Any]:
    """Metrics of any model (e.g. the current champion) on a given holdout, without figures."""
    from ticket_assets.ml.evaluate import evaluate_model

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
    targets = gated_targets(challenger_metrics)
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
    for target in gated_targets(champion_metrics or {}):
        if target not in challenger_metrics:
            failures.append(f"{target}: the champion predicts it, the challenger does not")
    return GateDecision(passed=not failures, reasons=failures or notes, comparisons=comparisons)


def gated_targets(metrics: dict[str, Any]) -> list[str]:
    """topic, urgency, then every routing target the metrics have (each a dict with a macro-F1)."""
    routing = sorted(
        t for t, m in metrics.items() if t not in GATED_TARGETS and isinstance(m, dict) and "macro_f1" in m
    )
    return [t for t in GATED_TARGETS if t in metrics] + routing


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


def noise_allowance(value: float, n: int, z: float) -> float:
    """z x standard error of the difference of two proportions of size ``n`` around ``value``."""
    if z <= 0 or n <= 0:
        return 0.0
    value = min(max(value, 0.0), 1.0)
    return z * math.sqrt(2.0 * value * (1.0 - value) / n)


def _against_champion(
    target: str,
    challenger: dict[str, Any],
    champion: dict[str, Any],
    config: GateConfig,
    failures: list[str],
    notes: list[str],
) -> dict[str, Any]:
    f1_delta = challenger["macro_f1"] - champion["macro_f1"]
    n_holdout = int(challenger.get("n", 0))
    f1_allowed = max(
        config.max_macro_f1_drop, noise_allowance(champion["macro_f1"], n_holdout, config.noise_z)
    )
    message = (
        f"{target}: macro-F1 {challenger['macro_f1']:.4f} vs champion {champion['macro_f1']:.4f} "
        f"({f1_delta:+.4f}, allowed -{f1_allowed:.4f} on {n_holdout} holdout tickets)"
    )
    (failures if f1_delta < -f1_allowed else notes).append(message)
    comparison: dict[str, Any] = {
        "against": "champion",
        "challenger_macro_f1": challenger["macro_f1"],
        "champion_macro_f1": champion["macro_f1"],
        "macro_f1_delta": f1_delta,
        "macro_f1_allowed_drop": f1_allowed,
    }

    if "most_urgent_class" in challenger:
        label = challenger["most_urgent_class"]
        before = _recall(champion, label)
        after = challenger["most_urgent_recall"]
        delta = after - before
        support = int(challenger["per_class"].get(label, {}).get("support", 0))
        allowed = max(config.max_most_urgent_recall_drop, noise_allowance(before, support, config.noise_z))
        message = (
            f"{target}: recall of most urgent class {label!r} {after:.4f} vs champion {before:.4f} "
            f"({delta:+.4f}, allowed -{allowed:.4f} on {support} tickets)"
        )
        (failures if delta < -allowed - 1e-12 else notes).append(message)
        comparison["most_urgent"] = {
            "class": label,
            "challenger": after,
            "champion": before,
            "delta": delta,
            "allowed_drop": allowed,
        }

    recall_deltas: dict[str, float] = {}
    for label, stats in challenger["per_class"].items():
        if label not in champion["per_class"] or stats["support"] < config.min_class_support:
            continue
        before = champion["per_class"][label]["recall"]
        delta = stats["recall"] - before
        recall_deltas[label] = delta
        # A recall seen at 1.0 on a few tickets is not known to be exactly 1.0 (its plain standard
        # error would be 0, so one ticket's change would veto): the noise is taken at the
        # add-one estimate. The most urgent class keeps the strict rule above.
        support = stats["support"]
        smoothed = (before * support + 1.0) / (support + 2.0)
        allowed = max(config.max_class_recall_drop, noise_allowance(smoothed, support, config.noise_z))
        if delta < -allowed:
            failures.append(
                f"{target}: recall of {label!r} fell {before:.4f} -> "
                f"{stats['recall']:.4f} ({delta:+.4f}, allowed -{allowed:.4f} on {stats['support']} tickets)"
            )
    comparison["class_recall_deltas"] = recall_deltas
    return comparison


def _recall(metrics: dict[str, Any], label: str) -> float:
    return float(metrics["per_class"].get(label, {}).get("recall", 0.0))
