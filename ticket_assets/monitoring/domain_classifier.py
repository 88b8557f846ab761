"""Input drift on text: a domain classifier that tries to tell reference embeddings from current ones.

Why a classifier rather than per-dimension tests:

- It sees multivariate shifts. A new topic or new product names move tickets to a different
  region of the 384-d embedding space while most single coordinates keep their marginal
  distribution; per-dimension tests (K-S, Wasserstein per component) need a correction for 384
  tests and still miss shifts that only show in combinations of coordinates.
- It is robust to sample size. The statistic is a cross-validated ROC AUC, which does not drift
  towards "significant" as windows grow the way p-values do, and its noise at a given window size
  is small and measurable (see ``benchmarks/bench_drift.py``), so one fixed threshold works.
- It is interpretable. AUC 0.5 means the classifier cannot tell the windows apart; when a share
  ``s`` of the current tickets is entirely new and the rest unchanged, the best achievable AUC is
  about ``0.5 + s / 2``.

Evidently 0.7.23 has a "model" embeddings-drift method, but it scores a single 50/50 split with an
untuned SGD classifier (noisy at a few hundred rows) and its metric always fits a t-SNE for the
plot, which takes tens of seconds on 2 cores. So the statistic is computed here with scikit-learn
(stratified k-fold, out-of-fold scores) and shown in the Evidently report through a small custom
metric (``ticket_assets.monitoring.evidently_metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DomainClassifierResult:
    auc: float
    n_reference: int  # rows used, after dropping exact duplicates
    n_current: int
    folds: int
    reference_scores: np.ndarray  # out-of-fold P(current) for each reference row
    current_scores: np.ndarray


def distinct_rows(vectors: np.ndarray) -> np.ndarray:
    """Exact duplicates dropped, first occurrences kept in order.

    The training mart is deduplicated while live traffic has re-submissions; identical rows split
    across folds would let the classifier recognise rows instead of learning distributions.
    """
    if len(vectors) == 0:
        return vectors
    _, first = np.unique(vectors, axis=0, return_index=True)
    return vectors[np.sort(first)]


def domain_classifier_auc(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    folds: int = 5,
    c: float = 1.0,
    seed: int = 0,
) -> DomainClassifierResult:
    """Cross-validated ROC AUC of a logistic regression separating ``current`` from ``reference``.

    Every row is scored by the fold model that did not see it, and one AUC is computed over all
    out-of-fold scores. Same inputs and seed give the same AUC.
    """
    # Here, not at module level: scikit-learn takes most of a second to import.
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    reference = distinct_rows(np.asarray(reference, dtype=np.float32))
    current = distinct_rows(np.asarray(current, dtype=np.float32))
    if min(len(reference), len(current)) < folds:
        raise ValueError(
            f"need at least {folds} distinct rows on each side, got {len(reference)} and {len(current)}"
        )
    features = np.vstack([reference, current])
    is_current = np.concatenate(
        [np.zeros(len(reference), dtype=np.int8), np.ones(len(current), dtype=np.int8)]
    )
    scores = np.empty(len(features), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One BLAS thread: these fits are small, and with other work on 2 cores multi-threaded BLAS
    # made them 10-30x slower in measurements.
    with threadpool_limits(limits=1):
        for train_rows, test_rows in splitter.split(features, is_current):
            model = LogisticRegression(C=c, max_iter=1000)
            model.fit(features[train_rows], is_current[train_rows])
            scores[test_rows] = model.predict_proba(features[test_rows])[:, 1]
    return DomainClassifierResult(
        auc=float(roc_auc_score(is_current, scores)),
        n_reference=len(reference),
        n_current=len(current),
        folds=folds,
        reference_scores=scores[: len(reference)],
        current_scores=scores[len(reference) :],
    )
