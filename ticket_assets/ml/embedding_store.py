"""Incremental store of ticket embeddings in ``features.ticket_embeddings``.

Why PostgreSQL and not Parquet files or a vector database:

- Every process that needs the vectors already shares the database: Dagster run pods on
  Kubernetes (no shared volume between them), the embedded default on one machine, CI.
- Writes are transactional and incremental by primary key ``(text_hash, model_id)``: a text is
  encoded once per model ever; concurrent or retried runs insert with ``on conflict do nothing``
  and can neither duplicate nor half-write a vector.
- Training reads all vectors in one query: 40k x 384 float32 as ``bytea`` fetched in binary and
  viewed with ``np.frombuffer`` takes ~0.3 s, on par with a local Parquet file (BENCHMARKS.md,
  "Embeddings").
- Retrieval over tickets is not needed (the KB index is the one vector search), so a vector
  index would buy nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl
import psycopg

from ticket_assets.core.names import EMBEDDINGS_TABLE as TABLE
from ticket_assets.ml.embed import EMBEDDING_DIM, Embedder, Progress
from ticket_assets.services.postgres import connect

# Vectors are written in chunks, each in its own transaction: an interrupted run keeps what it
# encoded and the next one resumes from there.
WRITE_CHUNK = 2048

_log = logging.getLogger(__name__)


class InfoLogger(Protocol):
    def info(self, msg: str, *args: Any) -> None: ...


@dataclass(frozen=True)
class EmbedReport:
    candidates: int  # distinct text hashes offered
    encoded: int  # texts encoded by this call
    skipped: int  # already stored for this model before the call
    seconds: float  # wall time of the whole call (lookup, encode, write)
    per_second: float  # encoded texts per second of wall time
    inserted: int = 0  # rows written; < encoded only when a concurrent run stored some first


def to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _distinct_candidates(candidates: pl.DataFrame) -> pl.DataFrame:
    return (
        candidates.select(pl.col("text_hash").cast(pl.Utf8), pl.col("text").cast(pl.Utf8).fill_null(""))
        .drop_nulls("text_hash")
        .unique(subset="text_hash", keep="first", maintain_order=True)
    )


def missing_hashes(conn: psycopg.Connection, model_id: str, candidates: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``candidates`` (``text_hash``, ``text``) with no stored vector for ``model_id``,
    one per text hash, in first-seen order."""
    distinct = _distinct_candidates(candidates)
    if distinct.is_empty():
        return distinct
    # One round trip whatever the candidate count; the primary key answers each probe.
    stored = conn.execute(
        f"select e.text_hash from {TABLE} e join unnest(%s::text[]) as c(text_hash) using (text_hash) "
        "where e.model_id = %s",
        (distinct["text_hash"].to_list(), model_id),
    ).fetchall()
    if not stored:
        return distinct
    stored_frame = pl.DataFrame({"text_hash": [row[0] for row in stored]}, schema={"text_hash": pl.Utf8})
    return distinct.join(stored_frame, on="text_hash", how="anti", maintain_order="left")


def stored_count(conn: psycopg.Connection, model_id: str) -> int:
    """Vectors stored for ``model_id``."""
    return int(conn.execute(f"select count(*) from {TABLE} where model_id = %s", (model_id,)).fetchone()[0])


def store_embeddings(
    conn: psycopg.Connection, model_id: str, text_hashes: Sequence[str], vectors: np.ndarray
) -> int:
    """Insert vectors not stored yet (others are left untouched); returns the rows inserted.

    Binary COPY into a temporary table, then one ``insert ... on conflict do nothing``: COPY is
    the fast path but cannot skip conflicts, and a concurrent run may have stored the same text.
    """
    if len(text_hashes) != len(vectors):
        raise ValueError(f"{len(text_hashes)} hashes for {len(vectors)} vectors")
    if not len(text_hashes):
        return 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "create temp table if not exists embeddings_incoming (text_hash text, embedding bytea) "
            "on commit delete rows"
        )
        with cur.copy("copy embeddings_incoming (text_hash, embedding) from stdin (format binary)") as copy:
            copy.set_types(["text", "bytea"])
            for text_hash, vector in zip(text_hashes, vectors, strict=True):
                copy.write_row((text_hash, to_blob(vector)))
        cur.execute(
            f"insert into {TABLE} (text_hash, model_id, embedding) "
            "select text_hash, %s, embedding from embeddings_incoming on conflict do nothing",
            (model_id,),
        )
        return cur.rowcount


def embed_missing(
    url: str,
    embedder: Embedder,
    rows: pl.DataFrame,
    batch_size: int = 64,
    progress: Progress | None = None,
    log: InfoLogger | None = None,
    chunk_size: int = WRITE_CHUNK,
) -> EmbedReport:
    """Encode and store every text of ``rows`` (``text_hash``, ``text``) not yet embedded by
    ``embedder.model_id``; each ``chunk_size`` texts are committed as they are done."""
    log = log or _log
    started = time.perf_counter()
    candidates = _distinct_candidates(rows).height
    with connect(url) as conn:
        todo = missing_hashes(conn, embedder.model_id, rows)
    log.info(
        f"{embedder.model_id}: {candidates} distinct texts, {candidates - todo.height} already embedded, "
        f"{todo.height} to encode"
    )
    inserted = 0
    for offset in range(0, todo.height, chunk_size):
        chunk = todo.slice(offset, chunk_size)
        vectors = embedder.encode(
            chunk["text"].to_list(), batch_size=batch_size, progress=_offset(progress, offset, todo.height)
        )
        # A connection per chunk: encoding takes minutes, and a database restart meanwhile
        # should cost a reconnect (connect retries), not the run.
        with connect(url) as conn:
            inserted += store_embeddings(conn, embedder.model_id, chunk["text_hash"].to_list(), vectors)
    seconds = time.perf_counter() - started
    report = EmbedReport(
        candidates=candidates,
        encoded=todo.height,
        skipped=candidates - todo.height,
        seconds=seconds,
        per_second=todo.height / seconds if seconds > 0 else 0.0,
        inserted=inserted,
    )
    log.info(f"{embedder.model_id}: encoded {report.encoded} in {seconds:.1f}s ({report.per_second:.0f}/s)")
    return report


def _offset(progress: Progress | None, offset: int, total: int) -> Progress | None:
    """Chunk-local progress (done, chunk size) -> whole-call progress (done, total)."""
    if progress is None:
        return None
    return lambda done, _chunk_total: progress(offset + done, total)


def load_embeddings(
    conn: psycopg.Connection, model_id: str, text_hashes: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Stored vectors of ``model_id`` as ``(hashes, float32 matrix)``, row i belonging to hashes[i].

    With ``text_hashes``: the stored ones among them, deduplicated, in the order given (hashes
    without a vector are left out: compare lengths). Without: all.
    """
    # A binary cursor hands bytea over as raw bytes (text mode would hex-encode and decode them).
    with conn.cursor(binary=True) as cur:
        if text_hashes is None:
            cur.execute(f"select text_hash, embedding from {TABLE} where model_id = %s", (model_id,))
        else:
            requested = list(dict.fromkeys(text_hashes))
            cur.execute(
                f"select text_hash, embedding from {TABLE} join unnest(%s::text[]) with ordinality "
                "as r(text_hash, position) using (text_hash) where model_id = %s order by position",
                (requested, model_id),
            )
        rows = cur.fetchall()
    hashes = [row[0] for row in rows]
    return hashes, _matrix([row[1] for row in rows])


def _matrix(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    width = len(blobs[0])
    if any(len(blob) != width for blob in blobs):
        raise ValueError("stored embeddings of one model have different dimensions")
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), width // 4).astype(np.float32)
