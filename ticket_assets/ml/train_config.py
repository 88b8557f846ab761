"""Training settings (:class:`TrainConfig`), apart from the training code so that reading them (the
asset graph's run config does) does not import scikit-learn. ``ticket_assets.ml.train`` re-exports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Sizes, grids and seeds. Defaults train 30k tickets in a few minutes on 2 cores."""

    cv_folds: int = 3
    tfidf_c_grid: tuple[float, ...] = (0.1, 0.3, 1.0)
    embedding_c_grid: tuple[float, ...] = (1.0, 4.0, 16.0)
    knn_k_grid: tuple[int, ...] = (20,)  # empty: no knn in the stack
    knn_temperature: float = 0.05
    calibrator_bias_l2: float = 1e-3
    # Prior correction of the calibrated probabilities (StackCalibrator.correct_prior), chosen per
    # candidate by CV macro-F1; ties go to the first (no correction).
    prior_correction_grid: tuple[float, ...] = (0.0, 0.5, 1.0)
    candidates: tuple[str, ...] = ("tfidf", "embedding", "stack")
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    min_df: int = 2
    max_features: int | None = 300_000  # per analyzer (word, char)
    # Long tails: every class with at least this many training examples is learned. Stratified
    # folds spread a class's examples over different folds, so each fold's fit still sees one of
    # a 2-example class; the kNN vote and the calibrator's per-class bias carry such classes (a
    # nearest-neighbour fallback in embedding space). Rarer classes are dropped (and recorded).
    min_class_examples: int = 2
    rare_class_examples: int = 6  # classes under this are reported apart as rare
    min_urgency_labels: int = 50  # an urgency model needs at least this many labelled tickets
    min_routing_labels: int = 50  # so does each routing target (assignment group, queue...)
    most_urgent_fallback: str | None = None  # for urgency label sets outside low..critical
    svc_max_iter: int = 2000
    # Confidence tiers (ml.tiers), set on the holdout after training: per class the lowest threshold
    # whose held-out precision reaches tier_auto_precision (auto) / tier_suggest_precision (suggest).
    tier_auto_precision: float = 0.95
    tier_suggest_precision: float = 0.80
    tier_min_examples: int = 20  # held-out predictions a class needs for an auto tier
    keep_all_candidates: bool = False  # fit every candidate, not only the chosen one (benchmarks)
    n_jobs: int = 2  # threads over (fold, parameter) fits: liblinear, lbfgs and BLAS release the GIL
    blas_threads: int = 1
    # Out-of-scope detection (ml/scope.py): k nearest training tickets, threshold at this quantile
    # of held-out in-domain scores (0: no detector).
    out_of_scope_k: int = 10
    out_of_scope_quantile: float = 0.975
    # Bounds (module docstring): memory, time and model size stop growing with the training set.
    max_fit_rows: int | None = 300_000
    search_rows: int | None = 50_000
    tfidf_fit_rows: int | None = 100_000
    knn_max_per_class: int | None = 5_000
    scope_vocabulary_rows: int | None = 200_000
    seed: int = 42

    def as_params(self) -> dict[str, Any]:
        return {
            key: (list(value) if isinstance(value, tuple) else value) for key, value in asdict(self).items()
        }
