"""Training: candidate models per target, hyper-parameter search by cross-validation, selection.

Base models (each fitted per target: topic, and urgency when the data has urgency labels):
- ``svc``: word 1-2-gram + char_wb 2-5-gram TF-IDF -> LinearSVC (class_weight="balanced").
- ``lr``: sentence embeddings -> multinomial LogisticRegression (balanced).
- ``knn``: similarity-weighted votes of the nearest training tickets in embedding space.

Candidates: ``tfidf`` = svc, ``embedding`` = lr, ``stack`` = svc + lr (+ knn unless disabled) — the
base models' out-of-fold scores combined by the ``StackCalibrator`` below (not a second-level model).

Every candidate ends in a ``StackCalibrator`` (per-base weights + per-class bias through a softmax)
fitted on the base models' out-of-fold scores, so probabilities are calibrated (reported as ECE /
Brier). The calibrator is deliberately *not* class-balanced: balancing belongs to the base models,
whose scores then rank minority classes fairly; re-weighting again would distort the probabilities.

Search: ``cv_folds`` stratified folds over the train split only. Each base model's parameter (C, or
k for knn) is chosen by out-of-fold macro-F1; the calibrator's own cross-validated predictions over
the out-of-fold scores give each candidate's CV macro-F1, and the best candidate wins (ties go to
the simpler one: tfidf, then embedding, then stack). Cross-validation reuses one fitted
vectorizer: TF-IDF is label-free, and refitting it per fold would double the training time for a
negligible difference in the estimate.

Bounded at scale (``TrainConfig``, "bounds"): at most ``max_fit_rows`` rows are used (a
topic-stratified sample beyond it); the vocabulary and idf are fitted on at most
``tfidf_fit_rows`` texts and capped at ``max_features`` n-grams per analyzer; the search (folds,
grids, calibrator) runs on a stratified sample of at most ``search_rows`` rows, then each chosen
base model is fitted once on every row; the kNN vote and the out-of-scope detector keep at most
``knn_max_per_class`` training vectors per class (with their ticket ids), so the pickled model does
not grow with the training set. ``None`` lifts a bound (the unbounded training of the benchmarks).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from ticket_assets.ml.dataset import routing_target_names, with_routing_columns
from ticket_assets.ml.features import TextFeatures, most_urgent_label
from ticket_assets.ml.predict import (
    EmbeddingKNN,
    StackCalibrator,
    TargetModel,
    TriageModel,
    base_scores,
    per_class_sample,
)
from ticket_assets.ml.scope import fit_out_of_scope
from ticket_assets.ml.train_config import TrainConfig

log = logging.getLogger(__name__)


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
    n_search: int  # rows the hyper-parameter search and the calibrator saw (a stratified sample)
    rare_labels: dict[str, int]  # learned from fewer than rare_class_examples examples
    candidates: list[CandidateResult]
    search: dict[str, dict[str, float]]  # base model -> parameter value -> CV macro-F1
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "chosen": self.chosen,
            "labels": self.labels,
            "dropped_labels": self.dropped_labels,
            "n_train": self.n_train,
            "n_search": self.n_search,
            "rare_labels": self.rare_labels,
            "candidates": {c.candidate: asdict(c) for c in self.candidates},
            "search_cv_macro_f1": self.search,
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
    progress: TrainingProgress | None = None,
) -> TrainingOutcome:
    """Fit the triage model on the train split.

    ``train`` needs ``text`` and ``topic`` (and ``urgency``, possibly null); ``embeddings`` rows
    follow ``train`` rows (None restricts the candidates to ``tfidf``). ``progress`` follows the fits.
    """
    config = config or TrainConfig()
    # One level of parallelism: joblib threads over (fold, C) fits, single-threaded BLAS inside.
    # Nested BLAS threads oversubscribe the cores and make small fits ~10x slower.
    with threadpool_limits(limits=config.blas_threads):
        return _train(train, embeddings, embedding_model_id, config, progress)


def _train(
    train: pl.DataFrame,
    embeddings: np.ndarray | None,
    embedding_model_id: str | None,
    config: TrainConfig,
    progress: TrainingProgress | None = None,
) -> TrainingOutcome:
    started = time.perf_counter()
    if embeddings is not None and embeddings.shape[0] != train.height:
        raise ValueError(f"{embeddings.shape[0]} embeddings for {train.height} training rows")
    candidates = config.candidates if embeddings is not None else ("tfidf",)
    n_given = train.height
    if config.max_fit_rows is not None and train.height > config.max_fit_rows:
        # Past the cap the learning curve is flat (BENCHMARKS.md "Training at scale") while memory
        # and time keep growing: fit on a topic-stratified sample.
        kept = stratified_sample(
            np.asarray(train["topic"].to_list(), dtype=object), config.max_fit_rows, config.seed
        )
        train = train[kept]
        embeddings = embeddings[kept] if embeddings is not None else None
        log.info("training on a stratified %d of %d rows (max_fit_rows)", train.height, n_given)
    train = with_routing_columns(train)

    texts = train["text"].to_list()
    vectorizer = TextFeatures(config.word_ngrams, config.char_ngrams, config.min_df, config.max_features)
    to_train = trainable_targets(train, config)
    fits = _Fits(planned_fits(len(to_train), embeddings is not None, config), progress)
    vocabulary_rows = _sample(len(texts), config.tfidf_fit_rows, config.seed)
    if vocabulary_rows is None:
        tfidf = vectorizer.fit_transform(texts)
    else:  # vocabulary and idf from a sample: the n-gram counts of every text need not fit in memory
        vectorizer.fit([texts[i] for i in vocabulary_rows])
        tfidf = vectorizer.transform_many(texts, n_jobs=config.n_jobs)
    log.info("tfidf: %d rows x %d features in %.1fs", *tfidf.shape, time.perf_counter() - started)
    fits.tick(f"tf-idf features ({train.height} tickets)")

    targets: dict[str, TargetModel] = {}
    reports: dict[str, TargetTrainingReport] = {}
    alternatives: dict[str, dict[str, TargetModel]] = {}
    for target in to_train:
        rows, labels, dropped = _target_rows(train, target, config)
        target_model, report, fitted = fit_target(
            target,
            tfidf[rows],
            embeddings[rows] if embeddings is not None else None,
            labels,
            candidates,
            config,
            fits,
        )
        report.dropped_labels = dropped
        if target_model.knn is not None and "ticket_id" in train.columns:
            target_model.knn.ticket_ids_ = np.asarray(train["ticket_id"].cast(pl.Utf8).to_numpy()[rows])[
                target_model.knn.kept_
            ]
        targets[target] = target_model
        reports[target] = report
        alternatives[target] = fitted

    scope = None
    if embeddings is not None and config.out_of_scope_quantile > 0:
        # The topic kNN already holds the (capped) training vectors: share them rather than store a
        # copy; without a kNN, the same per-class cap picks them.
        knn = targets["topic"].knn
        if knn is not None:
            reference, reference_ids = knn.reference_, getattr(knn, "ticket_ids_", None)
        else:
            topic_rows, topic_labels, _ = _target_rows(train, "topic", config)
            kept = topic_rows[per_class_sample(topic_labels, config.knn_max_per_class, config.seed)]
            reference = embeddings[kept]
            reference_ids = (
                train["ticket_id"].cast(pl.Utf8).to_numpy()[kept] if "ticket_id" in train.columns else None
            )
        vocabulary_texts = _sample(len(texts), config.scope_vocabulary_rows, config.seed)
        scope = fit_out_of_scope(
            reference,
            texts if vocabulary_texts is None else [texts[i] for i in vocabulary_texts],
            k=config.out_of_scope_k,
            quantile=config.out_of_scope_quantile,
            seed=config.seed,
            ids=None if reference_ids is None else list(reference_ids),
        )
    seconds = time.perf_counter() - started
    model = TriageModel(
        scope=scope,
        vectorizer=vectorizer,
        targets=targets,
        embedding_model_id=embedding_model_id
        if scope is not None or any(m.needs_embeddings for m in targets.values())
        else None,
        metadata={
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "n_train": train.height,
            "n_given": n_given,
            "chosen": {t: r.chosen for t, r in reports.items()},
            "train_config": config.as_params(),
            "training_embedding_model_id": embedding_model_id,
            "out_of_scope": scope.calibration if scope is not None else None,
        },
    )
    return TrainingOutcome(model=model, reports=reports, seconds=seconds, alternatives=alternatives)


def trainable_targets(train: pl.DataFrame, config: TrainConfig) -> list[str]:
    """``topic`` always; ``urgency`` and each routing target (``labels``) only with enough labels
    of at least two classes."""
    targets = ["topic"]
    candidates = [("urgency", config.min_urgency_labels)] + [
        (name, config.min_routing_labels) for name in routing_target_names(train)
    ]
    for target, minimum in candidates:
        if target in train.columns:
            values = train[target].drop_nulls()
            if values.len() >= minimum and values.n_unique() >= 2:
                targets.append(target)
    return targets


def _target_rows(
    train: pl.DataFrame, target: str, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Row indices with a usable label, their labels, and the labels dropped as too rare."""
    labels = train[target].to_list()
    counts = Counter(label for label in labels if label is not None)
    dropped = {label: n for label, n in counts.items() if n < config.min_class_examples}
    keep = np.array(
        [i for i, label in enumerate(labels) if label is not None and label not in dropped], dtype=int
    )
    if dropped:
        log.warning("%s: too few examples to learn %s; dropped", target, dropped)
    kept_labels = np.array([labels[i] for i in keep], dtype=object)
    if len(set(kept_labels)) < 2:
        raise ValueError(f"{target}: need at least two classes with {config.min_class_examples}+ examples")
    return keep, kept_labels, dropped


def _sample(n: int, cap: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of ``cap`` of ``n`` rows drawn uniformly, or None when all fit under the cap."""
    if cap is None or n <= cap:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def stratified_sample(y: np.ndarray, cap: int | None, seed: int, floor: int = 20) -> np.ndarray:
    """Sorted indices of about ``cap`` rows with the label mix of ``y`` (every row when under the cap).
    A class keeps at least ``floor`` rows (all of them when it has fewer), so the search still sees
    the long tail that a proportional sample would lose."""
    if cap is None or len(y) <= cap:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    share = cap / len(y)
    _, index = np.unique(y, return_inverse=True)
    keep = []
    for label in range(index.max() + 1):
        rows = np.flatnonzero(index == label)
        quota = min(len(rows), max(floor, round(len(rows) * share)))
        keep.append(rng.choice(rows, size=quota, replace=False))
    return np.sort(np.concatenate(keep))


# --------------------------------------------------------------------------------------------------
# One target


def fit_target(
    target: str,
    tfidf: sp.csr_matrix,
    embeddings: np.ndarray | None,
    y: np.ndarray,
    candidates: tuple[str, ...],
    config: TrainConfig,
    fits: _Fits | None = None,
) -> tuple[TargetModel, TargetTrainingReport, dict[str, TargetModel]]:
    """The chosen model of one target, its report, and every fitted candidate by name."""
    fits = fits or _Fits(0, None)
    started = time.perf_counter()
    # The search (folds x grids, calibrators) runs on a stratified sample; the chosen bases are then
    # fitted once on every row. The calibrator is fitted on the sample's out-of-fold scores.
    search = stratified_sample(y, config.search_rows, config.seed)
    sampled = len(search) < len(y)
    y_search = y[search] if sampled else y
    with warnings.catch_warnings():
        # "The least populated class has only 2 members": intended for long tails (see TrainConfig).
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        folds = list(
            StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed).split(
                np.zeros(len(y_search)), y_search
            )
        )
    available = _base_models(tfidf, embeddings, config)
    searching = (
        _base_models(tfidf[search], embeddings[search] if embeddings is not None else None, config)
        if sampled
        else available
    )
    usable = {c: bases_of(c, config) for c in candidates if set(bases_of(c, config)) <= set(available)}
    searched = {
        base: search_param(
            searching[base].factory,
            searching[base].features,
            y_search,
            folds,
            searching[base].grid,
            config,
            lambda: fits.tick(f"{target}: cross-validating {base}"),  # noqa: B023 - called within the loop
        )
        for base in dict.fromkeys(b for bases in usable.values() for b in bases)
    }

    results: list[CandidateResult] = []
    counts = Counter(y_search.tolist())
    for candidate, bases in usable.items():
        probabilities, classes = _calibrated_cv_probabilities(
            [searched[b].oof for b in bases], y_search, folds, config
        )
        alpha, predicted = _best_prior_correction(probabilities, classes, y_search, counts, config)
        results.append(
            CandidateResult(
                candidate=candidate,
                cv_macro_f1=float(f1_score(y_search, predicted, average="macro")),
                cv_accuracy=float(np.mean(predicted == y_search)),
                params={b: searched[b].best for b in bases} | {"prior_correction": alpha},
            )
        )
    best = max(results, key=lambda r: r.cv_macro_f1)  # first of equals: the simplest candidate
    log.info("%s: %s", target, {r.candidate: round(r.cv_macro_f1, 4) for r in results})

    to_fit = [r.candidate for r in results] if config.keep_all_candidates else [best.candidate]
    final_bases = list(dict.fromkeys(b for c in to_fit for b in usable[c]))
    fitted_bases = dict(
        Parallel(n_jobs=config.n_jobs, prefer="threads")(
            delayed(_fit_named)(b, available[b].factory(searched[b].best), available[b].features, y)
            for b in final_bases
        )
    )
    fits.tick(f"{target}: final {best.candidate} model")
    labels = sorted(set(y))
    most_urgent = (
        most_urgent_label(labels, Counter(y.tolist()), config.most_urgent_fallback)
        if target == "urgency"
        else None
    )
    alphas = {r.candidate: r.params["prior_correction"] for r in results}
    fitted = {
        candidate: _assemble(
            target,
            candidate,
            usable[candidate],
            searched,
            fitted_bases,
            y_search,
            most_urgent,
            config,
            alphas[candidate],
        )
        for candidate in to_fit
    }
    report = TargetTrainingReport(
        target=target,
        chosen=best.candidate,
        labels=fitted[best.candidate].labels,
        dropped_labels={},
        n_train=len(y),
        n_search=len(y_search),
        rare_labels={
            str(label): n
            for label, n in sorted(Counter(y.tolist()).items())
            if n < config.rare_class_examples
        },
        candidates=results,
        search={b: {str(k): v for k, v in r.scores.items()} for b, r in searched.items()},
        seconds=time.perf_counter() - started,
    )
    return fitted[best.candidate], report, fitted


def bases_of(candidate: str, config: TrainConfig) -> tuple[str, ...]:
    if candidate == "tfidf":
        return ("svc",)
    if candidate == "embedding":
        return ("lr",)
    if candidate == "stack":
        return ("svc", "lr", "knn") if config.knn_k_grid else ("svc", "lr")
    raise ValueError(f"unknown candidate {candidate!r}")


Factory = Callable[[Any], Any]
# (what is being fitted, fits done, fits planned): called after every model fit of the search.
TrainingProgress = Callable[[str, int, int], None]


class _Fits:
    """Counts model fits against the plan, thread-safely (the search fits in threads)."""

    def __init__(self, total: int, progress: TrainingProgress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress
        self._lock = threading.Lock()

    def tick(self, what: str, n: int = 1) -> None:
        if self.progress is None:
            return
        with self._lock:  # reported under the lock so counts arrive in order
            self.done = min(self.done + n, self.total)
            self.progress(what, self.done, self.total)


def planned_fits(n_targets: int, has_embeddings: bool, config: TrainConfig) -> int:
    """Fits a training will make: per target each base model's grid x folds, then one final fit."""
    candidates = config.candidates if has_embeddings else ("tfidf",)
    grids = {"svc": config.tfidf_c_grid, "lr": config.embedding_c_grid, "knn": config.knn_k_grid}
    bases = {b for c in candidates for b in bases_of(c, config) if has_embeddings or b == "svc"}
    return 1 + n_targets * (sum(len(grids[b]) * config.cv_folds for b in bases) + 1)


@dataclass(frozen=True)
class _Base:
    factory: Factory
    features: Any
    grid: tuple[Any, ...]


def _base_models(
    tfidf: sp.csr_matrix, embeddings: np.ndarray | None, config: TrainConfig
) -> dict[str, _Base]:
    svc = lambda c: LinearSVC(  # noqa: E731
        C=c, class_weight="balanced", max_iter=config.svc_max_iter, random_state=config.seed
    )
    bases = {"svc": _Base(svc, tfidf, config.tfidf_c_grid)}
    if embeddings is not None:
        lr = lambda c: LogisticRegression(C=c, class_weight="balanced", max_iter=1000)  # noqa: E731
        knn = lambda k: EmbeddingKNN(  # noqa: E731
            n_neighbors=k,
            temperature=config.knn_temperature,
            max_per_class=config.knn_max_per_class,
            seed=config.seed,
        )
        bases["lr"] = _Base(lr, embeddings, config.embedding_c_grid)
        if config.knn_k_grid:
            bases["knn"] = _Base(knn, embeddings, config.knn_k_grid)
    return bases


def _assemble(
    target: str,
    candidate: str,
    bases: tuple[str, ...],
    searched: dict[str, SearchResult],
    fitted_bases: dict[str, Any],
    y: np.ndarray,
    most_urgent: str | None,
    config: TrainConfig,
    prior_correction: float = 0.0,
) -> TargetModel:
    calibrator = _calibrator(config).fit([searched[b].oof for b in bases], y)
    if prior_correction:
        calibrator.correct_prior(prior_correction, Counter(y.tolist()))
    return TargetModel(
        target=target,
        candidate=candidate,
        labels=[str(label) for label in calibrator.classes_],
        calibrator=calibrator,
        svc=fitted_bases["svc"] if "svc" in bases else None,
        embedding_lr=fitted_bases["lr"] if "lr" in bases else None,
        knn=fitted_bases["knn"] if "knn" in bases else None,
        most_urgent=most_urgent,
    )


def _calibrator(config: TrainConfig) -> StackCalibrator:
    return StackCalibrator(bias_l2=config.calibrator_bias_l2)


def _calibrated_cv_probabilities(
    parts: list[np.ndarray], y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities of every row from a calibrator that did not see it (columns: classes)."""
    classes = np.unique(y)
    column = {label: i for i, label in enumerate(classes)}
    probabilities = np.zeros((len(y), len(classes)))
    for fit_rows, score_rows in folds:
        calibrator = _calibrator(config).fit([part[fit_rows] for part in parts], y[fit_rows])
        columns = [column[label] for label in calibrator.classes_]
        probabilities[np.ix_(score_rows, columns)] = calibrator.predict_proba(
            [part[score_rows] for part in parts]
        )
    return probabilities, classes


def _best_prior_correction(
    probabilities: np.ndarray, classes: np.ndarray, y: np.ndarray, counts: Counter, config: TrainConfig
) -> tuple[float, np.ndarray]:
    """The prior-correction power with the best CV macro-F1, and its predictions."""
    log_prior = np.log(np.array([counts[label] for label in classes], dtype=np.float64) / len(y))
    log_p = np.log(np.clip(probabilities, 1e-12, None))
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in config.prior_correction_grid or (0.0,):
        predicted = classes[(log_p - alpha * log_prior).argmax(axis=1)]
        score = float(f1_score(y, predicted, average="macro"))
        if best is None or score > best[1]:
            best = (alpha, score, predicted)
    return best[0], best[2]


@dataclass
class SearchResult:
    best: Any
    scores: dict[Any, float]  # parameter value -> out-of-fold macro-F1
    oof: np.ndarray  # out-of-fold scores of the best parameter (the calibrator's training input)


def search_param(
    factory: Factory,
    features: sp.csr_matrix | np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    grid: tuple[Any, ...],
    config: TrainConfig,
    fitted_one: Callable[[], None] | None = None,
) -> SearchResult:
    """Best parameter by out-of-fold macro-F1 of the base model's own argmax."""
    jobs = [(value, i) for value in grid for i in range(len(folds))]
    # Threads, not processes: the fits release the GIL and the feature matrix is not copied.
    fitted = Parallel(n_jobs=config.n_jobs, prefer="threads")(
        delayed(_fit_fold)(factory, features, y, folds[i], value, fitted_one) for value, i in jobs
    )
    classes = np.array(sorted(set(y)), dtype=object)
    oof_by_value: dict[Any, np.ndarray] = {}
    for (value, i), scores in zip(jobs, fitted, strict=True):
        oof = oof_by_value.setdefault(value, np.zeros((len(y), scores.shape[1]), dtype=np.float64))
        oof[folds[i][1]] = scores
    scores = {
        value: float(f1_score(y, _argmax_labels(oof, classes), average="macro"))
        for value, oof in oof_by_value.items()
    }
    # Ties go to the first grid value: grids list the stronger regularisation first.
    best = max(grid, key=lambda value: scores[value])
    return SearchResult(best=best, scores=scores, oof=oof_by_value[best])


def _fit_named(name: str, model: Any, features: Any, y: np.ndarray) -> tuple[str, Any]:
    return name, model.fit(features, y)


def _fit_fold(
    factory: Factory,
    features: Any,
    y: np.ndarray,
    fold: tuple[np.ndarray, np.ndarray],
    value: Any,
    fitted_one: Callable[[], None] | None = None,
) -> np.ndarray:
    fit_rows, score_rows = fold
    model = factory(value).fit(features[fit_rows], y[fit_rows])
    if fitted_one is not None:
        fitted_one()
    return base_scores(model, features[score_rows])


def _argmax_labels(scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    # Only the per-class columns vote (knn appends its top-1 similarity as a last column).
    return classes[scores[:, : len(classes)].argmax(axis=1)]
