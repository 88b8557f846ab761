"""The ticket vector index: every ticket's embedding with its payload, searchable in-process.

Engine (measured in ``benchmarks/bench_ticket_index.py``, BENCHMARKS.md "Ticket index"): the
embedded default is ``qdrant-edge-py`` — Qdrant's Rust engine in-process, HNSW segments on disk.
qdrant-client's local mode scans every point in Python and is orders of magnitude slower at 100k+.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    HnswIndexConfig,
    Point,
    Query,
    QueryRequest,
    SearchParams,
    UpdateOperation,
)

from ticket_assets.core.files import read_pointer, write_pointer
from ticket_assets.ml.embedding_store import load_embeddings

# HNSW graph degree / build beam: Qdrant's defaults; recall@10 >= 0.98 at 1M in the benchmark.
EDGE_M = 16
EDGE_EF_CONSTRUCT = 100
EDGE_SEARCH_EF = 128
_UPSERT_BATCH = 2048
# Stable namespace so a ticket id always maps to the same point id (a UUID).
_POINT_NAMESPACE = uuid.UUID("0b3f6c1e-7d2a-4e59-8c44-91a7e5d2b3f8")


def point_id(ticket_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, ticket_id))


def edge_config(dim: int) -> EdgeConfig:
    return EdgeConfig(
        vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine),
        hnsw_config=HnswIndexConfig(m=EDGE_M, ef_construct=EDGE_EF_CONSTRUCT, full_scan_threshold=10_000),
    )


def upsert_edge(
    shard: EdgeShard, vectors: np.ndarray, payloads: Sequence[dict], ids: Sequence[int | str] | None = None
) -> None:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(payloads) != len(vectors):
        raise ValueError(f"need one payload per vector: {len(payloads)} payloads, {len(vectors)} vectors")
    for start in range(0, len(vectors), _UPSERT_BATCH):
        stop = min(start + _UPSERT_BATCH, len(vectors))
        shard.update(
            UpdateOperation.upsert_points(
                [Point(ids[i] if ids is not None else i, vectors[i], payloads[i]) for i in range(start, stop)]
            )
        )


def build_edge_shard(
    path: Path, vectors: np.ndarray, payloads: Sequence[dict], ids: Sequence[int | str] | None = None
) -> EdgeShard:
    """A new shard at ``path`` holding ``vectors``, HNSW-indexed (``optimize`` builds the graphs)."""
    shard = EdgeShard.create(str(path), edge_config(int(vectors.shape[1])))
    upsert_edge(shard, vectors, payloads, ids)
    shard.optimize()
    shard.flush()
    return shard


def edge_search(shard: EdgeShard, vector: np.ndarray, k: int, with_payload: bool = True) -> list:
    return shard.query(
        QueryRequest(
            limit=k,
            query=Query.Nearest(np.asarray(vector, dtype=np.float32).reshape(-1)),
            with_payload=with_payload,
            params=SearchParams(hnsw_ef=max(EDGE_SEARCH_EF, k)),
        )
    )


def edge_search_ids(shard: EdgeShard, vector: np.ndarray, k: int) -> list:
    return [p.id for p in edge_search(shard, vector, k, with_payload=False)]


# Publishing: immutable versions behind an atomically replaced pointer ---------------------------------
#
# A published version is a shard directory that is never written again, created without a WAL so
# several processes (the API's workers, Dagster steps) can open it at once. An update copies the
# current version's directory, upserts only the tickets whose fingerprint changed, deletes the ones
# that disappeared, re-optimises and flushes, and only then replaces the ``CURRENT`` pointer (temp
# file + fsync + ``os.replace``): a reader sees the old version or the new one, never half of one.

VERSION_PREFIX = "v-"
KEEP_VERSIONS = 3  # the current one plus recent ones a reader may be about to open
MANIFEST = "manifest.parquet"
SHARD = "shard"
# Payload columns, in fingerprint order; a change to any of them re-upserts that ticket.
PAYLOAD_COLUMNS = (
    "ticket_id", "text_hash", "topic", "urgency", "created_at", "channel", "department", "status", "resolution",
)  # fmt: skip
# Statuses that end a ticket's life: such a ticket is never a duplicate target.
CLOSED_STATUSES = frozenset({"closed", "resolved", "cancelled", "canceled", "done"})


class TicketIndexUnavailable(RuntimeError):
    """No ticket index has been published yet (or the published one cannot be read)."""


@dataclass(frozen=True)
class IndexVersion:
    version: str
    path: Path
    n_points: int
    model_id: str
    dim: int


@dataclass(frozen=True)
class SyncReport:
    version: str
    full_build: bool
    upserted: int
    deleted: int
    unchanged: int
    n_points: int
    seconds: float
    published: bool


def fingerprints(rows: pl.DataFrame) -> pl.Series:
    """One string per ticket that changes whenever its text or any payload field changes."""
    return rows.select(
        pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("\x00") for c in PAYLOAD_COLUMNS], separator="\x1f"
        ).alias("fingerprint")
    ).to_series()


def current_version(directory: Path) -> IndexVersion | None:
    record = read_pointer(directory)
    if record is None:
        return None
    return IndexVersion(
        version=record["version"],
        path=directory / record["dir"],
        n_points=int(record["n_points"]),
        model_id=record["model_id"],
        dim=int(record["dim"]),
    )


def _write_pointer(directory: Path, version: IndexVersion) -> None:
    record = {
        "version": version.version,
        "dir": version.path.name,
        "n_points": version.n_points,
        "model_id": version.model_id,
        "dim": version.dim,
    }
    write_pointer(directory, record)


def prune_versions(directory: Path, keep: int = KEEP_VERSIONS) -> list[Path]:
    """Delete all but the ``keep`` newest version directories; never the one the pointer names."""
    record = read_pointer(directory)
    protected = {record["dir"]} if record else set()
    versions = sorted(directory.glob(f"{VERSION_PREFIX}*"), key=lambda p: p.name, reverse=True)
    removed = []
    for path in versions[keep:]:
        if path.name not in protected:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    for stale in directory.glob(".build-*"):  # a writer that died mid-build
        shutil.rmtree(stale, ignore_errors=True)
    return removed


def _payloads(rows: pl.DataFrame) -> list[dict]:
    frame = rows.select(
        pl.col("ticket_id"),
        *(pl.col(c) for c in ("topic", "urgency", "channel", "department", "status", "resolution")),
        pl.col("created_at").cast(pl.String).alias("created"),
        (pl.col("created_at").dt.epoch("ms").cast(pl.Float64) / 1000.0).alias("created_ts"),
    )
    return frame.to_dicts()


def sync_index(
    rows: pl.DataFrame,
    fetch_vectors: Callable[[Sequence[str]], dict[str, np.ndarray]],
    directory: Path,
    model_id: str,
    progress: Callable[[str], None] | None = None,
) -> SyncReport:
    """Bring the published index in line with ``rows`` (one per ticket, ``PAYLOAD_COLUMNS``).

    ``fetch_vectors(text_hashes)`` returns the embedding of each hash; it is asked only for the
    tickets that are new or changed, so a small change costs a small fraction of a full build.
    """
    say = progress or (lambda message: None)
    t0 = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    rows = rows.select(PAYLOAD_COLUMNS).unique("ticket_id", keep="last")
    rows = rows.with_columns(fingerprints(rows))
    previous = current_version(directory)
    old_manifest = None
    if previous is not None and previous.model_id == model_id and (previous.path / MANIFEST).exists():
        old_manifest = pl.read_parquet(previous.path / MANIFEST)
    if old_manifest is not None:
        changed = rows.join(old_manifest, on=["ticket_id", "fingerprint"], how="anti")
        removed = old_manifest.join(rows, on="ticket_id", how="anti")["ticket_id"].to_list()
    else:
        changed, removed = rows, []
    if previous is not None and old_manifest is not None and changed.is_empty() and not removed:
        return SyncReport(
            previous.version, False, 0, 0, rows.height, rows.height, time.perf_counter() - t0, False
        )

    vectors_by_hash = fetch_vectors(changed["text_hash"].unique().to_list()) if changed.height else {}
    missing = changed.filter(~pl.col("text_hash").is_in(list(vectors_by_hash)))
    if missing.height:  # not embedded yet: index them on the next run rather than guess a vector
        changed = changed.filter(pl.col("text_hash").is_in(list(vectors_by_hash)))
        rows = rows.join(missing.select("ticket_id"), on="ticket_id", how="anti")
    dim = (
        int(next(iter(vectors_by_hash.values())).shape[0])
        if vectors_by_hash
        else (previous.dim if previous else 0)
    )
    version = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"
    build = directory / f".build-{version}"
    full = old_manifest is None or previous is None or previous.dim != dim
    if full:
        if changed.is_empty():
            raise ValueError("no embedded tickets to index: materialise ticket_embeddings first")
        shard = EdgeShard.create(str(build / SHARD), _published_config(dim))
    else:
        say(f"copying version {previous.version}")
        shutil.copytree(previous.path / SHARD, build / SHARD)
        shard = EdgeShard.load(str(build / SHARD))
    try:
        if removed:
            shard.update(UpdateOperation.delete_points([point_id(t) for t in removed]))
        if changed.height:
            say(f"upserting {changed.height} ticket(s)")
            vectors = np.stack([vectors_by_hash[h] for h in changed["text_hash"].to_list()])
            upsert_edge(
                shard, vectors, _payloads(changed), [point_id(t) for t in changed["ticket_id"].to_list()]
            )
        say("optimising segments")
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    rows.select("ticket_id", "fingerprint").write_parquet(build / MANIFEST)
    final = directory / f"{VERSION_PREFIX}{version}"
    os.replace(build, final)
    published = IndexVersion(version=version, path=final, n_points=rows.height, model_id=model_id, dim=dim)
    _write_pointer(directory, published)
    prune_versions(directory)
    return SyncReport(
        version=version,
        full_build=full,
        upserted=changed.height,
        deleted=len(removed),
        unchanged=rows.height - changed.height,
        n_points=rows.height,
        seconds=time.perf_counter() - t0,
        published=True,
    )


def _published_config(dim: int) -> EdgeConfig:
    # No WAL: a published version is immutable, and without the WAL's file lock many readers can open it.
    config = edge_config(dim)
    return EdgeConfig(vectors=config.vectors, hnsw_config=config.hnsw_config, wal_enabled=False)


# Reading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimilarTicket:
    ticket_id: str
    similarity: float
    topic: str | None
    urgency: str | None
    created: str | None
    created_ts: float | None
    channel: str | None
    department: str | None
    status: str | None
    resolution: str | None

    @property
    def is_open(self) -> bool:
        return (self.status or "").strip().lower() not in CLOSED_STATUSES


@dataclass(frozen=True)
class _Opened:
    shard: EdgeShard
    version: IndexVersion


class TicketIndex:
    """Read side: the published version, hot-swapped by ``refresh_if_changed``."""

    def __init__(self, opened: _Opened, directory: Path | None = None) -> None:
        self._opened = opened
        self._directory = directory
        self._lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path) -> TicketIndex:
        return cls(_open_current(directory), directory)

    @property
    def version(self) -> str:
        return self._opened.version.version

    @property
    def model_id(self) -> str:
        return self._opened.version.model_id

    @property
    def n_points(self) -> int:
        return self._opened.version.n_points

    def refresh_if_changed(self) -> bool:
        if self._directory is None:
            return False
        with self._lock:
            record = current_version(self._directory)
            if record is None or record.version == self.version:
                return False
            old = self._opened
            self._opened = _open_current(self._directory)  # one assignment: searches see old or new
            # The old shard is left to the garbage collector: a search may still be running on it.
            del old
            return True

    def search(self, vector: np.ndarray, k: int = 5, exclude: str | None = None) -> list[SimilarTicket]:
        """The ``k`` most similar indexed tickets, best first (``exclude``: the ticket itself)."""
        hits = edge_search(self._opened.shard, vector, k + (1 if exclude else 0))
        out = [_similar(p.payload or {}, p.score) for p in hits]
        return [s for s in out if s.ticket_id != exclude][:k]


def _similar(payload: dict, score: float) -> SimilarTicket:
    return SimilarTicket(
        ticket_id=str(payload.get("ticket_id")),
        similarity=float(score),
        topic=payload.get("topic"),
        urgency=payload.get("urgency"),
        created=payload.get("created"),
        created_ts=payload.get("created_ts"),
        channel=payload.get("channel"),
        department=payload.get("department"),
        status=payload.get("status"),
        resolution=payload.get("resolution"),
    )


def _open_current(directory: Path, attempts: int = 3) -> _Opened:
    """Open what the pointer names; if it was pruned meanwhile the pointer has moved: re-read."""
    for _ in range(attempts):
        record = current_version(directory)
        if record is None:
            raise TicketIndexUnavailable(f"no ticket index published in {directory}")
        try:
            return _Opened(EdgeShard.load(str(record.path / SHARD)), record)
        except Exception as exc:  # qdrant_edge raises plain exceptions for a missing directory
            if (record.path / SHARD).exists():
                raise TicketIndexUnavailable(f"cannot open ticket index {record.path}: {exc}") from exc
    raise TicketIndexUnavailable(f"the published ticket index keeps disappearing in {directory}")


# Duplicates ---------------------------------------------------------------------------------------------


def duplicate_of(
    similar: Sequence[SimilarTicket], threshold: float, now_ts: float, window_s: float
) -> SimilarTicket | None:
    """The most similar *open* ticket created within ``window_s`` before ``now_ts``, if it is at
    least ``threshold`` similar: someone sending the same request again."""
    for hit in similar:  # best first
        if hit.similarity < threshold:
            return None
        recent = hit.created_ts is None or now_ts - window_s <= hit.created_ts <= now_ts + 60
        if recent and hit.is_open:
            return hit
    return None


# Source rows ------------------------------------------------------------------------------------------

INDEX_ROWS_SQL = """
select s.ticket_id, s.text_hash, s.topic, s.urgency, s.event_at as created_at, s.channel, s.department,
       r.extra ->> 'status' as status, r.extra ->> 'resolution' as resolution
from staging.stg_tickets s
left join raw.tickets r using (ticket_id)
where exists (
    select 1 from features.ticket_embeddings e where e.text_hash = s.text_hash and e.model_id = %s
)
"""


def index_rows(conn: psycopg.Connection, model_id: str) -> pl.DataFrame:
    """Every staged ticket whose text has a ``model_id`` embedding, with the payload the index keeps."""
    rows = conn.execute(INDEX_ROWS_SQL, (model_id,)).fetchall()
    schema = {c: pl.String for c in PAYLOAD_COLUMNS} | {"created_at": pl.Datetime("us", "UTC")}
    return pl.DataFrame(rows, schema=schema, orient="row")


def vector_fetcher(
    conn: psycopg.Connection, model_id: str
) -> Callable[[Sequence[str]], dict[str, np.ndarray]]:
    def fetch(text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(text_hashes), 50_000):
            hashes, matrix = load_embeddings(conn, model_id, text_hashes[start : start + 50_000])
            out.update(zip(hashes, matrix, strict=True))
        return out

    return fetch
