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


# Server mode (QDRANT_URL): the same sync through a QdrantClient; qdrant-client's local mode stands in --


@pytest.mark.filterwarnings("ignore:Local mode performs exact")  # the local engine stands in for a server
@pytest.mark.parametrize("manifest_copies", [False, True], ids=["scroll", "manifest-copies"])
def test_server_mode_syncs_incrementally_and_switches_the_alias_atomically(tmp_path, manifest_copies):
    from functools import partial

    from qdrant_client import QdrantClient

    from ticket_assets.memory.ticket_index import ALIAS, SLOTS
    from ticket_assets.memory.ticket_index import sync_server as sync

    # With copies, a slot's manifest comes from the writer's local copy when the slot's version matches.
    sync_server = partial(sync, manifest_dir=tmp_path if manifest_copies else None)
    server = QdrantClient(":memory:")
    with pytest.raises(TicketIndexUnavailable):
        TicketIndex.open_server(server)
    rows, vectors = _rows(603)
    base = rows.head(600)
    asked: list[int] = []
    first = sync_server(server, base, _fetcher(vectors, asked), "m")
    assert first.published and first.full_build and first.upserted == 600 and asked == [600]
    reader = TicketIndex.open_server(server)
    assert reader.version == first.version and reader.n_points == 600 and reader.model_id == "m"
    top = reader.search(vectors["h-7"], k=3)
    assert top[0].ticket_id == "t-7" and top[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert top[0].topic == "network" and top[0].created is not None

    # Nothing changed: nothing fetched, nothing published.
    again = sync_server(server, base, _fetcher(vectors, asked), "m")
    assert not again.published and again.version == first.version and asked == [600]

    def edit(frame: pl.DataFrame, status: str, ids: range, drop: range, add: range) -> pl.DataFrame:
        named = [f"t-{i}" for i in ids]
        frame = frame.with_columns(
            status=pl.when(pl.col("ticket_id").is_in(named)).then(pl.lit(status)).otherwise("status")
        ).filter(~pl.col("ticket_id").is_in([f"t-{i}" for i in drop]))
        return pl.concat([frame, rows.filter(pl.col("ticket_id").is_in([f"t-{i}" for i in add]))])

    # A sync that dies halfway (a vector of the wrong size) never reaches readers.
    broken = edit(base, "resolved", range(6), range(590, 593), range(600, 602))
    bad = dict(vectors) | {"h-601": np.ones(8, np.float32)}
    with pytest.raises(Exception, match="(?i)dim"):
        sync_server(server, broken, _fetcher(bad, []), "m")
    assert {a.alias_name: a.collection_name for a in server.get_aliases().aliases}[ALIAS] == SLOTS[0]
    assert not reader.refresh_if_changed() and reader.search(vectors["h-3"], k=1)[0].status is None

    # The same change done right: the reader queries the alias, so it sees the switch at once.
    second = sync_server(server, edit(base, "resolved", range(6), range(590, 593), range(600, 603)),
                         _fetcher(vectors, asked), "m")  # fmt: skip
    assert second.published and second.n_points == 600
    assert reader.search(vectors["h-3"], k=1)[0].status == "resolved"
    assert reader.search(vectors["h-591"], k=1)[0].ticket_id != "t-591"
    assert reader.refresh_if_changed() and reader.version == second.version

    # From now on the standby slot (one version behind) catches up incrementally: it gets this
    # change plus the previous one, and nothing else is fetched.
    changed = edit(base, "resolved", range(6), range(590, 593), range(600, 603))
    third = sync_server(server, edit(changed, "closed", range(10, 14), range(580, 581), range(0)),
                        _fetcher(vectors, asked), "m")  # fmt: skip
    assert not third.full_build and third.upserted == 6 + 3 + 4 and third.deleted == 3 + 1
    assert asked[-1] == 13 and third.n_points == 599
    aliases = {a.alias_name: a.collection_name for a in server.get_aliases().aliases}
    assert aliases[ALIAS] == SLOTS[0] and {c.name for c in server.get_collections().collections} == set(SLOTS)
    assert server.count(SLOTS[0]).count == 599
    assert reader.search(vectors["h-12"], k=1)[0].status == "closed"
    assert reader.search(vectors["h-2"], k=1)[0].status == "resolved"
    assert reader.search(vectors["h-580"], k=1)[0].ticket_id != "t-580"
    assert reader.refresh_if_changed() and reader.version == third.version and reader.n_points == 599
    if manifest_copies:  # one copy per slot, of its current version
        assert sorted(p.name for p in tmp_path.glob("server-*.parquet")) == [
            f"server-{SLOTS[0]}-{third.version}.parquet",
            f"server-{SLOTS[1]}-{second.version}.parquet",
        ]

    # Duplicates use the same rule on server hits.
    hits = reader.search(vectors["h-20"], k=3)
    now = hits[0].created_ts + 3600
    assert duplicate_of(hits, 0.99, now, 72 * 3600).ticket_id == "t-20"


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")  # nothing listens at that URL
def test_qdrant_url_selects_the_server_for_sync_and_readers(tmp_path):
    from qdrant_client import QdrantClient

    from ticket_assets.memory.ticket_index import sync_published
    from ticket_assets.settings import Settings

    rows, vectors = _rows(50)
    settings = Settings(_env_file=None, data_dir=tmp_path, qdrant_url=None)
    server = QdrantClient(":memory:")
    report = sync_published(rows, _fetcher(vectors, []), settings, "m", server=server)
    assert report.published and TicketIndex.published(settings, server=server).n_points == 50
    # Only the server was written: the embedded index has nothing published.
    with pytest.raises(TicketIndexUnavailable):
        TicketIndex.published(settings)
    # With QDRANT_URL set, readers go to that server (nothing listens there: a clear connection error).
    remote = settings.model_copy(update={"qdrant_url": "http://127.0.0.1:9"})
    with pytest.raises(Exception, match="(?i)connect|refused"):
        TicketIndex.published(remote)
