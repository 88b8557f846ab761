"""The data stage of training: the dbt training set, its embeddings and its version."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg

from ticket_assets.core.labels import LabelMap, is_target_name, normalize_label
from ticket_assets.core.names import TRAINING_SET_TABLE

log = logging.getLogger(__name__)

TRAINING_COLUMNS = (
    "ticket_id",
    "text",
    "title",
    "body",
    "topic",
    "topic_display",
    "urgency",
    "channel",
    "department",
    "language",
    "created_at",
    "event_at",
    "text_hash",
    "text_length",
    "split",
    "split_rule",
    "labels",
)
# Routing targets (assignment group, queue, service...) arrive as one JSON object per ticket in
# ``labels``; each becomes a column of its own name (``core.labels.is_target_name``).


def routing_target_names(frame: pl.DataFrame) -> list[str]:
    """The routing targets some row of ``frame`` has a label for (sorted)."""
    if "labels" not in frame.columns:
        return []
    names: set[str] = set()
    for value in frame["labels"].drop_nulls().unique().to_list():
        names.update(k for k, v in _parse_labels(value).items() if v is not None)
    return sorted(name for name in names if is_target_name(name))


def with_routing_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """One column per routing target (label keys, null where a ticket has none)."""
    names = [n for n in routing_target_names(frame) if n not in frame.columns]
    if not names:
        return frame
    parsed = [_parse_labels(value) for value in frame["labels"].to_list()]
    return frame.with_columns(
        pl.Series(name, [_label_key(row.get(name)) for row in parsed], dtype=pl.String) for name in names
    )


def _label_key(value: Any) -> str | None:
    return None if value is None else normalize_label(str(value))


def _parse_labels(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    parsed = json.loads(value)
    return parsed if isinstance(parsed, dict) else {}


@dataclass
class TrainingData:
    train: pl.DataFrame
    test: pl.DataFrame
    train_embeddings: np.ndarray | None
    test_embeddings: np.ndarray | None
    embedding_model_id: str | None


def load_training_set(conn: psycopg.Connection, table: str = TRAINING_SET_TABLE) -> pl.DataFrame:
    """The whole training set, ordered by ticket id so row order is reproducible."""
    with conn.cursor() as cur:
        columns = ", ".join("labels::text" if c == "labels" else c for c in TRAINING_COLUMNS)
        cur.execute(f"select {columns} from {table} order by ticket_id")
        rows = cur.fetchall()
    frame = pl.DataFrame(rows, schema=list(TRAINING_COLUMNS), orient="row", infer_schema_length=None)
    return with_routing_columns(frame)


def split(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    train = frame.filter(pl.col("split") == "train")
    test = frame.filter(pl.col("split") == "test")
    if train.is_empty() or test.is_empty():
        raise ValueError(f"training set needs both splits (train={train.height}, test={test.height})")
    return train, test


def embeddings_for_frame(
    conn: psycopg.Connection, embedder: Any, frame: pl.DataFrame, store_missing: bool = True
) -> np.ndarray:
    """One vector per row of ``frame`` (``text_hash``, ``text``): stored ones from the embedding
    store, the rest encoded now (and stored, so the next run does not encode them again)."""
    from ticket_assets.ml.embedding_store import load_embeddings, store_embeddings

    hashes = frame["text_hash"].to_list()
    stored_hashes, stored = load_embeddings(conn, embedder.model_id, hashes)
    position = {h: i for i, h in enumerate(stored_hashes)}
    missing = frame.filter(~pl.col("text_hash").is_in(list(position))).unique(
        "text_hash", maintain_order=True
    )
    if missing.height:
        log.info("encoding %d texts without a stored %s embedding", missing.height, embedder.model_id)
        vectors = embedder.encode(missing["text"].to_list())
        if store_missing:
            store_embeddings(conn, embedder.model_id, missing["text_hash"].to_list(), vectors)
            conn.commit()
        offset = len(stored_hashes)
        stored = np.vstack([stored, vectors]) if len(stored_hashes) else vectors
        position.update({h: offset + i for i, h in enumerate(missing["text_hash"].to_list())})
    return np.asarray(stored[[position[h] for h in hashes]], dtype=np.float32)


def load_training_data(conn: psycopg.Connection, embedder: Any | None) -> TrainingData:
    frame = load_training_set(conn)
    train, test = split(frame)
    if embedder is None:
        return TrainingData(train, test, None, None, None)
    return TrainingData(
        train=train,
        test=test,
        train_embeddings=embeddings_for_frame(conn, embedder, train),
        test_embeddings=embeddings_for_frame(conn, embedder, test),
        embedding_model_id=embedder.model_id,
    )


def data_version(frame: pl.DataFrame, manifest_path: Path | None = None) -> dict[str, Any]:
    """What identifies the data a model was trained on: row counts, latest event, a content hash
    over (ticket id, text hash, labels, split), and the dbt manifest's hash when it exists."""
    version: dict[str, Any] = {
        "training_set_rows": frame.height,
        "train_rows": int((frame["split"] == "train").sum()) if "split" in frame.columns else frame.height,
        "test_rows": int((frame["split"] == "test").sum()) if "split" in frame.columns else 0,
        "training_set_sha256": content_hash(frame),
    }
    if "split_rule" in frame.columns:
        version["split_rule"] = split_rule_summary(frame)
    if "event_at" in frame.columns and frame["event_at"].null_count() < frame.height:
        version["max_event_at"] = str(frame["event_at"].max())
    if manifest_path is not None and manifest_path.exists():
        version["dbt_training_set_checksum"] = dbt_model_checksum(manifest_path)
    return version


def split_rule_summary(frame: pl.DataFrame) -> str:
    """Which split rule the rows took: 'time', 'hash (stratified by topic)' or both with counts."""
    counts = frame["split_rule"].fill_null("hash").value_counts(sort=True)
    rules = dict(zip(counts["split_rule"].to_list(), counts["count"].to_list(), strict=True))
    names = {"time": "time", "hash": "hash (stratified by topic)"}
    if len(rules) == 1:
        return names.get(next(iter(rules)), next(iter(rules)))
    return ", ".join(f"{names.get(rule, rule)}: {n} rows" for rule, n in sorted(rules.items()))


def topic_label_map(frame: pl.DataFrame) -> LabelMap:
    """Display names of the topics in ``frame`` (``topic`` keys, ``topic_display`` spellings)."""
    display = frame["topic_display"] if "topic_display" in frame.columns else frame["topic"]
    return LabelMap.from_pairs(zip(frame["topic"].to_list(), display.to_list(), strict=True))


def dbt_model_checksum(manifest_path: Path, model: str = "training_set") -> str:
    """The checksum dbt keeps of the model's SQL (the whole manifest changes on every parse)."""
    manifest = json.loads(manifest_path.read_text())
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") == "model" and node.get("name") == model:
            return str(node.get("checksum", {}).get("checksum", ""))
    return hashlib.sha256(manifest_path.read_bytes()).hexdigest()


def content_hash(frame: pl.DataFrame) -> str:
    columns = [
        c
        for c in ("ticket_id", "text_hash", "topic", "topic_display", "urgency", "labels", "split")
        if c in frame.columns
    ]
    canonical = frame.select(columns).sort(columns[0]).write_csv()
    return hashlib.sha256(canonical.encode()).hexdigest()
