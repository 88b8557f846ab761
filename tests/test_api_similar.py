"""Similar tickets and duplicates in /v1/triage and /v1/answer: real model, real ticket index
(Qdrant Edge), real Postgres, through FastAPI's TestClient; the index hot-reloads like the KB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.schemas import model_text
from tests.support.api import API_KEYS, ApiWorld, wait_for
from ticket_assets.memory.ticket_index import PAYLOAD_COLUMNS, sync_index
from ticket_assets.sources.synthetic import generate_tickets


def _publish(
    world: ApiWorld, tickets: pl.DataFrame, created: list[datetime], status: list[str | None]
) -> None:
    from ticket_assets.ml.embed import get_embedder

    embedder = get_embedder(world.settings)
    texts = [model_text(t, b) for t, b in zip(tickets["title"], tickets["body"], strict=True)]
    vectors = embedder.encode(texts)
    rows = tickets.select("ticket_id", "text_hash", "topic", "urgency", "channel", "department").with_columns(
        created_at=pl.Series(created, dtype=pl.Datetime("us", "UTC")),
        status=pl.Series(status, dtype=pl.String),
        resolution=pl.Series(["reset the VPN profile" if s else None for s in status], dtype=pl.String),
    )
    by_hash = dict(zip(rows["text_hash"].to_list(), vectors, strict=True))
    sync_index(
        rows.select(PAYLOAD_COLUMNS),
        lambda hashes: {h: np.asarray(by_hash[h]) for h in hashes},
        world.settings.ticket_index_dir,
        embedder.model_id,
    )


@pytest.fixture(scope="module")
def indexed(world: ApiWorld) -> pl.DataFrame:
    tickets = generate_tickets(60, seed=41).unique("text_hash", keep="first", maintain_order=True)
    now = datetime.now(UTC)
    # ticket 0: open and recent; 1: closed; 2: open but old; the rest recent and open
    created = [now - timedelta(hours=1), now - timedelta(hours=1), now - timedelta(days=30)]
    created += [now - timedelta(hours=2)] * (tickets.height - 3)
    status = [None, "closed", None] + [None] * (tickets.height - 3)
    _publish(world, tickets, created, status)
    return tickets


@pytest.fixture(scope="module")
def client(world: ApiWorld, indexed: pl.DataFrame) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings), headers={"X-API-Key": API_KEYS[0]}) as test_client:
        yield test_client


def _text(tickets: pl.DataFrame, i: int) -> dict:
    return {"title": tickets["title"][i], "text": tickets["body"][i]}


def test_triage_returns_similar_tickets_and_flags_a_recent_open_duplicate(client, indexed):
    response = client.post(
        "/v1/triage", json={"tickets": [_text(indexed, 0), _text(indexed, 1), _text(indexed, 2)]}
    )
    assert response.status_code == 200, response.text
    assert "similar;dur=" in response.headers["Server-Timing"]
    open_recent, closed, old = response.json()["results"]
    top = open_recent["similar"][0]
    assert top["ticket_id"] == indexed["ticket_id"][0] and top["similarity"] > 0.99
    assert top["topic"] == indexed["topic"][0] and top["created"] is not None
    assert len(open_recent["similar"]) == 5
    assert [s["similarity"] for s in open_recent["similar"]] == sorted(
        (s["similarity"] for s in open_recent["similar"]), reverse=True
    )
    assert open_recent["duplicate_of"]["ticket_id"] == indexed["ticket_id"][0]
    # The same text, but the earlier ticket is closed (resolution shown) or a month old: not a duplicate.
    assert closed["similar"][0]["status"] == "closed" and closed["similar"][0]["resolution"]
    assert closed["duplicate_of"] is None or closed["duplicate_of"]["ticket_id"] != indexed["ticket_id"][1]
    assert old["duplicate_of"] is None or old["duplicate_of"]["ticket_id"] != indexed["ticket_id"][2]


def test_answer_carries_similar_in_its_triage(client, indexed):
    response = client.post("/v1/answer", json={"ticket": _text(indexed, 4)})
    assert response.status_code == 200, response.text
    triage = response.json()["triage"]
    assert triage["similar"][0]["ticket_id"] == indexed["ticket_id"][4]
    assert triage["duplicate_of"]["ticket_id"] == indexed["ticket_id"][4]


def test_a_new_index_version_is_picked_up_without_restart(client, world, indexed):
    fresh = generate_tickets(5, seed=977)
    body = {"ticket": _text(fresh, 0)}
    before = client.post("/v1/triage", json=body).json()["results"][0]
    assert all(s["ticket_id"] != fresh["ticket_id"][0] for s in before["similar"])
    combined = pl.concat([indexed, fresh]).unique("text_hash", keep="first", maintain_order=True)
    now = datetime.now(UTC)
    _publish(world, combined, [now - timedelta(hours=1)] * combined.height, [None] * combined.height)

    def served() -> bool:
        result = client.post("/v1/triage", json=body).json()["results"][0]
        return result["similar"][0]["ticket_id"] == fresh["ticket_id"][0]

    assert wait_for(served, timeout_s=20)


def test_similar_off_leaves_the_fields_null(world, indexed):
    settings = world.settings.model_copy(update={"similar_enabled": False})
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEYS[0]}) as off:
        result = off.post("/v1/triage", json={"ticket": _text(indexed, 0)}).json()["results"][0]
    assert result["similar"] is None and result["duplicate_of"] is None
