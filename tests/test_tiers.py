"""Confidence tiers on a really trained model: thresholds set on held-out predictions."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.ml import trained
from ticket_assets.ml.pipeline import attach_tiers
from ticket_assets.ml.tiers import (
    AUTO,
    REVIEW,
    SUGGEST,
    TierConfig,
    fit_tiers,
    needs_review,
    thresholds,
    tier_of,
    tier_summary,
)
from ticket_assets.ml.train import TrainConfig

CONFIG = TierConfig(auto_precision=0.95, suggest_precision=0.80, min_examples=5)


@pytest.fixture(scope="module")
def held_out():
    world = trained()
    data = world.corpus
    model = world.outcome.model
    probabilities = model.predict_proba(
        data.test["text"].to_list(), data.test_embeddings, data.embedding_model_id
    )
    return model, data.test, probabilities


def _class_rows(probabilities: np.ndarray, labels: list[str], truth: list[str], label: str):
    index = labels.index(label)
    mine = probabilities.argmax(axis=1) == index
    return probabilities.max(axis=1)[mine], np.asarray(truth, dtype=object)[mine] == label


@pytest.mark.parametrize("target", ["topic", "urgency"])
def test_auto_threshold_is_the_lowest_reaching_the_target_precision(held_out, target: str) -> None:
    model, holdout, probabilities = held_out
    labels, truth = model.labels(target), holdout[target].to_list()
    rows = fit_tiers(target, labels, truth, probabilities[target], CONFIG)
    assert {(r["label"], r["tier"]) for r in rows} == {
        (label, t) for label in labels for t in (AUTO, SUGGEST)
    }
    for row in rows:
        confidence, correct = _class_rows(probabilities[target], labels, truth, row["label"])
        assert row["n"] == len(confidence)
        goal = CONFIG.auto_precision if row["tier"] == AUTO else CONFIG.suggest_precision
        minimum = CONFIG.min_examples if row["tier"] == AUTO else 1
        candidates = sorted(set(confidence.tolist()))
        reaching = [
            t
            for t in candidates
            if (confidence >= t).sum() >= minimum and correct[confidence >= t].mean() >= goal - 1e-12
        ]
        if not reaching:
            assert row["threshold"] is None and row["coverage"] == 0.0
            continue
        assert row["threshold"] == pytest.approx(min(reaching))
        kept = confidence >= row["threshold"]
        assert row["precision"] == pytest.approx(correct[kept].mean()) and row["precision"] >= goal
        assert row["coverage"] == pytest.approx(kept.mean())


@pytest.mark.parametrize("target", ["topic", "urgency"])
def test_tiers_are_monotone_in_confidence(held_out, target: str) -> None:
    model, holdout, probabilities = held_out
    table = thresholds(
        fit_tiers(target, model.labels(target), holdout[target].to_list(), probabilities[target], CONFIG)
    )
    rank = {REVIEW: 0, SUGGEST: 1, AUTO: 2}
    for label in model.labels(target):
        by_tier = table.get(target, {}).get(label, {})
        if AUTO in by_tier:
            assert SUGGEST in by_tier and by_tier[SUGGEST] <= by_tier[AUTO]
        grid = np.linspace(0.0, 1.0, 101)
        ranks = [rank[tier_of(by_tier, float(c))] for c in grid]
        assert ranks == sorted(ranks)


def test_auto_tier_precision_on_the_holdout_meets_the_target(held_out) -> None:
    """The production path (attach_tiers): every auto prediction of the holdout is right at least
    95 % of the time, per target; the urgency model is imperfect, so some tickets are not auto."""
    model, holdout, probabilities = held_out
    metrics: dict = {"topic": {}, "urgency": {}}
    rows = attach_tiers(
        model, holdout, probabilities, metrics, TrainConfig(tier_min_examples=CONFIG.min_examples)
    )
    assert model.metadata["tiers"] == rows and model.tier_thresholds() == thresholds(rows)
    for target in ("topic", "urgency"):
        summary = metrics[target]["tiers"]
        assert summary["n"] == holdout.height
        assert summary["auto_share"] + summary["suggest_share"] + summary["review_share"] == pytest.approx(
            1.0
        )
        if summary["auto_share"] > 0:
            assert summary["auto_precision"] >= 0.95
    assert metrics["topic"]["tiers"]["auto_share"] > 0.5  # synthetic topics are easy
    urgency = metrics["urgency"]["tiers"]
    assert urgency["auto_share"] < 1.0
    recomputed = tier_summary(
        model.labels("urgency"),
        holdout["urgency"].to_list(),
        probabilities["urgency"],
        thresholds(rows)["urgency"],
    )
    assert recomputed == urgency


def test_a_class_with_too_few_held_out_predictions_gets_no_auto_tier() -> None:
    labels = ["a", "b"]
    # 30 confident, correct "a" predictions; 4 confident, correct "b" predictions.
    probabilities = np.array([[0.99, 0.01]] * 30 + [[0.02, 0.98]] * 4)
    truth = ["a"] * 30 + ["b"] * 4
    table = thresholds(fit_tiers("queue", labels, truth, probabilities, TierConfig(min_examples=10)))
    assert table["queue"]["a"] == {AUTO: 0.99, SUGGEST: 0.99}
    assert table["queue"]["b"] == {SUGGEST: 0.98}  # precise, but too few examples to act alone
    assert tier_of(table["queue"]["b"], 0.999) == SUGGEST


def test_needs_review_when_any_target_is_in_review_or_out_of_scope() -> None:
    assert not needs_review([AUTO, SUGGEST, None])
    assert needs_review([AUTO, REVIEW])
    assert needs_review([AUTO, AUTO], out_of_scope=True)


def test_tier_config_rejects_a_suggest_target_above_auto() -> None:
    with pytest.raises(ValueError, match="suggest_precision"):
        TierConfig(auto_precision=0.8, suggest_precision=0.9)
