"""Confidence tiers per target and class, set on held-out predictions.

For each class, among the held-out tickets *predicted* as that class, ordered by confidence: the
lowest confidence threshold at which the predictions at or above it reach ``auto_precision`` is the
class's ``auto`` threshold (act without a person), the lowest reaching ``suggest_precision`` its
``suggest`` threshold (an agent confirms a prefilled value); below both the tier is ``review``.
A threshold needs at least ``min_examples`` held-out predictions at or above it for ``auto``
(otherwise the class gets no auto tier), and one for ``suggest``. A threshold reaching the higher
precision also reaches the lower one, so ``suggest`` <= ``auto`` for every class: tiers are
monotone in confidence.

Tables are plain JSON rows (target, label, tier, threshold, precision, coverage, n), stored in the
model's metadata, so serving applies exactly the thresholds training measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

AUTO, SUGGEST, REVIEW = "auto", "suggest", "review"
TIERS = (AUTO, SUGGEST, REVIEW)


@dataclass(frozen=True)
class TierConfig:
    auto_precision: float = 0.95
    suggest_precision: float = 0.80
    min_examples: int = 20  # held-out predictions at or above a class's auto threshold

    def __post_init__(self) -> None:
        if not 0.0 < self.suggest_precision <= self.auto_precision <= 1.0:
            raise ValueError("need 0 < suggest_precision <= auto_precision <= 1")
        if self.min_examples < 1:
            raise ValueError("min_examples must be at least 1")


@dataclass(frozen=True)
class TierRow:
    target: str
    label: str
    tier: str  # auto or suggest
    threshold: float | None  # None: the class never reaches this tier
    precision: float | None  # held-out precision of the predictions at or above the threshold
    coverage: float  # share of the class's held-out predictions at or above the threshold
    n: int  # held-out predictions of the class (the denominator of coverage)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_tiers(
    target: str,
    labels: Sequence[str],
    y_true: Sequence[Any],
    probabilities: np.ndarray,
    config: TierConfig | None = None,
) -> list[dict[str, Any]]:
    """Tier rows of one target from held-out truth and probabilities (columns follow ``labels``)."""
    config = config or TierConfig()
    truth = np.asarray(list(y_true), dtype=object)
    if probabilities.shape != (len(truth), len(labels)):
        raise ValueError(f"{probabilities.shape} probabilities for {len(truth)} rows x {len(labels)} labels")
    predicted = probabilities.argmax(axis=1) if len(truth) else np.zeros(0, dtype=int)
    confidence = probabilities.max(axis=1) if len(truth) else np.zeros(0)
    rows: list[dict[str, Any]] = []
    for index, label in enumerate(labels):
        mine = predicted == index
        order = np.argsort(-confidence[mine], kind="stable")
        conf = confidence[mine][order]
        correct = (truth[mine][order] == label).astype(np.float64)
        for tier, precision, minimum in (
            (AUTO, config.auto_precision, config.min_examples),
            (SUGGEST, config.suggest_precision, 1),
        ):
            rows.append(_threshold_row(target, str(label), tier, conf, correct, precision, minimum))
    return rows


def _threshold_row(
    target: str,
    label: str,
    tier: str,
    conf: np.ndarray,
    correct: np.ndarray,
    precision: float,
    minimum: int,
) -> dict[str, Any]:
    n = len(conf)
    if n:
        counts = np.arange(1, n + 1)
        precisions = np.cumsum(correct) / counts
        # A threshold keeps every prediction with that confidence: only the last of equal values counts.
        last_of_ties = np.append(conf[1:] != conf[:-1], True)
        ok = np.flatnonzero(last_of_ties & (precisions >= precision - 1e-12) & (counts >= minimum))
        if ok.size:
            k = int(ok[-1])  # the most predictions, i.e. the lowest threshold
            return TierRow(
                target, label, tier, float(conf[k]), float(precisions[k]), (k + 1) / n, n
            ).as_dict()
    return TierRow(target, label, tier, None, None, 0.0, n).as_dict()


def thresholds(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """target -> class -> tier -> threshold, for the tiers a class reaches."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        if row["threshold"] is not None:
            out.setdefault(row["target"], {}).setdefault(row["label"], {})[row["tier"]] = row["threshold"]
    return out


def tier_of(class_thresholds: Mapping[str, float] | None, confidence: float) -> str:
    """The tier of one prediction given its class's thresholds (``thresholds()[target][label]``)."""
    if class_thresholds:
        if AUTO in class_thresholds and confidence >= class_thresholds[AUTO]:
            return AUTO
        if SUGGEST in class_thresholds and confidence >= class_thresholds[SUGGEST]:
            return SUGGEST
    return REVIEW


def needs_review(tiers: Iterable[str | None], out_of_scope: bool = False) -> bool:
    """A person must decide: some target is in ``review``, or the ticket is out of scope."""
    return out_of_scope or any(tier == REVIEW for tier in tiers)


def tier_summary(
    labels: Sequence[str],
    y_true: Sequence[Any],
    probabilities: np.ndarray,
    class_thresholds: Mapping[str, Mapping[str, float]],
) -> dict[str, Any]:
    """Share of tickets per tier and the precision within each (on whatever rows are given)."""
    truth = np.asarray(list(y_true), dtype=object)
    names = np.asarray(labels, dtype=object)
    predicted = names[probabilities.argmax(axis=1)] if len(truth) else np.zeros(0, dtype=object)
    confidence = probabilities.max(axis=1) if len(truth) else np.zeros(0)
    tiers = np.array(
        [tier_of(class_thresholds.get(str(p)), float(c)) for p, c in zip(predicted, confidence, strict=True)],
        dtype=object,
    )
    summary: dict[str, Any] = {"n": int(len(truth))}
    for tier in TIERS:
        mask = tiers == tier
        summary[f"{tier}_share"] = float(mask.mean()) if len(truth) else 0.0
        summary[f"{tier}_precision"] = float((predicted[mask] == truth[mask]).mean()) if mask.any() else None
    return summary
