"""The ticket index on the real Qdrant Edge engine: incremental sync, atomic publish, hot swap,
and the ``ticket_index`` asset materialised by Dagster over real Postgres, dbt and embeddings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import psycopg
import pytest

from ticket_assets.memory.ticket_index import (
    PAYLOAD_COLUMNS,
    SimilarTicket,
    TicketIndex,
    TicketIndexUnavailable,
    current_version,
    duplicate_of,
    sync_index,
)

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _rows(n: int, seed: int = 0) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "ticket_id": [f"t-{i}" for i in range(n)],
            "text_hash": [f"h-{i}" for i in range(n)],
            "topic": ["network" if i % 2 else "access" for i in range(n)],
            "urgency": ["low"] * n,
            "created_at": [start + timedelta(minutes=i) for i in range(n)],
            "channel": ["email"] * n,
            "department": ["Finance"] * n,
            "status": [None] * n,
            "resolution": [None] * n,
        },
        schema_overrides={"status": pl.String, "resolution": pl.String},
    ).select(PAYLOAD_COLUMNS)
    return rows, {f"h-{i}": vectors[i] for i in range(n)}


def _fetcher(vectors: dict[str, np.ndarray], asked: list[int]):
    def fetch(hashes):
        asked.append(len(hashes))
        return {h: vectors[h] for h in hashes if h in vectors}

    return fetch


def test_sync_is_incremental_atomic_and_hot_swapped(tmp_path):
    directory = tmp_path / "ticket_index"
    with pytest.raises(TicketIndexUnavailable):
        TicketIndex.open(directory)
    rows, vectors = _rows(2000)
    asked: list[int] = []
    first = sync_index(rows, _fetcher(vectors, asked), directory, "m")
    assert first.full_build and first.upserted == 2000 and asked == [2000]
    reader = TicketIndex.open(directory)
    second_reader = TicketIndex.open(directory)  # published versions open in several readers at once
    assert reader.n_points == second_reader.n_points == 2000
    top = reader.search(vectors["h-7"], k=3)
    assert top[0].ticket_id == "t-7" and top[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert reader.search(vectors["h-7"], k=3, exclude="t-7")[0].ticket_id != "t-7"

    # Nothing changed: nothing fetched, no new version.
    again = sync_index(rows, _fetcher(vectors, asked), directory, "m")
    assert not again.published and again.version == first.version and asked == [2000]

    # 1 % change: 10 resolved tickets, 5 new ones, 5 removed.
    changed = rows.with_columns(
        status=pl.when(pl.col("ticket_id").is_in([f"t-{i}" for i in range(10)])).then(pl.lit("resolved"))
    ).filter(~pl.col("ticket_id").is_in([f"t-{i}" for i in range(1990, 1995)]))
    extra, extra_vectors = _rows(2005)
    changed = pl.concat([changed, extra.tail(5)])
    vectors.update(extra_vectors)
    update = sync_index(changed, _fetcher(vectors, asked), directory, "m")
    assert not update.full_build and update.upserted == 15 and update.deleted == 5 and asked[-1] == 15
    assert update.n_points == 2000

    # The open reader still serves the old version until it refreshes, then the new one.
    assert reader.version == first.version and reader.search(vectors["h-3"], k=1)[0].status is None
    assert reader.refresh_if_changed() and reader.version == update.version
    assert reader.search(vectors["h-3"], k=1)[0].status == "resolved"
    assert reader.search(vectors["h-1992"], k=1)[0].ticket_id != "t-1992"
    assert reader.search(vectors["h-2003"], k=1)[0].ticket_id == "t-2003"
    assert current_version(directory).version == update.version


def test_duplicate_needs_similar_recent_and_open():
    now = datetime(2026, 3, 1, tzinfo=UTC).timestamp()

    def hit(sim: float, age_h: float, status: str | None = None) -> SimilarTicket:
        return SimilarTicket("x", sim, None, None, None, now - age_h * 3600, None, None, status, None)

    assert duplicate_of([hit(0.97, 2)], 0.95, now, 72 * 3600).similarity == 0.97
    assert duplicate_of([hit(0.90, 2)], 0.95, now, 72 * 3600) is None
    assert duplicate_of([hit(0.97, 200)], 0.95, now, 72 * 3600) is None
    assert duplicate_of([hit(0.99, 1, "closed"), hit(0.96, 3)], 0.95, now, 72 * 3600).similarity == 0.96


@pytest.fixture()
def instance(platform_env):
    with dg.instance_for_test() as instance:
        yield instance


def test_ticket_index_asset_materialises_incrementally(instance, pg_url, platform_env):
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.runner import materialize
    from ticket_assets.settings import get_settings
    from ticket_assets.sources.store import ingest_synthetic

    selection = "group:ingest or group:dbt or key:ticket_embeddings or key:ticket_index"
    config = {**QUIET, "ops": {"raw__tickets": {"config": {"synthetic_tickets": 300, "seed": 11}}}}
    outcome = materialize(selection, instance=instance, run_config=config)
    assert outcome.success, outcome.failed_steps
    meta = instance.get_latest_materialization_event(
        dg.AssetKey("ticket_index")
    ).asset_materialization.metadata
    with psycopg.connect(pg_url) as conn:
        staged, text = conn.execute(
            "select (select count(*) from staging.stg_tickets s where exists (select 1 from"
            " features.ticket_embeddings e where e.text_hash = s.text_hash)),"
            " (select text from staging.stg_tickets where not is_duplicate order by ticket_id limit 1)"
        ).fetchone()
        first_id = conn.execute(
            "select ticket_id from staging.stg_tickets where text = %s order by ticket_id limit 1", (text,)
        ).fetchone()[0]
    assert meta["full_build"].value is True and meta["points"].value == staged > 250

    index = TicketIndex.open(get_settings().ticket_index_dir)
    hit = index.search(get_embedder(get_settings()).encode([text])[0], k=1)[0]
    assert hit.similarity > 0.99 and hit.topic is not None and hit.created is not None
    assert hit.ticket_id == first_id or hit.similarity == pytest.approx(1.0, abs=1e-3)

    ingest_synthetic(pg_url, n=20, seed=12)
    outcome = materialize(selection.replace("group:ingest or ", ""), instance=instance, run_config=QUIET)
    assert outcome.success, outcome.failed_steps
    meta = instance.get_latest_materialization_event(
        dg.AssetKey("ticket_index")
    ).asset_materialization.metadata
    assert meta["full_build"].value is False and 0 < meta["upserted"].value <= 20
    assert index.refresh_if_changed() and index.n_points == meta["points"].value
