"""Pure parts of the classifier: features, label conventions, metrics and the promotion gate."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from ticket_assets.ml.evaluate import (
    brier_score,
    classification_metrics,
    confusion_matrix_png,
    expected_calibration_error,
)
from ticket_assets.ml.features import TextFeatures, length_bucket, most_urgent_label
from ticket_assets.ml.gate import GateConfig, evaluate_gate

TEXTS = [
    "VPN disconnects every few minutes when working from home",
    "Printer on the third floor prints grey streaks",
    "Need admin rights to install the Python toolchain",
    "Password expired, cannot log in to Outlook",
    "vpn keeps dropping, remote work impossible",
    "printer jam again on floor 3",
    "please grant local administrator rights",
    "reset my password please, locked out",
    "Ordinateur portable ne démarre plus après la mise à jour",
]


# Features ------------------------------------------------------------------------------------------
def test_fast_transform_matches_scikit_learn() -> None:
    features = TextFeatures(min_df=1, max_features=None)
    fitted = features.fit_transform(TEXTS[:6])
    unseen = TEXTS[6:] + ["", "completely unrelated words zzz"]
    reference = sp.hstack([v.transform(unseen) for v in features.vectorizers], format="csr")
    fast = features.transform(unseen)
    assert fast.shape == reference.shape == (len(unseen), features.n_features)
    assert abs(fast - reference).max() < 1e-6
    # Rows are l2-normalised per analyzer (word and char each contribute a unit vector).
    norms = np.sqrt(np.asarray(fitted.multiply(fitted).sum(axis=1))).ravel()
    assert np.allclose(norms, np.sqrt(2), atol=1e-5)


def test_fit_on_a_sample_then_transform_many_in_processes_matches_transform() -> None:
    features = TextFeatures(min_df=1).fit(TEXTS[:6])
    many = features.transform_many(TEXTS * 3, n_jobs=2, chunk=7)
    assert many.shape == (len(TEXTS) * 3, features.n_features)
    assert abs(many - features.transform(TEXTS * 3)).max() == 0
    # Fitting on the sample gives scikit-learn's vocabulary of that sample.
    reference = sp.hstack([v.transform(TEXTS) for v in features.vectorizers], format="csr")
    assert abs(features.transform(TEXTS) - reference).max() < 1e-6


def test_capped_samples_keep_at_most_the_cap_per_class_and_the_long_tail() -> None:
    from ticket_assets.ml.predict import EmbeddingKNN, per_class_sample
    from ticket_assets.ml.train import stratified_sample

    y = np.array(["a"] * 500 + ["b"] * 40 + ["c"] * 2, dtype=object)
    kept = per_class_sample(y, 30, seed=1)
    assert Counter(y[kept].tolist()) == {"a": 30, "b": 30, "c": 2}
    assert len(per_class_sample(y, None, seed=1)) == len(y)
    sample = stratified_sample(y, 100, seed=1, floor=10)
    counts = Counter(y[sample].tolist())
    assert counts["a"] == round(500 * 100 / len(y)) and counts["b"] == 10 and counts["c"] == 2
    assert len(stratified_sample(y, 1000, seed=1)) == len(y)

    vectors = np.random.default_rng(0).normal(size=(len(y), 8)).astype(np.float32)
    knn = EmbeddingKNN(n_neighbors=5, max_per_class=30).fit(vectors, y)
    assert len(knn.reference_) == 62 and list(knn.classes_) == ["a", "b", "c"]
    assert np.array_equal(knn.reference_, vectors[knn.kept_])
    assert np.array_equal(knn.classes_[knn.label_index_], y[knn.kept_])


def test_fit_on_tiny_corpus_keeps_a_vocabulary() -> None:
    # min_df=2 cannot hold in two documents: the effective threshold drops so fitting still works.
    features = TextFeatures(min_df=2)
    matrix = features.fit_transform(TEXTS[:2])
    assert matrix.shape[0] == 2 and features.n_features > 0


def test_pickled_features_transform_identically() -> None:
    import pickle

    features = TextFeatures(min_df=1)
    features.fit_transform(TEXTS)
    before = features.transform(TEXTS[:3])  # builds the cached analyzers
    restored = pickle.loads(pickle.dumps(features))
    assert abs(restored.transform(TEXTS[:3]) - before).max() == 0


@pytest.mark.parametrize(
    ("labels", "fallback", "expected"),
    [
        (["low", "medium", "high", "critical"], None, "critical"),
        (["Low", "Medium", "High"], None, "High"),  # the highest level present, any case
        (["sev-a", "sev-b", "sev-c"], "sev-a", "sev-a"),  # unknown scheme: the configured name
    ],
)
def test_most_urgent_label(labels: list[str], fallback: str | None, expected: str) -> None:
    assert most_urgent_label(labels, fallback=fallback) == expected


def test_most_urgent_label_falls_back_to_rarest() -> None:
    counts = Counter({"p-a": 50, "p-b": 7, "p-c": 20})
    assert most_urgent_label(counts, counts) == "p-b"


def test_length_buckets_are_ordered() -> None:
    buckets = [length_bucket(n) for n in (0, 99, 100, 299, 300, 999, 1000, 50_000)]
    assert buckets == ["short", "short", "medium", "medium", "long", "long", "very_long", "very_long"]


# Metrics -------------------------------------------------------------------------------------------
def test_ece_is_zero_for_perfectly_calibrated_bins_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(0)
    confidence = np.full(10_000, 0.7)
    calibrated = rng.random(10_000) < 0.7
    assert expected_calibration_error(confidence, calibrated) < 0.02
    overconfident = np.full(10_000, 0.99)
    assert expected_calibration_error(overconfident, calibrated) > 0.25


def test_brier_penalises_confident_mistakes_and_unknown_labels() -> None:
    labels = ["a", "b"]
    truth = np.array(["a", "b"], dtype=object)
    right = np.array([[0.9, 0.1], [0.2, 0.8]])
    wrong = right[:, ::-1]
    assert brier_score(right, truth, labels) < brier_score(wrong, truth, labels)
    # A label the model never learnt costs its whole missing mass on top of the distance.
    unknown = np.array(["c", "c"], dtype=object)
    assert brier_score(right, unknown, labels) > brier_score(wrong, truth, labels)


def test_classification_metrics_report_unseen_labels_and_serialise() -> None:
    truth = np.array(["a", "a", "b", "b", "new"], dtype=object)
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.5, 0.5]])
    metrics = classification_metrics(truth, probabilities, ["a", "b"], most_urgent="b")
    assert metrics["labels"] == ["a", "b", "new"]
    assert metrics["per_class"]["new"]["recall"] == 0.0
    assert metrics["per_class"]["b"]["recall"] == 0.5
    assert metrics["most_urgent_recall"] == 0.5
    assert metrics["confusion_matrix"][0] == [2, 0, 0]
    assert sum(b["n"] for b in metrics["reliability"]) == len(truth)
    json.dumps(metrics)  # plain JSON types only


def test_confusion_matrix_png_is_an_image() -> None:
    png = confusion_matrix_png([[5, 1], [0, 4]], ["access", "printer"], "topic")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2_000


# Gate ----------------------------------------------------------------------------------------------
def _metrics(truth: list[str], predicted: list[str], most_urgent: str | None = None) -> dict:
    labels = sorted(set(truth) | set(predicted))
    probabilities = np.array([[1.0 if label == p else 0.0 for label in labels] for p in predicted])
    return classification_metrics(np.array(truth, dtype=object), probabilities, labels, most_urgent)


TRUTH = ["access"] * 20 + ["printer"] * 20 + ["vpn"] * 20
URGENCY_TRUTH = ["low"] * 20 + ["high"] * 20 + ["critical"] * 20


def _with_errors(truth: list[str], wrong_rows: range, replacement: str) -> list[str]:
    return [replacement if i in wrong_rows else label for i, label in enumerate(truth)]


def _world(topic_errors: range = range(0), urgency_errors: range = range(0)) -> dict:
    return {
        "topic": _metrics(TRUTH, _with_errors(TRUTH, topic_errors, "vpn")),
        "urgency": _metrics(URGENCY_TRUTH, _with_errors(URGENCY_TRUTH, urgency_errors, "low"), "critical"),
    }


BASELINE = {
    "topic": _metrics(TRUTH, ["access"] * len(TRUTH)),
    "urgency": _metrics(URGENCY_TRUTH, ["low"] * len(URGENCY_TRUTH), "critical"),
}


def test_first_model_must_beat_the_majority_baseline() -> None:
    good = evaluate_gate(_world(topic_errors=range(0, 3)), None, BASELINE)
    assert good.passed, good.reasons
    assert good.comparisons["topic"]["against"] == "baseline"
    # A model barely better than always answering "access" is not worth serving.
    weak = {"topic": _metrics(TRUTH, ["access"] * 50 + ["printer"] * 10), "urgency": BASELINE["urgency"]}
    decision = evaluate_gate(weak, None, BASELINE, GateConfig(min_gain_over_baseline=0.3))
    assert not decision.passed
    assert any("baseline" in reason for reason in decision.reasons)


def test_equal_or_better_challenger_passes() -> None:
    champion = _world(topic_errors=range(20, 24))
    assert evaluate_gate(_world(topic_errors=range(20, 22)), champion, BASELINE).passed
    assert evaluate_gate(champion, champion, BASELINE).passed


def test_macro_f1_drop_beyond_margin_fails() -> None:
    champion = _world()
    challenger = _world(topic_errors=range(20, 23))  # 3 printer tickets -> vpn
    drop = champion["topic"]["macro_f1"] - challenger["topic"]["macro_f1"]
    assert not evaluate_gate(challenger, champion, BASELINE, GateConfig(max_macro_f1_drop=drop / 2)).passed
    relaxed = GateConfig(max_macro_f1_drop=drop + 0.01, max_class_recall_drop=1.0)
    assert evaluate_gate(challenger, champion, BASELINE, relaxed).passed


def test_most_urgent_recall_may_not_drop() -> None:
    champion = _world()
    challenger = _world(urgency_errors=range(40, 41))  # one critical ticket now "low"
    decision = evaluate_gate(
        challenger, champion, BASELINE, GateConfig(max_macro_f1_drop=1.0, max_class_recall_drop=1.0)
    )
    assert not decision.passed
    assert any("most urgent" in reason and "critical" in reason for reason in decision.reasons)
    assert decision.comparisons["urgency"]["most_urgent"]["delta"] < 0
    tolerant = GateConfig(max_macro_f1_drop=1.0, max_class_recall_drop=1.0, max_most_urgent_recall_drop=0.1)
    assert evaluate_gate(challenger, champion, BASELINE, tolerant).passed


def test_one_class_recall_collapse_fails_even_if_macro_f1_is_tolerated() -> None:
    champion = _world()
    challenger = _world(topic_errors=range(0, 4))  # access recall 1.0 -> 0.8
    decision = evaluate_gate(challenger, champion, BASELINE, GateConfig(max_macro_f1_drop=1.0))
    assert not decision.passed
    assert any("'access'" in reason for reason in decision.reasons)
    assert decision.comparisons["topic"]["class_recall_deltas"]["access"] == pytest.approx(-0.2)


def test_one_tickets_change_in_a_perfect_small_class_is_noise_not_a_veto() -> None:
    champion = _world()
    challenger = _world(topic_errors=range(0, 1))  # access recall 1.0 -> 0.95 on 20 tickets
    config = GateConfig(max_macro_f1_drop=1.0, max_class_recall_drop=0.01)
    decision = evaluate_gate(challenger, champion, BASELINE, config)
    assert decision.comparisons["topic"]["class_recall_deltas"]["access"] == pytest.approx(-0.05)
    assert decision.passed, decision.reasons  # within the add-one noise of 20 tickets
    strict = evaluate_gate(challenger, champion, BASELINE, replace(config, noise_z=0.0))
    assert not strict.passed


def test_losing_the_urgency_model_fails() -> None:
    champion = _world()
    challenger = {"topic": champion["topic"]}
    decision = evaluate_gate(challenger, champion, BASELINE)
    assert not decision.passed
    assert any("urgency" in reason for reason in decision.reasons)


def test_a_dip_within_the_holdouts_sampling_noise_does_not_veto_but_a_real_drop_does() -> None:
    def metrics(f1: float, n: int) -> dict:
        return {"topic": {"macro_f1": f1, "n": n, "per_class": {}}}

    small = evaluate_gate(metrics(0.908, 300), metrics(0.92, 300), BASELINE)
    large = evaluate_gate(metrics(0.908, 30_000), metrics(0.92, 30_000), BASELINE)
    strict = evaluate_gate(metrics(0.908, 300), metrics(0.92, 300), BASELINE, GateConfig(noise_z=0.0))
    collapse = evaluate_gate(metrics(0.40, 300), metrics(0.92, 300), BASELINE)

    assert small.passed, small.reasons  # 1.2 points on 300 tickets is within noise (allowance ~3.6)
    assert not large.passed  # on 30k tickets the configured 1-point margin binds
    assert not strict.passed
    assert not collapse.passed
    assert small.comparisons["topic"]["macro_f1_allowed_drop"] > 0.03


def test_prior_correction_lets_a_rare_class_win_where_the_prior_decided() -> None:
    """Log-loss calibration follows the class priors; dividing by prior**alpha undoes that for the
    decision (long tails), and alpha = 0 leaves the calibrated probabilities as they were."""
    from ticket_assets.ml.predict import StackCalibrator

    rng = np.random.default_rng(0)
    y = np.array(["big"] * 95 + ["rare"] * 5, dtype=object)
    scores = np.column_stack([rng.normal(0.2, 1, 100), rng.normal(0.0, 1, 100)])
    scores[y == "rare", 1] += 0.6  # a weak signal for the rare class
    calibrator = StackCalibrator().fit([scores], y)
    ambiguous = np.array([[0.0, 0.6]])
    plain = calibrator.predict_proba([ambiguous])[0]
    assert calibrator.classes_[plain.argmax()] == "big"
    calibrator.correct_prior(1.0, {"big": 95, "rare": 5})
    corrected = calibrator.predict_proba([ambiguous])[0]
    assert corrected[1] > plain[1] and corrected.sum() == pytest.approx(1.0)
    assert calibrator.correct_prior(0.0, {"big": 95, "rare": 5}).predict_proba([ambiguous])[
        0
    ] == pytest.approx(plain)
