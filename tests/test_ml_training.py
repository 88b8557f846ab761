"""Training, evaluation and prediction with the real embedding model on synthetic tickets."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import polars as pl
import pytest

from tests.support.ml import corpus, tiny_config, trained
from ticket_assets.ml.evaluate import evaluate_model, majority_baseline_metrics
from ticket_assets.ml.predict import EmbeddingMismatchError, TriagePrediction
from ticket_assets.ml.train import train_triage_model


@pytest.fixture(scope="module")
def world():
    return trained()


@pytest.fixture(scope="module")
def evaluation(world):
    data = world.corpus
    return evaluate_model(world.outcome.model, data.test, data.test_embeddings, data.embedding_model_id)


def test_training_searches_every_candidate_and_picks_the_best_by_cv(world) -> None:
    for target in ("topic", "urgency"):
        report = world.outcome.reports[target]
        scores = {c.candidate: c.cv_macro_f1 for c in report.candidates}
        assert set(scores) == {"tfidf", "embedding", "stack"}
        assert report.chosen == max(scores, key=scores.get)
        assert world.outcome.model.targets[target].candidate == report.chosen
        assert set(report.search["svc"]) == {str(c) for c in tiny_config().tfidf_c_grid}
        assert set(report.search) == {"svc", "lr", "knn"}
        stack = next(c for c in report.candidates if c.candidate == "stack")
        assert set(stack.params) == {"svc", "lr", "knn", "prior_correction"}
    json.dumps(world.outcome.as_dict())


def test_holdout_metrics_beat_the_majority_baseline(world, evaluation) -> None:
    data = world.corpus
    baseline = majority_baseline_metrics(data.train, data.test)
    metrics = evaluation.metrics
    assert metrics["n_holdout"] == data.test.height
    assert metrics["topic"]["macro_f1"] > baseline["topic"]["macro_f1"] + 0.5
    assert metrics["urgency"]["macro_f1"] > baseline["urgency"]["macro_f1"] + 0.3
    assert metrics["urgency"]["most_urgent_class"] == "critical"
    assert 0.0 <= metrics["urgency"]["most_urgent_recall"] <= 1.0
    json.dumps(metrics)  # plain JSON, ready for MLflow and Dagster metadata


def test_slices_cover_language_channel_and_length(evaluation, world) -> None:
    slices = evaluation.metrics["topic"]["slices"]
    assert set(slices) == {"language", "channel", "text_length"}
    for values in slices.values():
        assert sum(v["n"] for v in values.values()) == world.corpus.test.height
    assert "fr" in slices["language"]  # the generator writes some French tickets


def test_confusion_matrix_figures(evaluation) -> None:
    assert set(evaluation.figures) == {"confusion_matrix_topic.png", "confusion_matrix_urgency.png"}
    assert all(png.startswith(b"\x89PNG") for png in evaluation.figures.values())


def test_calibration_high_confidence_is_more_accurate(world) -> None:
    """Urgency is the harder target (topic is near-perfect on synthetic data), so its confidence
    must carry information: the confident half is right more often than the unsure half."""
    data = world.corpus
    model = world.outcome.model
    predictions = model.predict(data.test["text"].to_list(), data.test_embeddings)
    truth = data.test["urgency"].to_list()
    confidence = np.array([p.urgency_confidence for p in predictions])
    correct = np.array([p.urgency == t for p, t in zip(predictions, truth, strict=True)])
    order = np.argsort(confidence)
    low, high = order[: len(order) // 2], order[len(order) // 2 :]
    assert correct[high].mean() > correct[low].mean()
    ece = evaluate_model(model, data.test, data.test_embeddings, with_figures=False).metrics["urgency"]["ece"]
    assert ece < 0.15


def test_prediction_shape_and_probabilities(world) -> None:
    data = world.corpus
    model = world.outcome.model
    [prediction] = model.predict(data.test["text"].to_list()[:1], data.test_embeddings[:1])
    assert isinstance(prediction, TriagePrediction)
    assert set(prediction.topic_probabilities) == set(model.labels("topic"))
    assert sum(prediction.topic_probabilities.values()) == pytest.approx(1.0)
    assert prediction.topic_confidence == max(prediction.topic_probabilities.values())
    assert prediction.topic == max(prediction.topic_probabilities, key=prediction.topic_probabilities.get)
    assert prediction.urgency in model.labels("urgency")
    assert sum(prediction.urgency_probabilities.values()) == pytest.approx(1.0)
    assert model.predict([], np.zeros((0, 384), np.float32)) == []


def test_predict_embeds_by_itself_with_the_named_embedder(world) -> None:
    from ticket_assets.ml.predict import embedder_settings

    data = world.corpus
    texts = data.test["text"].to_list()[:20]
    with pytest.raises(RuntimeError, match="needs embeddings"):
        world.outcome.model.predict(texts)  # no vectors and no settings: never the environment's
    with embedder_settings(data.settings):
        own = world.outcome.model.predict(texts)
    given = world.outcome.model.predict(texts, data.test_embeddings[:20], data.embedding_model_id)
    for a, b in zip(own, given, strict=True):
        assert a.topic == b.topic and a.urgency == b.urgency
        assert a.topic_confidence == pytest.approx(b.topic_confidence, abs=1e-5)


def test_vectors_of_another_embedding_model_are_refused(world) -> None:
    data = world.corpus
    with pytest.raises(EmbeddingMismatchError):
        world.outcome.model.predict(
            data.test["text"].to_list()[:2], data.test_embeddings[:2], "some-other-model/v1"
        )


# Behaviour -----------------------------------------------------------------------------------------
def _clear_tickets(world, limit: int = 40) -> pl.DataFrame:
    """Holdout tickets the model gets right with high confidence: perturbations must not flip them."""
    data = world.corpus
    predictions = world.outcome.model.predict(data.test["text"].to_list(), data.test_embeddings)
    keep = [
        i
        for i, (p, topic) in enumerate(zip(predictions, data.test["topic"].to_list(), strict=True))
        if p.topic == topic and p.topic_confidence >= 0.8
    ]
    assert len(keep) >= 20, "too few confidently classified tickets to test behaviour on"
    return data.test[keep[:limit]]


def _topics(world, texts: list[str]) -> list[str]:
    vectors = world.corpus.embed(texts)
    return [p.topic for p in world.outcome.model.predict(texts, vectors)]


def _typo(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(1, len(word) - 2))
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap two neighbouring letters


def _with_typos(text: str, rng: np.random.Generator, count: int = 2) -> str:
    words = re.findall(r"[A-Za-z]{6,}", text)
    for word in rng.permutation(words)[:count] if words else []:
        text = text.replace(str(word), _typo(str(word), rng), 1)
    return text


def test_typos_do_not_change_the_topic_of_clear_tickets(world) -> None:
    clear = _clear_tickets(world)
    rng = np.random.default_rng(5)
    typoed = [_with_typos(text, rng) for text in clear["text"].to_list()]
    assert sum(a != b for a, b in zip(typoed, clear["text"].to_list(), strict=True)) >= len(typoed) // 2
    flipped = [
        (text, expected, got)
        for text, expected, got in zip(typoed, clear["topic"].to_list(), _topics(world, typoed), strict=True)
        if expected != got
    ]
    assert len(flipped) <= len(typoed) * 0.05, flipped


def test_requester_name_and_greeting_do_not_change_the_topic(world) -> None:
    clear = _clear_tickets(world)
    rewritten = []
    for text, requester in zip(clear["text"].to_list(), clear["requester"].to_list(), strict=True):
        if requester:
            first = requester.split()[0]
            text = text.replace(requester, "Oluwaseun Bergström").replace(first, "Oluwaseun")
        text = re.sub(r"^(Hi|Hello|Dear|Bonjour)[^,.!]*[,.!]\s*", "", text)
        rewritten.append("Good morning IT crew! " + text)
    flipped = [
        (text, expected, got)
        for text, expected, got in zip(
            rewritten, clear["topic"].to_list(), _topics(world, rewritten), strict=True
        )
        if expected != got
    ]
    assert len(flipped) <= len(rewritten) * 0.05, flipped


# Edge cases of the data ----------------------------------------------------------------------------
def test_no_urgency_labels_means_no_urgency_model() -> None:
    data = corpus()
    train = data.train.with_columns(pl.lit(None, dtype=pl.String).alias("urgency"))
    outcome = train_triage_model(train, None, None, tiny_config(candidates=("tfidf",)))
    assert set(outcome.model.targets) == {"topic"}
    assert outcome.model.embedding_model_id is None and not outcome.model.needs_embeddings
    [prediction] = outcome.model.predict(data.test["text"].to_list()[:1])  # no embedder needed
    assert prediction.urgency is None and prediction.urgency_probabilities is None


def test_a_class_with_two_examples_is_learned_and_a_single_one_dropped() -> None:
    """Long tails: two examples are enough to learn a class (kNN / calibrator bias carry it); one is not."""
    data = corpus()
    rare_rows = pl.DataFrame(
        {
            "text": [
                "Quantum flux capacitor overheating",
                "Flux capacitor smells burnt",
                "My hoverboard is stuck",
            ],
            "topic": ["time_travel", "time_travel", "hoverboards"],
        }
    )
    rare = rare_rows.with_columns(urgency=pl.lit("low"))
    train = pl.concat([data.train.select("text", "topic", "urgency"), rare])
    outcome = train_triage_model(train, None, None, tiny_config(candidates=("tfidf",)))
    report = outcome.reports["topic"]
    assert report.dropped_labels == {"hoverboards": 1}
    assert "time_travel" in outcome.model.labels("topic")
    assert report.rare_labels == {"time_travel": 2}
    [prediction] = outcome.model.predict(["the flux capacitor is overheating again"])
    assert prediction.topic == "time_travel"


def test_training_stays_bounded_and_keeps_the_ids_of_the_kept_vectors(tmp_path) -> None:
    """Past its caps the model stops growing: the kNN and the out-of-scope detector keep at most
    ``knn_max_per_class`` vectors per class (with their ticket ids), the search runs on a sample
    and the vocabulary is fitted on one, and the pickled model holds no more than that."""
    import joblib

    data = corpus()
    cap = 12
    config = tiny_config(
        candidates=("stack",), knn_max_per_class=cap, search_rows=200, tfidf_fit_rows=150, max_fit_rows=400
    )
    outcome = train_triage_model(data.train, data.train_embeddings, data.embedding_model_id, config)
    model = outcome.model
    report = outcome.reports["topic"]
    # About the caps (a stratified sample rounds per class and keeps a floor of each class).
    assert 380 <= report.n_train <= 420 < data.train.height and model.metadata["n_given"] == data.train.height
    assert 200 <= report.n_search < report.n_train

    knn = model.targets["topic"].knn
    per_class = Counter(knn.label_index_.tolist())
    assert max(per_class.values()) == cap and len(per_class) == len(model.labels("topic"))
    # Every kept vector is the training vector of the ticket named next to it, with its topic.
    row_of = {tid: i for i, tid in enumerate(data.train["ticket_id"].to_list())}
    topics = data.train["topic"].to_list()
    assert len(knn.ticket_ids_) == len(knn.reference_)
    for tid, vector, label in zip(knn.ticket_ids_, knn.reference_, knn.label_index_, strict=True):
        assert np.allclose(vector, data.train_embeddings[row_of[tid]])
        assert topics[row_of[tid]] == knn.classes_[label]

    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    restored = joblib.load(path)
    assert restored.scope.reference.shape[0] == len(knn.reference_) <= cap * len(per_class)
    assert list(restored.scope.reference_ids) == list(knn.ticket_ids_)
    assert restored.targets["topic"].knn.reference_.shape == knn.reference_.shape
    # Bounded is still a working model.
    predicted = [p.topic for p in restored.predict(data.test["text"].to_list(), data.test_embeddings)]
    accuracy = np.mean(
        np.array(predicted, dtype=object) == np.array(data.test["topic"].to_list(), dtype=object)
    )
    assert accuracy > 0.8


def test_training_reports_progress_over_every_planned_fit() -> None:
    from ticket_assets.ml.train import TrainConfig, planned_fits
    from ticket_assets.sources.synthetic import generate_tickets

    tickets = generate_tickets(300, seed=5)
    frame = tickets.select("topic", "urgency").with_columns(text=tickets["body"])
    config = TrainConfig(cv_folds=2, tfidf_c_grid=(0.3, 1.0), candidates=("tfidf",), out_of_scope_quantile=0)
    calls: list[tuple[str, int, int]] = []
    train_triage_model(frame, None, None, config, progress=lambda *call: calls.append(call))

    total = planned_fits(2, False, config)  # topic and urgency
    assert total == 1 + 2 * (2 * 2 + 1)  # features, then per target 2 C values x 2 folds + the final fit
    assert [done for _, done, _ in calls] == list(range(1, total + 1))
    assert {planned for _, _, planned in calls} == {total}
    assert calls[0][0] == "tf-idf features (300 tickets)"
    assert [what for what, _, _ in calls].count("topic: cross-validating svc") == 4
    assert calls[-1][0] == "urgency: final tfidf model"
