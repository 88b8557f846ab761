"""The trained triage model as a plain Python object, and its MLflow pyfunc wrapper.

``TriageModel`` is what training produces, the registry stores and the API serves. One TF-IDF
vectorizer is shared by every target (topic, urgency); each target has up to three base models
(a linear SVM on TF-IDF, a logistic regression and a nearest-neighbour vote on sentence
embeddings) and a ``StackCalibrator`` fitted on their out-of-fold scores, which weighs them and
turns the result into calibrated probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from threadpoolctl import ThreadpoolController

from ticket_assets.core.labels import LabelMap
from ticket_assets.ml.features import TextFeatures
from ticket_assets.ml.reasons import TermReasons
from ticket_assets.ml.scope import OutOfScopeDetector
from ticket_assets.settings import Settings

try:  # the wrapper is only needed where MLflow is installed (training, registry, serving)
    import mlflow.pyfunc

    _PythonModel: type = mlflow.pyfunc.PythonModel
except ImportError:  # pragma: no cover
    _PythonModel = object

# Log-probabilities are clipped so a zero probability does not become an infinite feature.
_LOG_FLOOR = -30.0
NEAREST_REASONS = 3  # training tickets named in a prediction's reasons


# Which settings the model's own embedder comes from when the caller passes no vectors. Callers in
# the platform set them (the registry while MLflow runs the model once at logging); only the pyfunc
# wrapper, in a process MLflow itself started, falls back to the environment's settings.
_embedder_settings: ContextVar[Settings | None] = ContextVar("embedder_settings", default=None)


@contextmanager
def embedder_settings(settings: Settings | None) -> Iterator[None]:
    token = _embedder_settings.set(settings)
    try:
        yield
    finally:
        _embedder_settings.reset(token)


class EmbeddingMismatchError(ValueError):
    """Vectors from another embedding model would silently degrade every prediction."""


@dataclass
class TargetModel:
    """The classifier of one target (``topic`` or ``urgency``)."""

    target: str
    candidate: str
    labels: list[str]
    calibrator: StackCalibrator
    svc: LinearSVC | None = None
    embedding_lr: LogisticRegression | None = None
    knn: EmbeddingKNN | None = None
    most_urgent: str | None = None

    @property
    def needs_embeddings(self) -> bool:
        return self.embedding_lr is not None or self.knn is not None

    def base_scores(self, tfidf: sp.csr_matrix | None, embeddings: np.ndarray | None) -> list[np.ndarray]:
        """Each base model's scores, in the order the calibrator was fitted on."""
        parts: list[np.ndarray] = []
        if self.svc is not None:
            parts.append(base_scores(self.svc, tfidf))
        if self.embedding_lr is not None:
            parts.append(base_scores(self.embedding_lr, embeddings))
        if self.knn is not None:
            parts.append(base_scores(self.knn, embeddings))
        return parts

    def predict_proba(self, tfidf: sp.csr_matrix | None, embeddings: np.ndarray | None) -> np.ndarray:
        """Probabilities with columns in ``self.labels`` order."""
        return self.calibrator.predict_proba(self.base_scores(tfidf, embeddings))


class StackCalibrator:
    """Weighted sum of the base models' per-class scores plus a per-class bias, through a softmax.

    ``logit_k = sum_b w_b * score_bk + bias_k``, with ``w_b = a_b + c_b * gate_b`` for a base that
    appends a gate column (kNN: its top-1 similarity, so near-duplicates are trusted more).
    Fitted by minimising the log-loss on out-of-fold scores. A few parameters instead of a full
    multinomial regression over all score columns: as good on 30k tickets (macro-F1 within 0.003),
    far better on a few hundred (it cannot overfit the classes' cross-terms), and ~100x faster.
    """

    def __init__(self, bias_l2: float = 1e-3) -> None:
        self.bias_l2 = bias_l2

    def fit(self, parts: list[np.ndarray], y: Sequence[str]) -> StackCalibrator:
        from scipy.optimize import minimize

        self.classes_, y_index = np.unique(np.asarray(y, dtype=object), return_inverse=True)
        n_classes = len(self.classes_)
        self.gated_ = [part.shape[1] == n_classes + 1 for part in parts]
        one_hot = np.eye(n_classes)[y_index]
        initial = np.concatenate([np.ones(len(parts)), np.zeros(len(parts)), np.zeros(n_classes)])
        result = minimize(
            self._loss_and_gradient, initial, args=(parts, one_hot), jac=True, method="L-BFGS-B"
        )
        self.params_ = result.x
        return self

    def predict_proba(self, parts: list[np.ndarray]) -> np.ndarray:
        return _softmax(self._logits(parts, self.params_) + getattr(self, "prior_shift_", 0.0))

    def correct_prior(self, alpha: float, counts: dict[str, int]) -> StackCalibrator:
        """Divide each class's probability by its training prior to the power ``alpha`` (then
        renormalise). Log-loss fitting makes the bias follow the class priors, so a class learned
        from 2 examples rarely wins; alpha > 0 trades some calibration for macro-F1 on long tails.
        Chosen by cross-validated macro-F1 (0 on balanced data)."""
        prior = np.array([counts[label] for label in self.classes_], dtype=np.float64)
        self.prior_shift_ = -alpha * np.log(prior / prior.sum())
        self.prior_alpha_ = alpha
        return self

    def _logits(self, parts: list[np.ndarray], params: np.ndarray) -> np.ndarray:
        n_parts, n_classes = len(parts), len(self.classes_)
        logits = np.tile(params[2 * n_parts :], (parts[0].shape[0], 1))
        for i, part in enumerate(parts):
            logits += self._weight(i, part, params)[:, None] * part[:, :n_classes]
        return logits

    def _weight(self, i: int, part: np.ndarray, params: np.ndarray) -> np.ndarray:
        weight = np.full(part.shape[0], params[i])
        if self.gated_[i]:
            weight += params[len(self.gated_) + i] * part[:, -1]
        return weight

    def _loss_and_gradient(
        self, params: np.ndarray, parts: list[np.ndarray], one_hot: np.ndarray
    ) -> tuple[float, np.ndarray]:
        n_parts, n_rows = len(parts), one_hot.shape[0]
        n_classes = one_hot.shape[1]
        log_p = _log_softmax(self._logits(parts, params))
        bias = params[2 * n_parts :]
        loss = -(one_hot * log_p).sum() / n_rows + self.bias_l2 * float(bias @ bias)
        residual = (np.exp(log_p) - one_hot) / n_rows  # d loss / d logits
        gradient = np.zeros_like(params)
        for i, part in enumerate(parts):
            inner = (residual * part[:, :n_classes]).sum(axis=1)
            gradient[i] = inner.sum()
            if self.gated_[i]:
                gradient[n_parts + i] = (inner * part[:, -1]).sum()
        gradient[2 * n_parts :] = residual.sum(axis=0) + 2 * self.bias_l2 * bias
        return loss, gradient


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(logits))


class EmbeddingKNN:
    """Similarity-weighted votes of the nearest training tickets in embedding space.

    Help desks see the same request again and again in slightly different words; the nearest
    neighbours catch those near-duplicates better than a linear boundary does (+1 point macro-F1 on
    the real-ticket benchmark when stacked). Vectors are L2-normalised, so a dot product is the
    cosine similarity. Scores: log vote share per class, plus the top-1 similarity (how close the
    nearest known ticket is, i.e. how much to trust the votes).

    ``max_per_class`` bounds the model: at most that many training vectors of each class are kept
    (a seeded random sample), so the pickled model and each query's scan stop growing with the
    training set. ``kept_`` holds the kept rows' positions among the training rows (training adds
    their ticket ids as ``ticket_ids_``, so a neighbour can be named).
    """

    def __init__(
        self,
        n_neighbors: int = 20,
        temperature: float = 0.05,
        max_per_class: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.temperature = temperature
        self.max_per_class = max_per_class
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict[str, Any]:  # lets sklearn.clone copy it
        return {
            "n_neighbors": self.n_neighbors,
            "temperature": self.temperature,
            "max_per_class": self.max_per_class,
            "seed": self.seed,
        }

    def fit(self, embeddings: np.ndarray, y: Sequence[str]) -> EmbeddingKNN:
        y = np.asarray(y, dtype=object)
        self.kept_ = per_class_sample(y, self.max_per_class, self.seed)
        self.classes_ = np.unique(y)
        self.label_index_ = np.searchsorted(self.classes_, y[self.kept_])
        # Only the kept rows are copied (nothing extra when every row is kept).
        kept = self.kept_ if len(self.kept_) < len(y) else slice(None)
        self.reference_ = np.ascontiguousarray(embeddings[kept], dtype=np.float32)
        return self

    def scores(self, embeddings: np.ndarray, chunk: int = 2048) -> np.ndarray:
        n_classes = len(self.classes_)
        k = min(self.n_neighbors, len(self.reference_))
        out = np.zeros((len(embeddings), n_classes + 1))
        for start in range(0, len(embeddings), chunk):
            similarity = np.asarray(embeddings[start : start + chunk], dtype=np.float32) @ self.reference_.T
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(similarity, nearest, axis=1)
            # Softmax-style weights: a near-duplicate outvotes several loosely related tickets.
            weights = np.exp((top - top.max(axis=1, keepdims=True)) / self.temperature)
            rows = np.repeat(np.arange(len(top)), k)
            votes = np.bincount(
                rows * n_classes + self.label_index_[nearest].ravel(),
                weights=weights.ravel(),
                minlength=len(top) * n_classes,
            ).reshape(len(top), n_classes)
            shares = votes / votes.sum(axis=1, keepdims=True)
            out[start : start + len(top), :n_classes] = np.log(shares + 1e-4)
            out[start : start + len(top), n_classes] = top.max(axis=1)
        return out


def per_class_sample(y: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices keeping at most ``cap`` rows of each class (every row when ``cap`` is None)."""
    if cap is None:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    _, index = np.unique(np.asarray(y, dtype=object), return_inverse=True)
    keep = []
    for label in range(index.max() + 1):
        rows = np.flatnonzero(index == label)
        keep.append(rows if len(rows) <= cap else rng.choice(rows, size=cap, replace=False))
    return np.sort(np.concatenate(keep))


def base_scores(model: LinearSVC | LogisticRegression | EmbeddingKNN, features: Any) -> np.ndarray:
    """What a base model hands the calibrator: one column per class (SVM margins, clipped
    log-probabilities, or log kNN vote shares), kNN adding its gate column."""
    if isinstance(model, LinearSVC):
        margins = model.decision_function(features).reshape(features.shape[0], -1)
        # Binary: one margin, positive = classes_[1]; as two columns every base has one per class.
        return np.hstack([-margins / 2, margins / 2]) if margins.shape[1] == 1 else margins
    if isinstance(model, EmbeddingKNN):
        return model.scores(features)
    return np.maximum(model.predict_log_proba(features), _LOG_FLOOR)


@dataclass(frozen=True)
class TriagePrediction:
    topic: str
    topic_confidence: float
    topic_probabilities: dict[str, float]
    urgency: str | None = None
    urgency_confidence: float | None = None
    urgency_probabilities: dict[str, float] | None = None
    # Routing targets: name -> {"label", "confidence", "probabilities"}
    routing: dict[str, dict[str, Any]] = field(default_factory=dict)
    out_of_scope: bool | None = None  # None: the model has no out-of-scope detector
    out_of_scope_score: float | None = None
    topic_terms: tuple[str, ...] = ()  # words that pushed the TF-IDF model towards the topic
    nearest_ticket_ids: tuple[str, ...] = ()  # the most similar training tickets (out-of-scope kNN)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_of_scope": self.out_of_scope,
            "out_of_scope_score": self.out_of_scope_score,
            "topic_terms": list(self.topic_terms),
            "nearest_ticket_ids": list(self.nearest_ticket_ids),
            "topic": self.topic,
            "topic_confidence": self.topic_confidence,
            "topic_probabilities": self.topic_probabilities,
            "urgency": self.urgency,
            "urgency_confidence": self.urgency_confidence,
            "urgency_probabilities": self.urgency_probabilities,
            "routing": self.routing,
        }


@dataclass
class TriageModel:
    vectorizer: TextFeatures
    targets: dict[str, TargetModel]
    embedding_model_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    scope: OutOfScopeDetector | None = None

    @property
    def needs_embeddings(self) -> bool:
        return getattr(self, "scope", None) is not None or any(
            model.needs_embeddings for model in self.targets.values()
        )

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_reasons"}

    def labels(self, target: str) -> list[str]:
        return list(self.targets[target].labels)

    def tier_thresholds(self) -> dict[str, dict[str, dict[str, float]]] | None:
        """target -> class -> tier -> threshold from the held-out tier table (None: trained without)."""
        rows = self.metadata.get("tiers")
        if rows is None:
            return None
        cached = getattr(self, "_tier_cache", None)
        if cached is None:
            from ticket_assets.ml.tiers import thresholds

            cached = thresholds(rows)
            self._tier_cache = cached  # not a field: computed once per loaded model
        return cached

    @property
    def topic_names(self) -> LabelMap:
        """Display names of the topic keys, registered with the model (keys when absent)."""
        return LabelMap(self.metadata.get("topic_display", {}))

    def predict_proba(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None = None,
        embedding_model_id: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-target probability matrices (rows follow ``texts``, columns ``labels(target)``)."""
        texts = list(texts)
        if not texts:
            return {name: np.zeros((0, len(model.labels))) for name, model in self.targets.items()}
        tfidf = self.vectorizer.transform(texts) if self._needs_tfidf else None
        embeddings = self._embeddings(texts, embeddings, embedding_model_id)
        return self._probabilities(tfidf, embeddings)

    def _probabilities(
        self, tfidf: sp.csr_matrix | None, embeddings: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        # Single-threaded BLAS: a request's matrices are small, and BLAS threads spinning for a core
        # another process holds turn the kNN scan's ~1.5 ms into ~8 ms (measured, 2 busy cores).
        with _blas_controller().limit(limits=1, user_api="blas"):
            return {name: model.predict_proba(tfidf, embeddings) for name, model in self.targets.items()}

    def predict(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None = None,
        embedding_model_id: str | None = None,
        *,
        explain: bool = True,
    ) -> list[TriagePrediction]:
        """Triage tickets. Pass ``embeddings`` (rows follow ``texts``) when the caller already has
        them, e.g. the API embeds once for both triage and retrieval. ``explain=False`` skips the
        out-of-scope score and the term reasons."""
        texts = list(texts)
        if not texts:
            return []
        tfidf = self.vectorizer.transform(texts) if self._needs_tfidf else None
        embeddings = self._embeddings(texts, embeddings, embedding_model_id)
        probabilities = self._probabilities(tfidf, embeddings)
        scope = getattr(self, "scope", None) if explain else None
        if scope is not None:
            with _blas_controller().limit(limits=1, user_api="blas"):  # as for the kNN scan (below)
                oos, neighbours = scope.score_and_neighbours(embeddings, texts, NEAREST_REASONS)
        else:
            oos, neighbours = [None] * len(texts), [[] for _ in texts]
        topic = _decode(self.targets["topic"].labels, probabilities["topic"])
        urgency = (
            _decode(self.targets["urgency"].labels, probabilities["urgency"])
            if "urgency" in probabilities
            else [(None, None, None)] * len(topic)
        )
        routing = {
            name: _decode(self.targets[name].labels, probabilities[name]) for name in self.routing_targets
        }
        reasons = self._term_reasons() if explain else None
        return [
            TriagePrediction(
                out_of_scope=None if score is None else bool(score > 1.0),
                out_of_scope_score=None if score is None else float(score),
                topic_terms=tuple(reasons.terms(tfidf[i], t_label)) if reasons is not None else (),
                nearest_ticket_ids=tuple(neighbours[i]),
                topic=t_label,
                topic_confidence=t_conf,
                topic_probabilities=t_probs,
                urgency=u_label,
                urgency_confidence=u_conf,
                urgency_probabilities=u_probs,
                routing={
                    name: dict(zip(("label", "confidence", "probabilities"), decoded[i], strict=True))
                    for name, decoded in routing.items()
                },
            )
            for i, ((t_label, t_conf, t_probs), (u_label, u_conf, u_probs), score) in enumerate(
                zip(topic, urgency, oos, strict=True)
            )
        ]

    def _term_reasons(self) -> TermReasons | None:
        svc = self.targets["topic"].svc
        if svc is None:
            return None
        if getattr(self, "_reasons", None) is None:
            self._reasons = TermReasons(self.vectorizer, svc)
        return self._reasons

    @property
    def routing_targets(self) -> list[str]:
        """Targets besides topic and urgency (assignment group, queue...), in training order."""
        return [name for name in self.targets if name not in ("topic", "urgency")]

    @property
    def _needs_tfidf(self) -> bool:
        return any(model.svc is not None for model in self.targets.values())

    def _embeddings(
        self, texts: list[str], embeddings: np.ndarray | None, embedding_model_id: str | None
    ) -> np.ndarray | None:
        if not self.needs_embeddings:
            return None
        if embeddings is not None:
            if embedding_model_id is not None and embedding_model_id != self.embedding_model_id:
                raise EmbeddingMismatchError(
                    f"model was trained on {self.embedding_model_id!r} vectors, got {embedding_model_id!r}"
                )
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.shape[0] != len(texts):
                raise ValueError(f"{embeddings.shape[0]} embeddings for {len(texts)} texts")
            return embeddings
        from ticket_assets.ml.embed import get_embedder

        settings = _embedder_settings.get()
        if settings is None:
            raise RuntimeError(
                "the model needs embeddings: pass them, or name the embedder's settings with embedder_settings()"
            )
        embedder = get_embedder(settings)
        if embedder.model_id != self.embedding_model_id:
            raise EmbeddingMismatchError(
                f"model was trained on {self.embedding_model_id!r} vectors but the configured "
                f"embedder is {embedder.model_id!r} (set TICKETOPS_EMBED_RUNTIME to match)"
            )
        return embedder.encode(texts)


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    """Created once (it scans the loaded libraries); switching a limit on and off costs ~10 us."""
    return ThreadpoolController()


def _decode(labels: list[str], probabilities: np.ndarray) -> list[tuple[str, float, dict[str, float]]]:
    best = probabilities.argmax(axis=1)
    return [
        (labels[i], float(row[i]), {label: float(p) for label, p in zip(labels, row, strict=True)})
        for i, row in zip(best, probabilities, strict=True)
    ]


class TriagePyfunc(_PythonModel):
    """MLflow pyfunc: DataFrame with a ``text`` column in, one row of labels and confidences out.

    The ``TriageModel`` is stored as a joblib artifact (not pickled into this wrapper) so the
    registry can also load it directly; ``unwrap_python_model().model`` gives it back.
    """

    ARTIFACT_KEY = "triage_model"

    def __init__(self, model: TriageModel | None = None) -> None:
        self.model = model

    def load_context(self, context: Any) -> None:
        import joblib

        self.model = joblib.load(context.artifacts[self.ARTIFACT_KEY])

    # A DataFrame hint tells MLflow to take the schema from the logged signature.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.model is None:
            raise RuntimeError("model not loaded")
        texts = [str(text) for text in model_input["text"].tolist()]
        # Outside the platform (``mlflow models serve``, ``mlflow.pyfunc.load_model`` in a process of
        # its own) nothing names the settings: the environment configures the embedder there.
        with embedder_settings(_embedder_settings.get() or Settings()):
            predictions = self.model.predict(texts)
        return pd.DataFrame(
            {
                "topic": [p.topic for p in predictions],
                "topic_confidence": [p.topic_confidence for p in predictions],
                "urgency": [p.urgency for p in predictions],
                "urgency_confidence": [p.urgency_confidence for p in predictions],
            }
        )
