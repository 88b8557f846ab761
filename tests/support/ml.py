"""Shared set-up for the classifier tests (no tests here).

A synthetic corpus (the platform's own generator), embedded once per test process with the real
embedding model, split by time like ``marts.training_set``, and one model trained on it with small
grids. Settings point at a temporary data directory; the ONNX export of the embedding model is
shared across sessions (it takes ~30-60 s) unless ``TICKETOPS_MODEL_CACHE_DIR`` says otherwise.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import SecretStr

from ticket_assets.settings import Settings

CORPUS_SIZE = 600
CORPUS_SEED = 23
TEST_FRACTION = 0.2


def model_cache_dir() -> Path:
    configured = os.environ.get("TICKETOPS_MODEL_CACHE_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "ticketops-model-cache"


def ml_settings(
    data_dir: Path, pg_url: str | None = None, model_name: str = "ticket-triage-mltest"
) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=SecretStr(pg_url) if pg_url else None,
        model_cache_dir=model_cache_dir(),
        model_name=model_name,
    )


def tiny_config(**overrides: object):
    """Small grids: the tests check behaviour, not the best achievable score."""
    from ticket_assets.ml.train import TrainConfig

    defaults: dict[str, object] = {
        "cv_folds": 3,
        "tfidf_c_grid": (0.3, 1.0),
        "embedding_c_grid": (4.0,),
        "max_features": 30_000,
    }
    return TrainConfig(**(defaults | overrides))


def synthetic_training_set(n: int = CORPUS_SIZE, seed: int = CORPUS_SEED) -> pl.DataFrame:
    """Synthetic tickets shaped like ``marts.training_set``: the text as the mart builds it and a
    time-based split (the newest ``TEST_FRACTION`` are the holdout)."""
    from ticket_assets.core.text import model_text
    from ticket_assets.sources.synthetic import generate_tickets

    tickets = generate_tickets(n, seed=seed).sort("created_at", "ticket_id")
    texts = [model_text(title, body) for title, body in zip(tickets["title"], tickets["body"], strict=True)]
    n_test = round(tickets.height * TEST_FRACTION)
    return tickets.select(
        "ticket_id",
        pl.Series("text", texts),
        "title",
        "body",
        "topic",
        pl.col("topic").alias("topic_display"),
        "urgency",
        "channel",
        "department",
        "language",
        "created_at",
        pl.col("created_at").alias("event_at"),
        "text_hash",
        pl.Series("text_length", [len(t) for t in texts], dtype=pl.Int32),
        pl.Series("split", ["train"] * (tickets.height - n_test) + ["test"] * n_test),
        pl.lit("time").alias("split_rule"),
        "requester",
    )


@dataclass(frozen=True)
class Corpus:
    frame: pl.DataFrame
    train: pl.DataFrame
    test: pl.DataFrame
    train_embeddings: np.ndarray
    test_embeddings: np.ndarray
    embedding_model_id: str
    settings: Settings  # owns the embedder (data dir is a per-process temp dir)

    def embed(self, texts: list[str]) -> np.ndarray:
        from ticket_assets.ml.embed import get_embedder

        return get_embedder(self.settings).encode(texts)


@dataclass(frozen=True)
class TrainedWorld:
    corpus: Corpus
    outcome: object  # TrainingOutcome


_lock = threading.Lock()
_corpus: Corpus | None = None
_trained: TrainedWorld | None = None


def corpus() -> Corpus:
    global _corpus
    with _lock:
        if _corpus is None:
            from ticket_assets.ml.embed import get_embedder

            settings = ml_settings(Path(tempfile.mkdtemp(prefix="ticketops-mltest-")))
            embedder = get_embedder(settings)
            frame = synthetic_training_set()
            vectors = embedder.encode(frame["text"].to_list())
            is_train = (frame["split"] == "train").to_numpy()
            _corpus = Corpus(
                frame=frame,
                train=frame.filter(pl.col("split") == "train"),
                test=frame.filter(pl.col("split") == "test"),
                train_embeddings=vectors[is_train],
                test_embeddings=vectors[~is_train],
                embedding_model_id=embedder.model_id,
                settings=settings,
            )
        return _corpus


def trained() -> TrainedWorld:
    """One model trained on the corpus' train split, shared by the tests of this process."""
    global _trained
    data = corpus()
    with _lock:
        if _trained is None:
            from ticket_assets.ml.train import train_triage_model

            outcome = train_triage_model(
                data.train, data.train_embeddings, data.embedding_model_id, tiny_config()
            )
            _trained = TrainedWorld(corpus=data, outcome=outcome)
        return _trained
