"""Out-of-scope detection: how unlike the training tickets a new ticket is.

A classifier's softmax stays confident far from its training data (another organisation's tickets
score a mean confidence of ~0.8), so confidence cannot say "this is not the kind of ticket I know".
Two signals, each with a threshold at a quantile of held-out in-domain scores:

* meaning: one minus the mean cosine similarity of the ``k`` nearest training tickets in embedding
  space (held-out = training tickets scored against the others, leave-one-out);
* wording: the share of a ticket's words never seen in training (held-out = a tenth of the
  training texts against a vocabulary built from the rest; the shipped vocabulary is that one).
  Another organisation's export shares the meaning of IT tickets but not their words: the
  embedding alone flagged 34 % of such tickets, with the wording signal 80 % (BENCHMARKS.md).

``score`` is the larger of the two signals divided by its threshold: over 1 is out of scope. Each
threshold sits at ``1 - (1 - quantile) / 2`` so the two together flag about ``1 - quantile`` of
tickets like the training data.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_K = 10
DEFAULT_QUANTILE = 0.975
CALIBRATION_ROWS = 3000
# The wording vocabulary keeps at most this many words (the most frequent): names, hosts and codes
# make a help desk's vocabulary grow with every export, and the model must not.
MAX_VOCABULARY = 200_000
_WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def unseen_share(texts: Sequence[str], vocabulary: frozenset[str]) -> np.ndarray:
    """Per text, the share of its words not in ``vocabulary`` (1 for a text without words)."""
    out = np.ones(len(texts))
    for i, text in enumerate(texts):
        words = _words(text)
        if words:
            out[i] = sum(word not in vocabulary for word in words) / len(words)
    return out


@dataclass
class OutOfScopeDetector:
    reference: np.ndarray  # (n, dim) float32, L2-normalised training embeddings
    threshold: float
    k: int = DEFAULT_K
    calibration: dict[str, Any] = field(default_factory=dict)
    vocabulary: frozenset[str] | None = None  # words seen in training (None: meaning signal only)
    unseen_threshold: float = float("inf")
    # Ticket ids of the reference rows (same order), when training knew them: names the neighbours.
    reference_ids: tuple[str, ...] | None = None

    def score(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The larger signal over its threshold, per ticket: over 1 is out of scope."""
        return self.score_and_neighbours(embeddings, texts, 0)[0]

    def score_and_neighbours(
        self, embeddings: np.ndarray, texts: Sequence[str], n: int = 3
    ) -> tuple[np.ndarray, list[list[str]]]:
        """``score`` and, per ticket, the ids of its ``n`` nearest training tickets, most similar
        first: the neighbours the meaning signal found anyway (empty without ``reference_ids``)."""
        distance, nearest = self._nearest(embeddings, exclude_self=False)
        score = distance / self.threshold
        if self.vocabulary is not None:
            score = np.maximum(score, unseen_share(texts, self.vocabulary) / self.unseen_threshold)
        ids = getattr(self, "reference_ids", None)  # detectors pickled before ids were kept
        if not n or ids is None:
            return score, [[] for _ in range(len(score))]
        return score, [[ids[j] for j in row[:n]] for row in nearest]

    def scores(self, embeddings: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
        """One minus the mean cosine similarity of the ``k`` nearest reference vectors (0 = a
        training ticket's twin, ~1 = unrelated). ``exclude_self`` drops each row's best match,
        for rows that are themselves in the reference."""
        return self._nearest(embeddings, exclude_self=exclude_self)[0]

    def _nearest(self, embeddings: np.ndarray, *, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
        """(1 - mean top-k cosine, the top-k reference rows most similar first) per ticket."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        k = min(self.k + int(exclude_self), len(self.reference))
        out = np.empty(len(embeddings), dtype=np.float64)
        rows = np.empty((len(embeddings), k - int(exclude_self)), dtype=np.int64)
        for start in range(0, len(embeddings), 1024):
            similarity = embeddings[start : start + 1024] @ self.reference.T
            # argpartition instead of partition: the same selection, and it says which rows.
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(similarity, nearest, axis=1)
            order = np.argsort(-top, axis=1)  # k values per ticket: cheap
            top = np.take_along_axis(top, order, axis=1)
            nearest = np.take_along_axis(nearest, order, axis=1)
            if exclude_self:  # drop the largest: the row itself
                top, nearest = top[:, 1:], nearest[:, 1:]
            out[start : start + len(top)] = 1.0 - top.mean(axis=1)
            rows[start : start + len(top)] = nearest
        return out, rows


def fit_out_of_scope(
    embeddings: np.ndarray,
    texts: Sequence[str] | None = None,
    *,
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    calibration_rows: int = CALIBRATION_ROWS,
    max_vocabulary: int = MAX_VOCABULARY,
    seed: int = 0,
    ids: Sequence[str] | None = None,
) -> OutOfScopeDetector:
    """A detector over ``embeddings`` (shared, not copied, when already float32 and contiguous)
    and, given ``texts``, their words (see the module docstring for the calibration); ``ids``
    (one per row) let it name a ticket's nearest training tickets."""
    reference = np.ascontiguousarray(embeddings, dtype=np.float32)
    if len(reference) < 2:
        raise ValueError("out-of-scope detection needs at least two training tickets")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(reference), size=min(calibration_rows, len(reference)), replace=False)
    if ids is not None and len(ids) != len(reference):
        raise ValueError(f"{len(ids)} ids for {len(reference)} training embeddings")
    detector = OutOfScopeDetector(
        reference=reference,
        threshold=float("inf"),
        k=min(k, len(reference) - 1),
        reference_ids=None if ids is None else tuple(str(i) for i in ids),
    )
    each = 1 - (1 - quantile) / 2 if texts is not None else quantile
    held_out = detector.scores(reference[rows], exclude_self=True)
    detector.threshold = max(float(np.quantile(held_out, each)), 1e-6)
    if texts is not None:
        order = rng.permutation(len(texts))
        n_held = max(1, min(calibration_rows, len(texts) // 10))
        counts = Counter(word for i in order[n_held:] for word in set(_words(texts[i])))
        detector.vocabulary = frozenset(word for word, n in counts.most_common(max_vocabulary) if n >= 2)
        unseen = unseen_share([texts[i] for i in order[:n_held]], detector.vocabulary)
        detector.unseen_threshold = max(float(np.quantile(unseen, each)), 1e-3)
    detector.calibration = {
        "quantile": quantile,
        "k": detector.k,
        "calibration_rows": len(rows),
        "threshold": detector.threshold,
        "unseen_threshold": detector.unseen_threshold if texts is not None else None,
        "vocabulary": len(detector.vocabulary or ()),
        "held_out_median": float(np.median(held_out)),
    }
    return detector
