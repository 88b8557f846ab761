"""Knowledge-base gaps on the generator: a KB index built from kb/ without its printer articles,
real Postgres, dbt, embeddings and a Dagster materialisation of ``kb_gaps``: printing, the topic
that KB does not cover, must come out as the top gap."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

import dagster as dg
import numpy as np
import psycopg
import pytest

from ticket_assets.core.paths import KB_DIR
from ticket_assets.memory.kb_gaps import WEAK_SCORE
from ticket_assets.rag.kb import chunk_article, load_articles

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture()
def instance(platform_env):
    with dg.instance_for_test() as instance:
        yield instance


def test_a_topic_the_kb_does_not_cover_is_the_top_gap(instance, pg_url):
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.rag.index import build_snapshot, embed_chunks, publish
    from ticket_assets.runner import materialize
    from ticket_assets.settings import get_settings
    from ticket_assets.sources.store import ingest_synthetic

    chunks = [c for a in load_articles(KB_DIR) if a.topic != "printer" for c in chunk_article(a)]
    embedder = get_embedder(get_settings())
    publish(
        build_snapshot(chunks, embed_chunks(chunks, embedder), embedder.model_id, get_settings()),
        get_settings(),
    )
    ingest_synthetic(pg_url, n=900, seed=31, start=date(2026, 1, 1), days=30)
    outcome = materialize(
        "group:dbt or key:ticket_embeddings or key:kb_gaps", instance=instance, run_config=QUIET
    )
    assert outcome.success, outcome.failed_steps
    meta = instance.get_latest_materialization_event(dg.AssetKey("kb_gaps")).asset_materialization.metadata
    gaps = meta["gaps_detail"].value
    assert meta["gaps"].value >= 2 and meta["plot"].value.startswith("![knowledge-base gaps](data:image/png")
    top = gaps[0]
    assert top["size"] >= 20 and 0.0 <= top["trend"] <= 1.0
    assert "printer" in top["terms"] and meta["top_gap_terms"].value == top["terms"]
    assert all(e["kb_score"] < WEAK_SCORE for e in top["examples"])
    with psycopg.connect(pg_url) as conn:
        topics = conn.execute(
            "select topic from staging.stg_tickets where ticket_id = any(%s)",
            ([e["id"] for e in top["examples"]],),
        ).fetchall()
    assert Counter(t for (t,) in topics).most_common(1)[0][0] == "printer"
    # The API and the console read the same gaps from ops.kb_gaps, ranked, with the run that found them.
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute(
            "select rank, size, title_terms, run_id from ops.kb_gaps order by rank"
        ).fetchall()
    assert len(stored) == meta["gaps"].value and stored[0][1:3] == (top["size"], top["terms"])
    assert [r[0] for r in stored] == list(range(1, len(stored) + 1))
    run_id = instance.get_latest_materialization_event(dg.AssetKey("kb_gaps")).run_id
    assert {r[3] for r in stored} == {run_id}


def test_a_gap_made_of_an_incidents_tickets_links_to_it():
    from ticket_assets.memory.incidents import KnownIncident
    from ticket_assets.memory.kb_gaps import GapTicket, find_gaps, link_incidents

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2, 32)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.repeat(centres, 12, axis=0) + 0.05 * rng.standard_normal((24, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime(2026, 1, 29, 9, 0, tzinfo=UTC)
    tickets = [GapTicket(f"t-{i}", now, f"ticket {i}", 0.2) for i in range(24)]
    gaps = find_gaps(tickets, vectors)
    assert len(gaps) == 2
    outage = KnownIncident("inc-20260129-0900-abcdef", now, centres[1])
    linked = link_incidents(gaps, [outage])
    # Each gap's tickets all come from one centre: tickets 0-11 from the first, 12-23 from the outage's.
    by_cluster = {int(g.examples[0]["id"][2:]) >= 12: g.incident_ids for g in linked}
    assert by_cluster == {True: ("inc-20260129-0900-abcdef",), False: ()}
