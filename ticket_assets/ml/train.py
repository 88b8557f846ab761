"""Training: candidate models per target, hyper-parameter search by cross-validation, selection.

Candidates (per target: topic, and urgency when the data has urgency labels):
- ``tfidf``: word 1-2-gram + char_wb 2-5-gram TF-IDF -> LinearSVC (class_weight="balanced").
- ``embedding``: sentence embeddings -> multinomial LogisticRegression (balanced).
- ``stack``: both base models' out-of-fold scores -> multinomial LogisticRegression.

Every candidate ends in a calibrator, a multinomial logistic regression fitted on the base models'
out-of-fold scores, so probabilities are calibrated (reported as ECE / Brier). The calibrator is
deliberately *not* class-balanced: balancing belongs to the base models, whose scores then rank
minority classes fairly; re-weighting again in the calibrator would distort the probabilities.

Search: ``cv_folds`` stratified folds over the train split only. Base-model C values are chosen by
fold macro-F1; the calibrator's own cross-validated predictions over the out-of-fold scores give
each candidate's CV macro-F1, and the best candidate wins. Cross-validation reuses one fitted
vectorizer: TF-IDF is label-free, and refitting it per fold would double the training time for a
negligible difference in the estimate.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from ticket_assets.ml.features import TextFeatures, most_urgent_label
from ticket_assets.ml.predict import TargetModel, TriageModel, base_scores, meta_matrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Sizes, grids and seeds. Defaults train 30k tickets in a few minutes on 2 cores."""

    cv_folds: int = 3
    tfidf_c_grid: tuple[float, ...] = (0.1, 0.3, 1.0)
    embedding_c_grid: tuple[float, ...] = (1.0, 4.0, 16.0)
    calibrator_c: float = 10.0
    candidates: tuple[str, ...] = ("tfidf", "embedding", "stack")
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    min_df: int = 2
    max_features: int | None = 300_000  # per analyzer (word, char)
    # Classes with fewer training examples than this cannot be cross-validated; they are dropped
    # from training (and recorded in the model metadata) rather than failing the whole run.
    min_class_examples: int = 6
    min_urgency_labels: int = 50  # an urgency model needs at least this many labelled tickets
    most_urgent_fallback: str | None = None  # for urgency label sets outside low..critical
    svc_max_iter: int = 2000
    keep_all_candidates: bool = False  # fit every candidate, not only the chosen one (benchmarks)
    n_jobs: int = 2  # threads over (fold, C) fits: liblinear and lbfgs release the GIL
    blas_threads: int = 1
    seed: int = 42

    def as_params(self) -> dict[str, Any]:
        return {
            key: (list(value) if isinstance(value, tuple) else value) for key, value in asdict(self).items()
        }


@dataclass
class CandidateResult:
    candidate: str
    cv_macro_f1: float
    cv_accuracy: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TargetTrainingReport:
    target: str
    chosen: str
    labels: list[str]
    dropped_labels: dict[str, int]
    n_train: int
    candidates: list[CandidateResult]
    svc_c_scores: dict[float, float]
    embedding_c_scores: dict[float, float]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "chosen": self.chosen,
            "labels": self.labels,
            "dropped_labels": self.dropped_labels,
            "n_train": self.n_train,
            "candidates": {c.candidate: asdict(c) for c in self.candidates},
            "svc_c_cv_macro_f1": {str(c): s for c, s in self.svc_c_scores.items()},
            "embedding_c_cv_macro_f1": {str(c): s for c, s in self.embedding_c_scores.items()},
            "seconds": self.seconds,
        }


@dataclass
class TrainingOutcome:
    model: TriageModel
    reports: dict[str, TargetTrainingReport]
    seconds: float
    # target -> candidate -> fitted model; only the chosen one unless keep_all_candidates
    alternatives: dict[str, dict[str, TargetModel]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"targets": {t: r.as_dict() for t, r in self.reports.items()}, "seconds": self.seconds}


# --------------------------------------------------------------------------------------------------
# Entry point


def train_triage_model(
    train: pl.DataFrame,
    embeddings: np.ndarray | None,
    embedding_model_id: str | None,
    config: TrainConfig | None = None,
) -> TrainingOutcome:
    """Fit the triage model on the train split.

    ``train`` needs ``text`` and ``topic`` (and ``urgency``, possibly null); ``embeddings`` rows
    follow ``train`` rows (None restricts the candidates to ``tfidf``).
    """
    config = config or TrainConfig()
    # One level of parallelism: joblib threads over (fold, C) fits, single-threaded BLAS inside.
    # Nested BLAS threads oversubscribe the cores and make small fits ~10x slower.
    with threadpool_limits(limits=config.blas_threads):
        return _train(train, embeddings, embedding_model_id, config)


def _train(
    train: pl.DataFrame, embeddings: np.ndarray | None, embedding_model_id: str | None, config: TrainConfig
) -> TrainingOutcome:
    started = time.perf_counter()
    if embeddings is not None and embeddings.shape[0] != train.height:
        raise ValueError(f"{embeddings.shape[0]} embeddings for {train.height} training rows")
    candidates = config.candidates if embeddings is not None else ("tfidf",)

    vectorizer = TextFeatures(config.word_ngrams, config.char_ngrams, config.min_df, config.max_features)
    tfidf = vectorizer.fit_transform(train["text"].to_list())
    log.info("tfidf: %d rows x %d features in %.1fs", *tfidf.shape, time.perf_counter() - started)

    targets: dict[str, TargetModel] = {}
    reports: dict[str, TargetTrainingReport] = {}
    alternatives: dict[str, dict[str, TargetModel]] = {}
    for target in trainable_targets(train, config):
        rows, labels, dropped = _target_rows(train, target, config)
        target_model, report, fitted = fit_target(
            target,
            tfidf[rows],
            embeddings[rows] if embeddings is not None else None,
            labels,
            candidates,
            config,
        )
        report.dropped_labels = dropped
        targets[target] = target_model
        reports[target] = report
        alternatives[target] = fitted

    seconds = time.perf_counter() - started
    model = TriageModel(
        vectorizer=vectorizer,
        targets=targets,
        embedding_model_id=embedding_model_id if any(m.needs_embeddings for m in targets.values()) else None,
        metadata={
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "n_train": train.height,
            "chosen": {t: r.chosen for t, r in reports.items()},
            "train_config": config.as_params(),
            "training_embedding_model_id": embedding_model_id,
        },
    )
    return TrainingOutcome(model=model, reports=reports, seconds=seconds, alternatives=alternatives)


def trainable_targets(train: pl.DataFrame, config: TrainConfig) -> list[str]:
    """``topic`` always; ``urgency`` only with enough labels of at least two levels."""
    targets = ["topic"]
    if "urgency" in train.columns:
        urgency = train["urgency"].drop_nulls()
        if urgency.len() >= config.min_urgency_labels and urgency.n_unique() >= 2:
            targets.append("urgency")
    return targets


def _target_rows(
    train: pl.DataFrame, target: str, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Row indices with a usable label, their labels, and the labels dropped as too rare."""
    labels = train[target].to_list()
    counts = Counter(label for label in labels if label is not None)
    dropped = {label: n for label, n in counts.items() if n < max(config.min_class_examples, config.cv_folds)}
    keep = np.array(
        [i for i, label in enumerate(labels) if label is not None and label not in dropped], dtype=int
    )
    if dropped:
        log.warning("%s: too few examples to learn %s; dropped", target, dropped)
    kept_labels = np.array([labels[i] for i in keep], dtype=object)
    if len(set(kept_labels)) < 2:
        raise ValueError(f"{target}: need at least two classes with {config.min_class_examples}+ examples")
    return keep, kept_labels, dropped


# --------------------------------------------------------------------------------------------------
# One target


def fit_target(
    target: str,
    tfidf: sp.csr_matrix,
    embeddings: np.ndarray | None,
    y: np.ndarray,
    candidates: tuple[str, ...],
    config: TrainConfig,
) -> tuple[TargetModel, TargetTrainingReport, dict[str, TargetModel]]:
    """The chosen model of one target, its report, and every fitted candidate by name."""
    started = time.perf_counter()
    folds = list(
        StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed).split(np.zeros(len(y)), y)
    )
    labels = sorted(set(y))

    svc_c, svc_scores, svc_oof = (None, {}, None)
    if {"tfidf", "stack"} & set(candidates):
        svc_c, svc_scores, svc_oof = search_c(
            _svc_factory(config), tfidf, y, folds, config.tfidf_c_grid, config
        )
    emb_c, emb_scores, emb_oof = (None, {}, None)
    if embeddings is not None and {"embedding", "stack"} & set(candidates):
        emb_c, emb_scores, emb_oof = search_c(
            _lr_factory(config), embeddings, y, folds, config.embedding_c_grid, config
        )

    meta_inputs = {"tfidf": [svc_oof], "embedding": [emb_oof], "stack": [svc_oof, emb_oof]}
    results: list[CandidateResult] = []
    for candidate in candidates:
        parts = meta_inputs[candidate]
        if any(part is None for part in parts):
            continue
        predicted = cross_val_predict(_calibrator(config), meta_matrix(parts), y, cv=folds, n_jobs=1)
        results.append(
            CandidateResult(
                candidate=candidate,
                cv_macro_f1=float(f1_score(y, predicted, average="macro")),
                cv_accuracy=float(np.mean(predicted == y)),
                params={
                    "svc_c": svc_c if candidate != "embedding" else None,
                    "embedding_c": emb_c if candidate != "tfidf" else None,
                },
            )
        )
    best = max(results, key=lambda r: r.cv_macro_f1)
    log.info("%s: %s", target, {r.candidate: round(r.cv_macro_f1, 4) for r in results})

    to_fit = [r.candidate for r in results] if config.keep_all_candidates else [best.candidate]
    final: list[tuple[str, Any, Any]] = []
    if any(c in ("tfidf", "stack") for c in to_fit):
        final.append(("svc", _svc_factory(config)(svc_c), tfidf))
    if any(c in ("embedding", "stack") for c in to_fit):
        final.append(("emb", _lr_factory(config)(emb_c), embeddings))
    fitted_base = dict(
        Parallel(n_jobs=config.n_jobs, prefer="threads")(
            delayed(_fit_named)(name, model, features, y) for name, model, features in final
        )
    )
    svc, emb_lr = fitted_base.get("svc"), fitted_base.get("emb")
    most_urgent = (
        most_urgent_label(labels, Counter(y.tolist()), config.most_urgent_fallback)
        if target == "urgency"
        else None
    )
    fitted = {
        candidate: _assemble(target, candidate, meta_inputs[candidate], y, svc, emb_lr, most_urgent, config)
        for candidate in to_fit
    }
    model = fitted[best.candidate]
    report = TargetTrainingReport(
        target=target,
        chosen=best.candidate,
        labels=model.labels,
        dropped_labels={},
        n_train=len(y),
        candidates=results,
        svc_c_scores=svc_scores,
        embedding_c_scores=emb_scores,
        seconds=time.perf_counter() - started,
    )
    return model, report, fitted


def _assemble(
    target: str,
    candidate: str,
    oof_parts: list[np.ndarray],
    y: np.ndarray,
    svc: LinearSVC | None,
    emb_lr: LogisticRegression | None,
    most_urgent: str | None,
    config: TrainConfig,
) -> TargetModel:
    calibrator = _calibrator(config).fit(meta_matrix(oof_parts), y)
    return TargetModel(
        target=target,
        candidate=candidate,
        labels=[str(label) for label in calibrator.classes_],
        calibrator=calibrator,
        svc=svc if candidate in ("tfidf", "stack") else None,
        embedding_lr=emb_lr if candidate in ("embedding", "stack") else None,
        most_urgent=most_urgent,
    )


Factory = Callable[[float], Any]


def _svc_factory(config: TrainConfig) -> Factory:
    return lambda c: LinearSVC(
        C=c, class_weight="balanced", max_iter=config.svc_max_iter, random_state=config.seed
    )


def _lr_factory(config: TrainConfig) -> Factory:
    return lambda c: LogisticRegression(C=c, class_weight="balanced", max_iter=1000)


def _calibrator(config: TrainConfig) -> LogisticRegression:
    return LogisticRegression(C=config.calibrator_c, max_iter=2000)


def search_c(
    factory: Factory,
    features: sp.csr_matrix | np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    c_grid: tuple[float, ...],
    config: TrainConfig,
) -> tuple[float, dict[float, float], np.ndarray]:
    """Best C by out-of-fold macro-F1, the score of every C, and the best C's out-of-fold scores."""
    jobs = [(c, i) for c in c_grid for i in range(len(folds))]
    # Threads, not processes: the fits release the GIL and the feature matrix is not copied.
    fitted = Parallel(n_jobs=config.n_jobs, prefer="threads")(
        delayed(_fit_fold)(factory, features, y, folds[i], c) for c, i in jobs
    )
    n_classes = len(set(y))
    oof_by_c: dict[float, np.ndarray] = {}
    for (c, i), scores in zip(jobs, fitted, strict=True):
        oof = oof_by_c.setdefault(c, np.zeros((len(y), scores.shape[1]), dtype=np.float64))
        oof[folds[i][1]] = scores
    classes = np.array(sorted(set(y)), dtype=object)
    c_scores = {
        c: float(f1_score(y, _argmax_labels(oof, classes, n_classes), average="macro"))
        for c, oof in oof_by_c.items()
    }
    best_c = max(c_grid, key=lambda c: (c_scores[c], -c))  # ties -> stronger regularisation
    return best_c, c_scores, oof_by_c[best_c]


def _fit_named(name: str, model: Any, features: Any, y: np.ndarray) -> tuple[str, Any]:
    return name, model.fit(features, y)


def _fit_fold(
    factory: Factory, features: Any, y: np.ndarray, fold: tuple[np.ndarray, np.ndarray], c: float
) -> np.ndarray:
    fit_rows, score_rows = fold
    model = clone(factory(c)).fit(features[fit_rows], y[fit_rows])
    return base_scores(model, features[score_rows])


def _argmax_labels(scores: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2 and scores.shape[1] == 1:  # binary LinearSVC: one margin, positive = classes[1]
        return classes[(scores[:, 0] > 0).astype(int)]
    return classes[scores.argmax(axis=1)]
