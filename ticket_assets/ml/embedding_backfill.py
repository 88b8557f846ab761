"""Embedding backfill in hash-bucket partitions of the training set.

A large backfill (a first import of a million tickets, a new embedding model) is split into
``EMBEDDING_PARTITION_KEYS``: bucket ``k`` holds the training-set texts whose ``md5(text_hash)`` starts with
the hex digit ``k``. Buckets are disjoint, cover every text, stay the same as tickets arrive (a text
never changes bucket) and are even in size (~1/16 each), so any number of processes or pods can take
them in any order. Each bucket is encoded through :func:`embed_missing`, which skips what is already
stored under ``(text_hash, model_id)`` and commits every chunk as it is done: a killed partition
resumes where its last committed chunk ended. ``md5`` rather than the hash's own first digit: the
bucket rule then holds for any ``text_hash`` format.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from ticket_assets.core.names import EMBEDDING_PARTITION_KEYS, TRAINING_SET_TABLE
from ticket_assets.core.names import EMBEDDINGS_TABLE as TABLE

if TYPE_CHECKING:
    import polars as pl

BUCKET_SQL = "left(md5(text_hash), 1)"  # one hex digit: EMBEDDING_PARTITION_KEYS


def bucket_of(text_hash: str) -> str:
    """The partition key of ``text_hash`` (the Python twin of ``BUCKET_SQL``)."""
    return hashlib.md5(text_hash.encode("utf-8")).hexdigest()[0]


def check_partition_keys(keys: list[str] | tuple[str, ...]) -> list[str]:
    """``keys`` as given (deduplicated, in order); ValueError naming the first unknown one."""
    unknown = [key for key in keys if key not in EMBEDDING_PARTITION_KEYS]
    if unknown:
        raise ValueError(
            f"unknown embedding partition {unknown[0]!r}: partitions are {EMBEDDING_PARTITION_KEYS[0]}..{EMBEDDING_PARTITION_KEYS[-1]}"
        )
    return list(dict.fromkeys(keys))


def partition_candidates(conn: psycopg.Connection, partition_key: str) -> pl.DataFrame:
    """``(text_hash, text)`` of every training-set text in the bucket ``partition_key``."""
    import polars as pl

    check_partition_keys([partition_key])
    rows = conn.execute(
        f"select distinct text_hash, text from {TRAINING_SET_TABLE} where {BUCKET_SQL} = %s",
        (partition_key,),
    ).fetchall()
    return pl.DataFrame(rows, schema={"text_hash": pl.Utf8, "text": pl.Utf8}, orient="row")


@dataclass(frozen=True)
class BackfillStatus:
    total: int  # distinct training-set texts in the partitions asked about
    stored: int  # of those, the ones with a vector for the model

    @property
    def missing(self) -> int:
        return self.total - self.stored


def backfill_status(
    conn: psycopg.Connection,
    model_id: str,
    partition_keys: list[str] | tuple[str, ...] = EMBEDDING_PARTITION_KEYS,
) -> BackfillStatus:
    """How far the backfill of ``partition_keys`` is for ``model_id``: read from the store itself, so
    it counts the work of every process and pod, and survives any of them being killed."""
    keys = check_partition_keys(partition_keys)
    total, stored = conn.execute(
        f"select count(*), count(e.text_hash) from (select distinct text_hash from {TRAINING_SET_TABLE} "
        f"where {BUCKET_SQL} = any(%s)) t left join {TABLE} e on e.text_hash = t.text_hash and e.model_id = %s",
        (keys, model_id),
    ).fetchone()
    return BackfillStatus(total=int(total), stored=int(stored))
