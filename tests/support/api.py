"""Shared set-up for the API tests: a real trained model in a real MLflow store, a real KB index,
and a real uvicorn server. No test functions live here.

The expensive part (training + registering two model versions, embedding the KB) is built once
per test process, whichever API test module asks first.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from ticket_assets.core.paths import REPO_ROOT
from ticket_assets.settings import Settings

API_KEYS = ("test-key-alpha", "test-key-beta")
MODEL_NAME = "ticket-triage-apitest"


def model_cache_dir() -> Path:
    """The ONNX export takes ~30 s: share it across test sessions unless told otherwise."""
    configured = os.environ.get("TICKETOPS_MODEL_CACHE_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "ticketops-model-cache"


@dataclass(frozen=True)
class ApiWorld:
    settings: Settings  # data dir with the MLflow store and KB snapshot, test database, API keys
    first_version: str  # the champion
    second_version: str  # registered, not champion: hot-reload tests move the alias to it
    holdout_texts: list[str]


_world: ApiWorld | None = None
_world_lock = threading.Lock()


def api_world(pg_url: str, data_dir: Path) -> ApiWorld:
    global _world
    with _world_lock:
        if _world is None:
            _world = _build_world(pg_url, data_dir)
        return _world


def _build_world(pg_url: str, data_dir: Path) -> ApiWorld:
    from ticket_assets.core.text import model_text
    from ticket_assets.ml import registry
    from ticket_assets.ml.dataset import with_routing_columns
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.ml.pipeline import attach_tiers
    from ticket_assets.ml.train import TrainConfig, train_triage_model
    from ticket_assets.rag.index import publish
    from ticket_assets.sources.synthetic import generate_tickets

    settings = Settings(
        data_dir=data_dir,
        database_url=SecretStr(pg_url),
        model_cache_dir=model_cache_dir(),
        model_name=MODEL_NAME,
        api_keys=[SecretStr(key) for key in API_KEYS],
        model_poll_s=0.2,
        llm_base_url=None,
    )
    embedder = get_embedder(settings)

    tickets = generate_tickets(360, seed=11)
    texts = [model_text(title, body) for title, body in zip(tickets["title"], tickets["body"], strict=True)]
    # The generator's assignment_group (in labels) makes a routing target next to topic and urgency.
    frame = with_routing_columns(
        tickets.select("ticket_id", "topic", "urgency", "labels").with_columns(text=pl.Series(texts))
    )
    train, holdout = frame[:300], frame[300:]
    vectors = embedder.encode(train["text"].to_list())
    config = TrainConfig(cv_folds=2, tfidf_c_grid=(0.3,), embedding_c_grid=(4.0,), max_features=20_000)

    versions = []
    holdout_vectors = embedder.encode(holdout["text"].to_list())
    for candidates in (("stack",), ("tfidf",)):  # two genuinely different versions
        outcome = train_triage_model(
            train, vectors, embedder.model_id, replace(config, candidates=candidates)
        )
        if candidates == ("stack",):  # the champion carries a held-out tier table, the other none
            probabilities = outcome.model.predict_proba(
                holdout["text"].to_list(), holdout_vectors, embedder.model_id
            )
            attach_tiers(outcome.model, holdout, probabilities, {}, replace(config, tier_min_examples=5))
        registered = registry.log_training_run(
            outcome.model,
            metrics={"topic": {"macro_f1": 0.9, "accuracy": 0.9}},
            figures={},
            params={"candidates": list(candidates)},
            data_version={"rows": train.height, "generator": "synthetic:seed=11"},
            settings=settings,
            db_url=pg_url,
        )
        versions.append(registered.version)
    registry.promote(versions[0], "api-tests", "first champion", settings=settings, url=pg_url)

    publish(_kb_snapshot(settings, embedder), settings)
    return ApiWorld(settings, versions[0], versions[1], holdout["text"].to_list())


def _kb_snapshot(settings: Settings, embedder: Any) -> Any:
    """Build the KB snapshot, reusing a cached one with the same content hash (embedding ~250
    chunks is the slowest step of the set-up; the version hashes chunk ids and the model id)."""
    from ticket_assets.rag.index import SnapshotInfo, build_snapshot, snapshot_version
    from ticket_assets.rag.kb import chunk_article, load_articles

    chunks = [chunk for article in load_articles(REPO_ROOT / "kb") for chunk in chunk_article(article)]
    version = snapshot_version([c.chunk_id for c in chunks], embedder.model_id)
    cached = model_cache_dir() / "kb-snapshots" / f"kb-{version}.parquet"
    if not cached.exists():
        built = build_snapshot(chunks, embedder.encode([c.text for c in chunks]), embedder.model_id, settings)
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built.path, cached)
        return built
    settings.kb_snapshot_dir.mkdir(parents=True, exist_ok=True)
    path = settings.kb_snapshot_dir / cached.name
    shutil.copyfile(cached, path)
    return SnapshotInfo(
        version=version,
        path=path,
        n_chunks=len(chunks),
        n_articles=len({c.article_id for c in chunks}),
        model_id=embedder.model_id,
        dim=int(embedder.encode(["dimension probe"]).shape[1]),
    )


def move_champion(settings: Settings, version: str, url: str) -> None:
    from ticket_assets.ml import registry

    registry.set_alias(
        settings.model_name, "champion", version, "api-tests", "hot reload test", url, settings=settings
    )


def sample_prediction_row(
    text: str = "Outlook keeps asking for my password", topic: str = "email_calendar"
) -> Any:
    """A plausible prediction-log row, written without going through the API."""
    from serving.prediction_log import PredictionRow, text_fields

    stored, digest, chars = text_fields(text, redact=False)
    return PredictionRow(
        request_id=uuid.uuid4(),
        call_request_id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        endpoint="triage",
        text=stored,
        text_sha256=digest,
        text_chars=chars,
        channel="portal",
        topic=topic,
        topic_confidence=0.8,
        urgency="medium",
        urgency_confidence=0.6,
        probabilities={"topic": {topic: 0.8, "other": 0.2}, "urgency": {"medium": 0.6, "low": 0.4}},
        low_confidence=False,
        model_name="ticket-triage",
        model_version="3",
        answer_mode=None,
        kb_version=None,
        latency_ms=4.2,
    )


# Waiting and counting ------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def count_predictions(url: str, request_ids: Iterable[str] | None = None) -> int:
    with psycopg.connect(url) as conn:
        if request_ids is None:
            return conn.execute("select count(*) from ops.predictions").fetchone()[0]
        ids = list(request_ids)
        return conn.execute(
            "select count(*) from ops.predictions where request_id = any(%s::uuid[])", (ids,)
        ).fetchone()[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A real uvicorn server in a background thread ------------------------------------------------------
class ServerThread:
    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> ServerThread:
        self.thread.start()
        if not wait_for(lambda: self.server.started, timeout_s):
            raise RuntimeError("uvicorn did not start")
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Graceful shutdown (what SIGTERM triggers): in-flight requests finish, lifespan shutdown runs."""
        self.server.should_exit = True
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise RuntimeError("uvicorn did not stop")


@contextmanager
def running_server(app: FastAPI) -> Iterator[ServerThread]:
    server = ServerThread(app).start()
    try:
        yield server
    finally:
        if server.thread.is_alive():
            server.stop()


@contextmanager
def stored_memory(url: str, incidents: list, gaps: list, incident_run: str, gaps_run: str) -> Iterator[None]:
    """Incidents and KB gaps stored as the memory assets store them, removed afterwards: the
    session's database is shared, and the incident tests expect to start with none."""
    from ticket_assets.memory.incidents import store_incidents
    from ticket_assets.memory.kb_gaps import store_gaps

    with psycopg.connect(url) as conn:
        store_incidents(conn, [(incident, None) for incident in incidents], "model", incident_run)
        store_gaps(conn, gaps, gaps_run)
    try:
        yield
    finally:
        with psycopg.connect(url) as conn:
            conn.execute(
                "delete from ops.incidents where incident_id = any(%s)", ([i.incident_id for i in incidents],)
            )
            conn.execute("delete from ops.kb_gaps where run_id = %s", (gaps_run,))
