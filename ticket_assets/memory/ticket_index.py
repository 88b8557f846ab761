"""The ticket vector index: every ticket's embedding with its payload, searchable in-process.

Engine (measured in ``benchmarks/bench_ticket_index.py``, BENCHMARKS.md "Ticket index"): the
embedded default is ``qdrant-edge-py`` — Qdrant's Rust engine in-process, HNSW segments on disk.
qdrant-client's local mode scans every point in Python and is orders of magnitude slower at 100k+.
With ``QDRANT_URL`` set the same sync, search and duplicate rules run against a Qdrant server
instead (``sync_server``, ``TicketIndex.published``), published behind an alias like ``kb_index``.
"""

from __future__ import annotations

import hashlib
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
from qdrant_client import QdrantClient, models
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
from ticket_assets.rag.qdrant_alias import (
    alias_target,
    collection_metadata,
    collections_with_prefix,
    server_client,
    switch_alias,
)
from ticket_assets.settings import Settings

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


# Server mode (QDRANT_URL): two slot collections behind the ``ticket_index`` alias ------------------------
#
# A Qdrant server cannot copy a collection, so instead of a new collection per version (a full
# rebuild each time) the index alternates between two slots. Readers query the alias, which names
# the live slot; a sync brings the *other* slot (one version behind) in line with the tickets, by
# the same fingerprint diff as the embedded index, and then switches the alias to it atomically
# (``rag.qdrant_alias``, as ``kb_index`` does). Each point carries its fingerprint, so the slot's
# own contents are its manifest: a sync that died halfway leaves a slot whose fingerprints still
# say exactly what it holds. Reading them back is a full scroll, so the writer also keeps a local
# copy of each slot's manifest named by the slot's version; a slot being written loses its version
# first, so a copy is only used for exactly the contents it describes (else: the scroll). Upserts
# are roughly twice the change (the slot catches up on the previous sync's change too); only the
# first two syncs build a slot in full.

ALIAS = "ticket_index"
SLOTS = (f"{ALIAS}_a", f"{ALIAS}_b")
_SCROLL_BATCH = 10_000
_SERVER_UPSERT_BATCH = 512


def rows_digest(rows: pl.DataFrame) -> str:
    """Order-independent digest of the ticket set and every fingerprint: equal digests, nothing to do."""
    digest = hashlib.sha256()
    for fingerprint in rows["fingerprint"].sort().to_list():
        digest.update(fingerprint.encode("utf-8") + b"\x1e")
    return digest.hexdigest()[:16]


def _slot_manifest(client: QdrantClient, collection: str) -> pl.DataFrame:
    ids: list[str] = []
    prints: list[str] = []
    offset = None
    while True:
        points, offset = client.scroll(
            collection,
            limit=_SCROLL_BATCH,
            offset=offset,
            with_payload=["ticket_id", "fingerprint"],
            with_vectors=False,
        )
        for point in points:
            payload = point.payload or {}
            ids.append(str(payload.get("ticket_id")))
            prints.append(str(payload.get("fingerprint")))
        if offset is None:
            return pl.DataFrame({"ticket_id": ids, "fingerprint": prints}, schema=_MANIFEST_SCHEMA)


_MANIFEST_SCHEMA = {"ticket_id": pl.String, "fingerprint": pl.String}


def _manifest_copy(manifest_dir: Path | None, slot: str, version: object) -> pl.DataFrame | None:
    if manifest_dir is None or not version:
        return None
    try:
        return pl.read_parquet(manifest_dir / f"server-{slot}-{version}.parquet")
    except (FileNotFoundError, pl.exceptions.PolarsError, OSError):
        return None


def _keep_manifest_copy(manifest_dir: Path | None, slot: str, version: str, rows: pl.DataFrame) -> None:
    if manifest_dir is None:
        return
    manifest_dir.mkdir(parents=True, exist_ok=True)
    path = manifest_dir / f"server-{slot}-{version}.parquet"
    tmp = path.with_suffix(".tmp")
    rows.select("ticket_id", "fingerprint").write_parquet(tmp)
    os.replace(tmp, path)
    for old in manifest_dir.glob(f"server-{slot}-*.parquet"):
        if old != path:
            old.unlink(missing_ok=True)


def _create_slot(client: QdrantClient, collection: str, dim: int, model_id: str) -> None:
    if client.collection_exists(collection):
        client.delete_collection(collection)
    client.create_collection(
        collection,
        vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
        hnsw_config=models.HnswConfigDiff(m=EDGE_M, ef_construct=EDGE_EF_CONSTRUCT),
        metadata={"model_id": model_id, "dim": dim},
    )


def _slot_dim(client: QdrantClient, collection: str) -> int | None:
    vectors = client.get_collection(collection).config.params.vectors
    return int(vectors.size) if isinstance(vectors, models.VectorParams) else None


def sync_server(
    client: QdrantClient,
    rows: pl.DataFrame,
    fetch_vectors: Callable[[Sequence[str]], dict[str, np.ndarray]],
    model_id: str,
    progress: Callable[[str], None] | None = None,
    manifest_dir: Path | None = None,
) -> SyncReport:
    """``sync_index`` for a Qdrant server: bring the standby slot in line with ``rows``, then
    switch the alias to it. Same rows, same fetcher contract, same report. ``manifest_dir`` keeps
    the local manifest copies that spare a full scroll of the standby slot."""
    say = progress or (lambda message: None)
    t0 = time.perf_counter()
    rows = rows.select(PAYLOAD_COLUMNS).unique("ticket_id", keep="last")
    rows = rows.with_columns(fingerprints(rows))
    digest = rows_digest(rows)
    live = alias_target(client, ALIAS)
    live_meta = collection_metadata(client, live) if live else {}
    if live and live_meta.get("model_id") == model_id and live_meta.get("digest") == digest:
        return SyncReport(
            str(live_meta.get("version", live)), False, 0, 0, rows.height, rows.height,
            time.perf_counter() - t0, False,
        )  # fmt: skip

    standby = SLOTS[1] if live == SLOTS[0] else SLOTS[0]
    standby_meta = collection_metadata(client, standby) if client.collection_exists(standby) else {}
    reusable = bool(standby_meta) and standby_meta.get("model_id") == model_id
    manifest = pl.DataFrame(schema=_MANIFEST_SCHEMA)
    if reusable:
        manifest = _manifest_copy(manifest_dir, standby, standby_meta.get("version"))
        if manifest is None:
            say(f"reading the manifest of {standby}")
            manifest = _slot_manifest(client, standby)
    changed = rows.join(manifest, on=["ticket_id", "fingerprint"], how="anti")
    removed = manifest.join(rows, on="ticket_id", how="anti")["ticket_id"].to_list()

    vectors_by_hash = fetch_vectors(changed["text_hash"].unique().to_list()) if changed.height else {}
    missing = changed.filter(~pl.col("text_hash").is_in(list(vectors_by_hash)))
    if missing.height:  # not embedded yet: index them on the next run rather than guess a vector
        changed = changed.filter(pl.col("text_hash").is_in(list(vectors_by_hash)))
        rows = rows.join(missing.select("ticket_id"), on="ticket_id", how="anti")
    if vectors_by_hash:
        dim = int(next(iter(vectors_by_hash.values())).shape[0])
    else:
        dim = int(live_meta.get("dim") or (_slot_dim(client, standby) if reusable else 0) or 0)
    full = not reusable or _slot_dim(client, standby) != dim
    if full:
        if rows.is_empty() or not dim:
            raise ValueError("no embedded tickets to index: materialise ticket_embeddings first")
        say(f"building slot {standby} in full")
        _create_slot(client, standby, dim, model_id)
        changed, removed = rows, []
        rest = sorted(set(rows["text_hash"].to_list()) - set(vectors_by_hash))  # unchanged, but a new slot
        if rest:
            vectors_by_hash = vectors_by_hash | fetch_vectors(rest)
        changed = rows = rows.filter(pl.col("text_hash").is_in(list(vectors_by_hash)))
    version = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"
    # From here on the slot no longer matches any manifest copy: it loses its version until done.
    client.update_collection(standby, metadata={"version": f"writing-{version}"})
    if removed:
        client.delete(standby, points_selector=models.PointIdsList(points=[point_id(t) for t in removed]))
    if changed.height:
        say(f"upserting {changed.height} ticket(s) into {standby}")
        payloads = _payloads(changed)
        prints = changed["fingerprint"].to_list()
        hashes = changed["text_hash"].to_list()
        for start in range(0, changed.height, _SERVER_UPSERT_BATCH):
            stop = min(start + _SERVER_UPSERT_BATCH, changed.height)
            client.upsert(
                standby,
                points=[
                    models.PointStruct(
                        id=point_id(payloads[i]["ticket_id"]),
                        vector=np.asarray(vectors_by_hash[hashes[i]], dtype=np.float32).tolist(),
                        payload=payloads[i] | {"fingerprint": prints[i]},
                    )
                    for i in range(start, stop)
                ],
                wait=True,
            )
    client.update_collection(
        standby,
        metadata={
            "model_id": model_id, "dim": dim, "version": version, "digest": digest,
            "n_points": rows.height, "published_at": time.time(),
        },
    )  # fmt: skip
    _keep_manifest_copy(manifest_dir, standby, version, rows)
    switch_alias(client, ALIAS, standby)
    for name in collections_with_prefix(client, f"{ALIAS}_"):  # e.g. slots of an older layout
        if name not in SLOTS:
            client.delete_collection(name)
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


def sync_published(
    rows: pl.DataFrame,
    fetch_vectors: Callable[[Sequence[str]], dict[str, np.ndarray]],
    settings: Settings,
    model_id: str,
    progress: Callable[[str], None] | None = None,
    server: QdrantClient | None = None,
) -> SyncReport:
    """Sync the index readers open: the server when ``QDRANT_URL`` is set (or ``server`` is given,
    any QdrantClient), else the embedded Qdrant Edge index in ``settings.ticket_index_dir``."""
    if server is not None or settings.qdrant_url:
        client = server or server_client(settings)
        return sync_server(client, rows, fetch_vectors, model_id, progress, settings.ticket_index_dir)
    return sync_index(rows, fetch_vectors, settings.ticket_index_dir, model_id, progress)


def _open_server(client: QdrantClient) -> _Opened:
    target = alias_target(client, ALIAS)
    if target is None:
        raise TicketIndexUnavailable(f"the Qdrant alias {ALIAS!r} does not exist yet")
    info = client.get_collection(target)
    meta = dict(info.config.metadata or {})

    def search(vector: np.ndarray, k: int) -> list[SimilarTicket]:
        response = client.query_points(
            ALIAS,  # not ``target``: a switch made after this open is seen at once
            query=np.asarray(vector, dtype=np.float32).reshape(-1),
            limit=k,
            with_payload=True,
            search_params=models.SearchParams(hnsw_ef=max(EDGE_SEARCH_EF, k)),
        )
        return [_similar(p.payload or {}, p.score) for p in response.points]

    return _Opened(
        version=str(meta.get("version", target)),
        model_id=str(meta.get("model_id", "")),
        n_points=int(info.points_count or 0),
        search=search,
        target=target,
    )


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
    """One index version as a reader sees it; swapped as a whole so a search never mixes versions."""

    version: str
    model_id: str
    n_points: int
    search: Callable[[np.ndarray, int], list[SimilarTicket]]
    target: str | None = None  # server mode: the slot collection the alias named when opened


class TicketIndex:
    """Read side: the published version, hot-swapped by ``refresh_if_changed``.

    Embedded: the Qdrant Edge shard the ``CURRENT`` pointer names. Server: the alias, which Qdrant
    switches atomically; ``version`` is what it named when last checked.
    """

    def __init__(
        self, opened: _Opened, directory: Path | None = None, server: QdrantClient | None = None
    ) -> None:
        self._opened = opened
        self._directory = directory
        self._server = server
        self._lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path) -> TicketIndex:
        """The embedded index published in ``directory``."""
        return cls(_open_current(directory), directory)

    @classmethod
    def open_server(cls, client: QdrantClient) -> TicketIndex:
        """The index published behind the ``ticket_index`` alias of a Qdrant server."""
        return cls(_open_server(client), server=client)

    @classmethod
    def published(cls, settings: Settings, server: QdrantClient | None = None) -> TicketIndex:
        """The server alias when ``QDRANT_URL`` is set (or ``server`` is given), else the embedded index."""
        if server is not None or settings.qdrant_url:
            return cls.open_server(server or server_client(settings))
        return cls.open(settings.ticket_index_dir)

    @property
    def version(self) -> str:
        return self._opened.version

    @property
    def model_id(self) -> str:
        return self._opened.model_id

    @property
    def n_points(self) -> int:
        return self._opened.n_points

    def refresh_if_changed(self) -> bool:
        with self._lock:
            if self._server is not None:
                target = alias_target(self._server, ALIAS)
                if target is None:
                    return False
                version = collection_metadata(self._server, target).get("version", target)
                if target == self._opened.target and version == self.version:
                    return False
                self._opened = _open_server(self._server)
                return True
            if self._directory is None:
                return False
            record = current_version(self._directory)
            if record is None or record.version == self.version:
                return False
            # One assignment: searches see old or new. The old shard is left to the garbage
            # collector, since a search may still be running on it.
            self._opened = _open_current(self._directory)
            return True

    def search(self, vector: np.ndarray, k: int = 5, exclude: str | None = None) -> list[SimilarTicket]:
        """The ``k`` most similar indexed tickets, best first (``exclude``: the ticket itself)."""
        out = self._opened.search(vector, k + (1 if exclude else 0))
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
            shard = EdgeShard.load(str(record.path / SHARD))
        except Exception as exc:  # qdrant_edge raises plain exceptions for a missing directory
            if (record.path / SHARD).exists():
                raise TicketIndexUnavailable(f"cannot open ticket index {record.path}: {exc}") from exc
            continue

        def search(vector: np.ndarray, k: int, shard: EdgeShard = shard) -> list[SimilarTicket]:
            return [_similar(p.payload or {}, p.score) for p in edge_search(shard, vector, k)]

        return _Opened(record.version, record.model_id, record.n_points, search)
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
