"""The knowledge-base vector index: how it is published and how readers open it.

Decision — how the Dagster run (writer) and the API (reader) share the index:

qdrant-client's local mode locks its storage path to one process, and the Dagster run and the API
are different processes, so they cannot share an on-disk local collection. Instead:

* **Local mode (default).** The ``kb_index`` asset writes an immutable, versioned *snapshot*: one
  Parquet file of chunk payloads plus float32 vectors, named by a content hash of the chunk ids and
  the embedding model id, in ``settings.kb_snapshot_dir``. Publishing then atomically replaces a
  small ``CURRENT`` pointer file (write a temp file, fsync, ``os.replace``). Readers (the API, tests,
  the asset's own checks) load the snapshot the pointer names into an in-memory Qdrant collection
  (``QdrantClient(":memory:")``, cosine) — a few hundred chunks load in milliseconds — and the API
  re-checks the pointer periodically to hot-swap. Old snapshot files are pruned, but never the
  current one, and the newest few stay so a reader that has just read the pointer still finds its
  file.
* **Server mode (``QDRANT_URL`` set).** The asset upserts into a new collection
  ``kb_chunks_<version>`` and then switches the alias ``kb_chunks`` to it with one
  ``update_collection_aliases`` call (delete + create together, applied atomically by Qdrant), and
  deletes older versions beyond the last two. Readers query the alias.

Either way a reader never sees half an index: it sees the old version or the new one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
from qdrant_client import QdrantClient, models

from ticket_assets.core.files import read_pointer, write_pointer
from ticket_assets.core.passage import Passage
from ticket_assets.rag.kb import Chunk, kb_topic_for
from ticket_assets.rag.qdrant_alias import (
    alias_target,
    collections_with_prefix,
    server_client,
    switch_alias,
)
from ticket_assets.rag.relevance import LexicalIndex, article_relevance
from ticket_assets.settings import Settings

log = logging.getLogger(__name__)

ALIAS = "kb_chunks"
COLLECTION_PREFIX = f"{ALIAS}_"
SNAPSHOT_PREFIX = "kb-"
KEEP_SNAPSHOTS = 3  # the current one plus recent ones a reader may be about to open
_UPSERT_BATCH = 256
# Ranking bonuses for passages matching the ticket's topic / language (cosine units). Relevant
# passages score ~0.45-0.75 and a wrong-topic one is usually 0.2+ lower, so 0.1 breaks near-ties
# in favour of the triage without overriding a clearly better passage.
TOPIC_BOOST = 0.10
LANGUAGE_BOOST = 0.05
# A second section of an article must beat the next article by this much: diversity first.
REPEAT_PENALTY = 0.05
POOL = 64  # candidates ranked per non-strict search
# Stable namespace so a chunk id always maps to the same Qdrant point id (which must be a UUID).
_POINT_NAMESPACE = uuid.UUID("6f1c8a52-3b7e-4c1d-9a55-0b8e2f4d7c10")


class KnowledgeBaseUnavailable(RuntimeError):
    """No index has been published yet (or the published one cannot be read)."""


@dataclass(frozen=True)
class SnapshotInfo:
    version: str
    path: Path
    n_chunks: int
    n_articles: int
    model_id: str
    dim: int


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, chunk_id))


def snapshot_version(chunk_ids: Iterable[str], model_id: str) -> str:
    """Same chunks embedded by the same model -> same version, whatever the order they came in."""
    digest = hashlib.sha256(model_id.encode("utf-8"))
    for chunk_id in sorted(chunk_ids):
        digest.update(b"\x00" + chunk_id.encode("utf-8"))
    return digest.hexdigest()[:16]


# Writing --------------------------------------------------------------------------------------------


class _Encoder(Protocol):
    def encode(self, texts: Sequence[str], batch_size: int = ...) -> np.ndarray: ...


def load_stored_chunks(conn: Any) -> list[Chunk]:
    """The chunks in ``features.kb_chunks`` (what kb_chunks stored), by chunk id."""
    rows = conn.execute(
        "select chunk_id, article_id, title, topic, language, tags, heading, text"
        " from features.kb_chunks order by chunk_id"
    ).fetchall()
    return [
        Chunk(
            chunk_id=r[0],
            article_id=r[1],
            title=r[2],
            topic=r[3],
            language=r[4],
            tags=tuple(r[5]),
            heading=r[6],
            text=r[7],
        )
        for r in rows
    ]


def embed_chunks(chunks: Sequence[Chunk], embedder: _Encoder, batch_size: int = 64) -> np.ndarray:
    """Vectors for ``chunks``, embedded with their title/heading context (``Chunk.embedding_text``)."""
    return embedder.encode([chunk.embedding_text for chunk in chunks], batch_size=batch_size)


def build_snapshot(
    chunks: Sequence[Chunk], vectors: np.ndarray, model_id: str, settings: Settings
) -> SnapshotInfo:
    """Write the immutable snapshot file (idempotent: an existing file of that version is kept)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
        raise ValueError(f"need one vector per chunk: {len(chunks)} chunks, vectors of shape {vectors.shape}")
    if not chunks:
        raise ValueError("cannot build a knowledge-base snapshot without chunks")
    ids = [chunk.chunk_id for chunk in chunks]
    if len(set(ids)) != len(ids):
        raise ValueError("chunk ids must be unique")
    version = snapshot_version(ids, model_id)
    directory = settings.kb_snapshot_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{SNAPSHOT_PREFIX}{version}.parquet"
    if not path.exists():
        frame = _snapshot_frame(chunks, vectors, model_id)
        with tempfile.NamedTemporaryFile(
            dir=directory, prefix=".tmp-", suffix=".parquet", delete=False
        ) as tmp:
            frame.write_parquet(tmp.name)
        os.replace(tmp.name, path)
    return SnapshotInfo(
        version=version,
        path=path,
        n_chunks=len(chunks),
        n_articles=len({chunk.article_id for chunk in chunks}),
        model_id=model_id,
        dim=int(vectors.shape[1]),
    )


def _snapshot_frame(chunks: Sequence[Chunk], vectors: np.ndarray, model_id: str) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "chunk_id": [c.chunk_id for c in chunks],
            "article_id": [c.article_id for c in chunks],
            "title": [c.title for c in chunks],
            "topic": [c.topic for c in chunks],
            "language": [c.language for c in chunks],
            "tags": [list(c.tags) for c in chunks],
            "heading": [c.heading for c in chunks],
            "text": [c.text for c in chunks],
            "model_id": [model_id] * len(chunks),
        },
        schema_overrides={"tags": pl.List(pl.String), "topic": pl.String, "language": pl.String},
    )
    return frame.with_columns(pl.Series("vector", vectors, dtype=pl.Array(pl.Float32, vectors.shape[1])))


def publish(snapshot: SnapshotInfo, settings: Settings, server: QdrantClient | None = None) -> None:
    """Make ``snapshot`` the version readers open: the server alias (if configured) then the pointer.

    ``server`` overrides the client built from ``settings.qdrant_url`` (any QdrantClient works).
    """
    if server is not None or settings.qdrant_url:
        client = server or server_client(settings)
        publish_to_server(client, snapshot)
    os.utime(snapshot.path)  # re-publishing an older version (a rollback) makes it recent for pruning
    _write_pointer(snapshot, settings.kb_snapshot_dir)
    prune_snapshots(settings.kb_snapshot_dir, keep=KEEP_SNAPSHOTS)


def _write_pointer(snapshot: SnapshotInfo, directory: Path) -> None:
    record = {
        "version": snapshot.version,
        "file": snapshot.path.name,
        "n_chunks": snapshot.n_chunks,
        "n_articles": snapshot.n_articles,
        "model_id": snapshot.model_id,
        "dim": snapshot.dim,
    }
    write_pointer(directory, record)


def prune_snapshots(directory: Path, keep: int = KEEP_SNAPSHOTS) -> list[Path]:
    """Delete all but the ``keep`` most recent snapshot files; never the one the pointer names."""
    current = read_pointer(directory)
    protected = {current["file"]} if current else set()
    files = sorted(
        directory.glob(f"{SNAPSHOT_PREFIX}*.parquet"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    removed = []
    for path in files[keep:]:
        if path.name not in protected:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def publish_to_server(client: QdrantClient, snapshot: SnapshotInfo) -> str:
    """Load the snapshot into ``kb_chunks_<version>``, swap the alias, drop versions beyond the last 2."""
    collection = f"{COLLECTION_PREFIX}{snapshot.version}"
    frame = pl.read_parquet(snapshot.path)
    if not client.collection_exists(collection) or client.count(collection).count != frame.height:
        if client.collection_exists(collection):  # a half-written earlier attempt
            client.delete_collection(collection)
        _create_and_fill(client, collection, frame, snapshot.model_id)
        for key in ("topic", "language", "article_id"):  # strict filters stay index lookups on a server
            client.create_payload_index(collection, key, models.PayloadSchemaType.KEYWORD, wait=True)
    previous = switch_alias(client, ALIAS, collection)
    keep = {collection, previous} if previous else {collection}
    for name in collections_with_prefix(client, COLLECTION_PREFIX):
        if name not in keep:
            client.delete_collection(name)
    return collection


def _create_and_fill(client: QdrantClient, collection: str, frame: pl.DataFrame, model_id: str) -> None:
    vectors = frame["vector"].to_numpy()
    client.create_collection(
        collection,
        vectors_config=models.VectorParams(size=int(vectors.shape[1]), distance=models.Distance.COSINE),
        metadata={"model_id": model_id},
    )
    payloads = frame.drop("vector", "model_id").to_dicts()
    for start in range(0, len(payloads), _UPSERT_BATCH):
        batch = payloads[start : start + _UPSERT_BATCH]
        client.upsert(
            collection,
            points=[
                models.PointStruct(id=point_id(p["chunk_id"]), vector=vectors[start + i].tolist(), payload=p)
                for i, p in enumerate(batch)
            ],
            wait=True,
        )


# Reading --------------------------------------------------------------------------------------------


def current_snapshot(settings: Settings) -> SnapshotInfo | None:
    """The snapshot the pointer names, or None before the first publish."""
    record = read_pointer(settings.kb_snapshot_dir)
    if record is None:
        return None
    return SnapshotInfo(
        version=record["version"],
        path=settings.kb_snapshot_dir / record["file"],
        n_chunks=int(record["n_chunks"]),
        n_articles=int(record["n_articles"]),
        model_id=record["model_id"],
        dim=int(record["dim"]),
    )


@dataclass(frozen=True)
class _Loaded:
    """Everything one index version needs; swapped as a whole so a search never mixes versions."""

    client: QdrantClient
    collection: str  # what searches query: the in-memory collection, or the server alias
    target: str  # the versioned collection behind it
    version: str
    model_id: str
    n_chunks: int
    topics: frozenset[str]
    lexical: LexicalIndex  # the articles' words, for the abstention relevance


class KnowledgeBase:
    """Read side of the index: an in-memory copy of the current snapshot, or the server alias."""

    def __init__(self, loaded: _Loaded, settings: Settings | None = None, server: bool = False) -> None:
        self._loaded = loaded
        self._settings = settings
        self._server = server
        self._refresh_lock = threading.Lock()

    # Opening --------------------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings, server: QdrantClient | None = None) -> KnowledgeBase:
        """The published index: the server alias when ``QDRANT_URL`` is set, else the current snapshot."""
        if server is not None or settings.qdrant_url:
            client = server or server_client(settings)
            return cls(_load_server(client), settings, server=True)
        return cls(_load_current(settings), settings)

    @classmethod
    def from_snapshot(cls, snapshot: SnapshotInfo) -> KnowledgeBase:
        """A specific snapshot, published or not (used to check an index before publishing it)."""
        return cls(_load_snapshot(snapshot))

    @property
    def version(self) -> str:
        return self._loaded.version

    @property
    def model_id(self) -> str:
        """Queries must be embedded with this model for scores to mean anything."""
        return self._loaded.model_id

    @property
    def n_chunks(self) -> int:
        return self._loaded.n_chunks

    def coverage(self, text: str, top_terms: int = 0) -> float:
        """How much of ``text``'s wording the best-covering article holds (``rag.relevance``)."""
        return self._loaded.lexical.coverage(text, top_terms)

    def article_cosines(self, query_vector: np.ndarray) -> dict[str, float]:
        """Each article's best passage cosine with ``query_vector``, over every chunk."""
        loaded = self._loaded
        vector = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        response = loaded.client.query_points(
            loaded.collection, query=vector, limit=max(loaded.n_chunks, 1), with_payload=["article_id"]
        )
        best: dict[str, float] = {}
        for point in response.points:  # best first
            best.setdefault(str((point.payload or {})["article_id"]), float(point.score))
        return best

    def relevance(self, query_vector: np.ndarray, text: str, lexical_weight: float, top_terms: int) -> float:
        """``rag.relevance.article_relevance`` of a ticket: what ``/v1/answer`` compares with its floor."""
        coverage = self._loaded.lexical.article_coverage(text, top_terms) if lexical_weight > 0 else {}
        return article_relevance(self.article_cosines(query_vector), coverage, lexical_weight)

    # Hot swap -------------------------------------------------------------------------------------
    def refresh_if_changed(self) -> bool:
        """Load the newly published version if there is one; returns whether the index changed."""
        if self._settings is None:
            return False
        with self._refresh_lock:
            if self._server:
                target = alias_target(self._loaded.client, ALIAS)
                if target is None or target == self._loaded.target:
                    return False
                self._loaded = _load_server(self._loaded.client)
                return True
            snapshot = current_snapshot(self._settings)
            if snapshot is None or snapshot.version == self._loaded.version:
                return False
            self._loaded = _load_current(self._settings)  # one assignment: searches see old or new
            return True

    # Search ---------------------------------------------------------------------------------------
    def search(
        self,
        query_vector: np.ndarray,
        k: int = 4,
        topic: str | None = None,
        language: str | None = None,
        per_article: int = 2,
        strict: bool = False,
        topic_map: Mapping[str, str | None] | None = None,
    ) -> list[Passage]:
        """The ``k`` best passages, at most ``per_article`` from any one article, best first.

        Two per article by default: the best article's second-best section often holds the steps
        a draft needs, while the cap still leaves room for other articles.

        ``topic`` (a ticket label, mapped with ``kb_topic_for`` through the served model's learned
        ``topic_map``) and ``language`` are preferences:
        matching passages get ``TOPIC_BOOST`` / ``LANGUAGE_BOOST`` added for ranking, so a confident
        but wrong triage label cannot hide a much better passage from another topic. With
        ``strict=True`` they are hard filters instead. A topic the KB does not know is ignored.
        ``Passage.score`` is always the raw cosine similarity.
        """
        loaded = self._loaded
        vector = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        kb_topic = kb_topic_for(topic, topic_map)
        if kb_topic is not None and kb_topic not in loaded.topics:
            kb_topic = None
        if strict:
            candidates = _query(loaded, vector, kb_topic, language, limit=max(4 * k * per_article, 32))
        else:
            # Preferences are applied to one unfiltered pool: local mode evaluates payload filters in
            # Python (~15x slower than the plain query), and a passage outside the top POOL cannot
            # climb into the top k with a 0.1 boost unless the KB is far larger than ours.
            candidates = _query(loaded, vector, None, None, limit=max(8 * k * per_article, POOL))

        def ranking(passage: Passage) -> float:
            boost = TOPIC_BOOST if kb_topic and passage.topic == kb_topic else 0.0
            boost += LANGUAGE_BOOST if language and passage.language == language else 0.0
            return passage.score + boost

        return _diverse_top(sorted(candidates, key=ranking, reverse=True), ranking, k, per_article)


def _diverse_top(
    ranked: list[Passage], ranking: Callable[[Passage], float], k: int, per_article: int
) -> list[Passage]:
    """Greedy pick: each further passage from an already chosen article pays REPEAT_PENALTY."""
    chosen: list[Passage] = []
    counts: dict[str, int] = {}
    pool = list(ranked)
    while pool and len(chosen) < k:
        eligible = [p for p in pool if counts.get(p.article_id, 0) < per_article]
        if not eligible:
            break
        best = max(eligible, key=lambda p: ranking(p) - REPEAT_PENALTY * counts.get(p.article_id, 0))
        chosen.append(best)
        counts[best.article_id] = counts.get(best.article_id, 0) + 1
        pool.remove(best)
    return chosen


def _query(
    loaded: _Loaded, vector: np.ndarray, topic: str | None, language: str | None, limit: int
) -> list[Passage]:
    conditions = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in (("topic", topic), ("language", language))
        if value is not None
    ]
    response = loaded.client.query_points(
        loaded.collection,
        query=vector,
        limit=limit,
        query_filter=models.Filter(must=conditions) if conditions else None,
        with_payload=True,
    )
    return [_passage(point.payload or {}, point.score) for point in response.points]


def _passage(payload: dict, score: float) -> Passage:
    return Passage(
        article_id=payload["article_id"],
        chunk_id=payload["chunk_id"],
        title=payload.get("title", ""),
        heading=payload.get("heading") or "",
        text=payload.get("text", ""),
        score=float(score),
        topic=payload.get("topic"),
        language=payload.get("language"),
    )


def _load_current(settings: Settings, attempts: int = 3) -> _Loaded:
    """Load what the pointer names; if its file was pruned meanwhile, the pointer has moved: re-read."""
    for _ in range(attempts):
        snapshot = current_snapshot(settings)
        if snapshot is None:
            raise KnowledgeBaseUnavailable(
                f"no knowledge-base snapshot published in {settings.kb_snapshot_dir}"
            )
        try:
            return _load_snapshot(snapshot)
        except KnowledgeBaseUnavailable:
            continue
    raise KnowledgeBaseUnavailable(f"the published snapshot keeps disappearing in {settings.kb_snapshot_dir}")


def _load_snapshot(snapshot: SnapshotInfo) -> _Loaded:
    try:
        frame = pl.read_parquet(snapshot.path)
    except FileNotFoundError as exc:
        raise KnowledgeBaseUnavailable(f"snapshot file missing: {snapshot.path}") from exc
    client = QdrantClient(":memory:")
    collection = f"{COLLECTION_PREFIX}{snapshot.version}"
    _create_and_fill(client, collection, frame, snapshot.model_id)
    return _Loaded(
        client=client,
        collection=collection,
        target=collection,
        version=snapshot.version,
        model_id=snapshot.model_id,
        n_chunks=frame.height,
        topics=frozenset(t for t in frame["topic"].unique().to_list() if t),
        lexical=LexicalIndex.build(frame.select("article_id", "title", "heading", "text", "tags").to_dicts()),
    )


def _load_server(client: QdrantClient) -> _Loaded:
    target = alias_target(client, ALIAS)
    if target is None:
        raise KnowledgeBaseUnavailable(f"the Qdrant alias {ALIAS!r} does not exist yet")
    info = client.get_collection(target)
    topics, lexical = _payload_summary(client, target)
    return _Loaded(
        client=client,
        # Searches go through the alias, which Qdrant swaps atomically; ``version`` is what it named
        # when last checked and can lag a swap by one refresh interval.
        collection=ALIAS,
        target=target,
        version=target.removeprefix(COLLECTION_PREFIX),
        model_id=str((info.config.metadata or {}).get("model_id", "")),
        n_chunks=int(info.points_count or 0),
        topics=topics,
        lexical=lexical,
    )


def _payload_summary(client: QdrantClient, collection: str) -> tuple[frozenset[str], LexicalIndex]:
    """The distinct topics and the articles' words, read once per version from the payloads."""
    payloads: list[dict] = []
    offset = None
    fields = ["topic", "article_id", "title", "heading", "text", "tags"]
    while True:
        points, offset = client.scroll(collection, limit=512, offset=offset, with_payload=fields)
        payloads.extend(p.payload for p in points if p.payload and p.payload.get("article_id"))
        if offset is None:
            break
    topics = frozenset(p["topic"] for p in payloads if p.get("topic"))
    return topics, LexicalIndex.build(payloads)
