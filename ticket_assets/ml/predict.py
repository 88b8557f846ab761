"""The trained triage model as a plain Python object, and its MLflow pyfunc wrapper.

``TriageModel`` is what training produces, the registry stores and the API serves. One TF-IDF
vectorizer is shared by every target (topic, urgency); each target has up to two base models
(a linear SVM on TF-IDF, a logistic regression on sentence embeddings) and a calibrator — a small
multinomial logistic regression over the base models' scores, fitted on out-of-fold scores — that
turns them into probabilities (for the stacked candidate it is also the combiner).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from ticket_assets.ml.features import TextFeatures

try:  # the wrapper is only needed where MLflow is installed (training, registry, serving)
    import mlflow.pyfunc

    _PythonModel: type = mlflow.pyfunc.PythonModel
except ImportError:  # pragma: no cover
    _PythonModel = object

CANDIDATES = ("tfidf", "embedding", "stack")
TARGETS = ("topic", "urgency")

# Log-probabilities are clipped so a zero probability does not become an infinite feature.
_LOG_FLOOR = -30.0


class EmbeddingMismatchError(ValueError):
    """Vectors from another embedding model would silently degrade every prediction."""


@dataclass
class TargetModel:
    """The classifier of one target (``topic`` or ``urgency``)."""

    target: str
    candidate: str
    labels: list[str]
    calibrator: LogisticRegression
    svc: LinearSVC | None = None
    embedding_lr: LogisticRegression | None = None
    most_urgent: str | None = None

    @property
    def needs_embeddings(self) -> bool:
        return self.embedding_lr is not None

    def meta_features(self, tfidf: sp.csr_matrix | None, embeddings: np.ndarray | None) -> np.ndarray:
        parts: list[np.ndarray] = []
        if self.svc is not None:
            parts.append(base_scores(self.svc, tfidf))
        if self.embedding_lr is not None:
            parts.append(base_scores(self.embedding_lr, embeddings))
        return meta_matrix(parts)

    def predict_proba(self, tfidf: sp.csr_matrix | None, embeddings: np.ndarray | None) -> np.ndarray:
        """Probabilities with columns in ``self.labels`` order."""
        return self.calibrator.predict_proba(self.meta_features(tfidf, embeddings))


def base_scores(model: LinearSVC | LogisticRegression, features: Any) -> np.ndarray:
    """What a base model hands the calibrator: SVM margins, or clipped log-probabilities."""
    if isinstance(model, LinearSVC):
        return model.decision_function(features).reshape(features.shape[0], -1)
    return np.maximum(model.predict_log_proba(features), _LOG_FLOOR)


def meta_matrix(parts: list[np.ndarray]) -> np.ndarray:
    """Binary LinearSVC gives one score column; the calibrator always sees a 2-D float matrix."""
    return np.hstack([np.asarray(p, dtype=np.float64) for p in parts])


@dataclass(frozen=True)
class TriagePrediction:
    topic: str
    topic_confidence: float
    topic_probabilities: dict[str, float]
    urgency: str | None = None
    urgency_confidence: float | None = None
    urgency_probabilities: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "topic_confidence": self.topic_confidence,
            "topic_probabilities": self.topic_probabilities,
            "urgency": self.urgency,
            "urgency_confidence": self.urgency_confidence,
            "urgency_probabilities": self.urgency_probabilities,
        }


@dataclass
class TriageModel:
    vectorizer: TextFeatures
    targets: dict[str, TargetModel]
    embedding_model_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_embeddings(self) -> bool:
        return any(model.needs_embeddings for model in self.targets.values())

    @property
    def has_urgency(self) -> bool:
        return "urgency" in self.targets

    def labels(self, target: str) -> list[str]:
        return list(self.targets[target].labels)

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
        return {name: model.predict_proba(tfidf, embeddings) for name, model in self.targets.items()}

    def predict(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None = None,
        embedding_model_id: str | None = None,
    ) -> list[TriagePrediction]:
        """Triage tickets. Pass ``embeddings`` (rows follow ``texts``) when the caller already has
        them, e.g. the API embeds once for both triage and retrieval."""
        probabilities = self.predict_proba(texts, embeddings, embedding_model_id)
        topic = _decode(self.targets["topic"].labels, probabilities["topic"])
        urgency = (
            _decode(self.targets["urgency"].labels, probabilities["urgency"])
            if "urgency" in probabilities
            else [(None, None, None)] * len(topic)
        )
        return [
            TriagePrediction(
                topic=t_label,
                topic_confidence=t_conf,
                topic_probabilities=t_probs,
                urgency=u_label,
                urgency_confidence=u_conf,
                urgency_probabilities=u_probs,
            )
            for (t_label, t_conf, t_probs), (u_label, u_conf, u_probs) in zip(topic, urgency, strict=True)
        ]

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

        embedder = get_embedder()
        if embedder.model_id != self.embedding_model_id:
            raise EmbeddingMismatchError(
                f"model was trained on {self.embedding_model_id!r} vectors but the configured "
                f"embedder is {embedder.model_id!r} (set TICKETOPS_EMBED_RUNTIME to match)"
            )
        return embedder.encode(texts)


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
        predictions = self.model.predict(texts)
        return pd.DataFrame(
            {
                "topic": [p.topic for p in predictions],
                "topic_confidence": [p.topic_confidence for p in predictions],
                "urgency": [p.urgency for p in predictions],
                "urgency_confidence": [p.urgency_confidence for p in predictions],
            }
        )
