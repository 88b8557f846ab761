"""The incremental embedding store on a real PostgreSQL with the real int8 model."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ticket_assets.ml.embed import EMBEDDING_DIM, build_embedder
from ticket_assets.ml.embedding_store import (
    embed_missing,
    load_embeddings,
    missing_hashes,
    store_embeddings,
)
from ticket_assets.services.postgres import connect
from ticket_assets.settings import Settings
from ticket_assets.sources.synthetic import generate_tickets


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory):
    # Same shared export cache as tests/test_embed.py.
    configured = os.environ.get("TICKETOPS_MODEL_CACHE_DIR")
    cache = Path(configured) if configured else Path(tempfile.gettempdir()) / "ticketops-model-cache"
    settings = Settings(data_dir=tmp_path_factory.mktemp("store-data"), model_cache_dir=cache)
    return build_embedder("onnx", settings)


@pytest.fixture()
def store_url(fresh_db: str) -> str:
    return fresh_db


def ticket_rows(n: int, seed: int) -> pl.DataFrame:
    """``(text_hash, text)`` rows as ``marts.training_set`` has them (synthetic data holds duplicates)."""
    return generate_tickets(n, seed).select(
        "text_hash",
        pl.concat_str([pl.col("title").fill_null(""), pl.col("body")], separator="\n\n").alias("text"),
    )


def stored_count(url: str, model_id: str) -> int:
    with connect(url) as conn:
        return conn.execute(
            "select count(*) from features.ticket_embeddings where model_id = %s", (model_id,)
        ).fetchone()[0]


def test_second_run_encodes_nothing_and_new_texts_exactly_once(store_url: str, embedder) -> None:
    rows = ticket_rows(24, seed=3)
    rows = pl.concat([rows, rows.head(2)])  # a text offered twice is encoded once
    distinct = rows["text_hash"].n_unique()

    first = embed_missing(store_url, embedder, rows, batch_size=8)
    assert (first.candidates, first.encoded, first.skipped, first.inserted) == (
        distinct,
        distinct,
        0,
        distinct,
    )
    assert stored_count(store_url, embedder.model_id) == distinct

    second = embed_missing(store_url, embedder, rows)
    assert (second.encoded, second.skipped) == (0, distinct)

    new_rows = pl.DataFrame(
        {
            "text_hash": ["new-a", "new-b", "new-c"],
            "text": ["Laptop fan is very loud", "Need a Figma licence", "Wi-Fi drops in meeting room 2"],
        }
    )
    third = embed_missing(store_url, embedder, pl.concat([rows, new_rows]))
    assert (third.encoded, third.skipped, third.inserted) == (3, distinct, 3)
    assert stored_count(store_url, embedder.model_id) == distinct + 3


def test_loaded_vectors_are_the_encoded_ones(store_url: str, embedder) -> None:
    rows = ticket_rows(16, seed=5).unique("text_hash", keep="first", maintain_order=True)
    embed_missing(store_url, embedder, rows)
    expected = embedder.encode(rows["text"].to_list())

    with connect(store_url) as conn:
        hashes, matrix = load_embeddings(conn, embedder.model_id)
    assert matrix.dtype == np.float32 and matrix.shape == (rows.height, EMBEDDING_DIM)
    order = {h: i for i, h in enumerate(rows["text_hash"].to_list())}
    np.testing.assert_allclose(matrix, expected[[order[h] for h in hashes]], atol=1e-6)


def test_load_by_hashes_keeps_requested_order(store_url: str, embedder) -> None:
    rows = ticket_rows(8, seed=9).unique("text_hash", keep="first", maintain_order=True)
    embed_missing(store_url, embedder, rows)
    wanted = rows["text_hash"].to_list()[::-1]

    with connect(store_url) as conn:
        hashes, matrix = load_embeddings(conn, embedder.model_id, [*wanted, "not-stored", wanted[0]])
        assert hashes == wanted  # missing left out, repeats once
        np.testing.assert_array_equal(matrix, load_embeddings(conn, embedder.model_id, wanted)[1])
        assert load_embeddings(conn, "another-model", wanted)[1].shape == (0, EMBEDDING_DIM)


def test_missing_hashes_dedupes_and_is_per_model(store_url: str, embedder) -> None:
    vectors = embedder.encode(["a", "b"])
    with connect(store_url) as conn:
        store_embeddings(conn, embedder.model_id, ["h-a", "h-b"], vectors)
        candidates = pl.DataFrame({"text_hash": ["h-c", "h-a", "h-c", "h-d"], "text": ["c", "a", "c2", "d"]})
        todo = missing_hashes(conn, embedder.model_id, candidates)
        assert todo.to_dicts() == [{"text_hash": "h-c", "text": "c"}, {"text_hash": "h-d", "text": "d"}]
        assert missing_hashes(conn, "another-model", candidates).height == 3


def test_concurrent_runs_store_each_text_once(store_url: str, embedder) -> None:
    rows = ticket_rows(12, seed=11)
    distinct = rows["text_hash"].n_unique()
    reports = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        reports.append(embed_missing(store_url, embedder, rows))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reports) == 2
    assert sum(report.inserted for report in reports) == distinct
    assert stored_count(store_url, embedder.model_id) == distinct


def test_interrupted_run_keeps_committed_chunks(store_url: str, embedder) -> None:
    rows = ticket_rows(12, seed=13).unique("text_hash", keep="first", maintain_order=True)
    progress: list[tuple[int, int]] = []

    def stop_in_second_chunk(done: int, total: int) -> None:
        progress.append((done, total))
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_missing(store_url, embedder, rows, progress=stop_in_second_chunk, chunk_size=5)
    assert progress[-1] == (7, rows.height)  # progress counts across chunks
    assert stored_count(store_url, embedder.model_id) == 5  # the first chunk was committed

    resumed = embed_missing(store_url, embedder, rows, chunk_size=5)
    assert (resumed.encoded, resumed.skipped) == (rows.height - 5, 5)
