"""Out-of-scope detection: how unlike the training tickets a new ticket is.

A classifier's softmax stays confident far from its training data (another organisation's tickets
score a mean confidence of ~0.8), so confidence cannot say "this is not the kind of ticket I know".
Distance in embedding space can: the score is one minus the mean cosine similarity of the ``k``
nearest training tickets. The threshold is the ``quantile`` of the scores of held-out in-domain
tickets (training tickets scored against the others, leave-one-out), so about ``1 - quantile`` of
tickets like the training data are flagged, whatever the embedding model's similarity scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_K = 10
DEFAULT_QUANTILE = 0.975
CALIBRATION_ROWS = 3000


@dataclass
class OutOfScopeDetector:
    reference: np.ndarray  # (n, dim) float32, L2-normalised training embeddings
    threshold: float
    k: int = DEFAULT_K
    calibration: dict[str, Any] = field(default_factory=dict)

    def scores(self, embeddings: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
        """One minus the mean cosine similarity of the ``k`` nearest reference vectors (0 = a
        training ticket's twin, ~1 = unrelated). ``exclude_self`` drops each row's best match,
        for rows that are themselves in the reference."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        k = min(self.k + int(exclude_self), len(self.reference))
        out = np.empty(len(embeddings), dtype=np.float64)
        for start in range(0, len(embeddings), 1024):
            similarity = embeddings[start : start + 1024] @ self.reference.T
            top = -np.partition(-similarity, k - 1, axis=1)[:, :k]
            if exclude_self:
                top = np.sort(top, axis=1)[:, :-1]  # drop the largest: the row itself
            out[start : start + len(top)] = 1.0 - top.mean(axis=1)
        return out

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold


def fit_out_of_scope(
    embeddings: np.ndarray,
    *,
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    calibration_rows: int = CALIBRATION_ROWS,
    seed: int = 0,
) -> OutOfScopeDetector:
    """A detector over ``embeddings`` (shared, not copied, when already float32 and contiguous),
    its threshold the ``quantile`` of leave-one-out scores of up to ``calibration_rows`` of them."""
    reference = np.ascontiguousarray(embeddings, dtype=np.float32)
    if len(reference) < 2:
        raise ValueError("out-of-scope detection needs at least two training tickets")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(reference), size=min(calibration_rows, len(reference)), replace=False)
    detector = OutOfScopeDetector(reference=reference, threshold=float("inf"), k=min(k, len(reference) - 1))
    held_out = detector.scores(reference[rows], exclude_self=True)
    detector.threshold = float(np.quantile(held_out, quantile))
    detector.calibration = {
        "quantile": quantile,
        "k": detector.k,
        "calibration_rows": len(rows),
        "threshold": detector.threshold,
        "held_out_median": float(np.median(held_out)),
    }
    return detector
