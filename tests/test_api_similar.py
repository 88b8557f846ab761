"""Similar tickets and duplicates in /v1/triage and /v1/answer: real model, real ticket index
(Qdrant Edge), real Postgres, through FastAPI's TestClient; the index hot-reloads like the KB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.schemas import model_text
from tests.support.api import API_KEYS, ApiWorld, stored_memory, wait_for
from ticket_assets.memory.ticket_index import PAYLOAD_COLUMNS, sync_published
from ticket_assets.sources.synthetic import generate_tickets


def _publish(
    world: ApiWorld,
    tickets: pl.DataFrame,
    created: list[datetime],
    status: list[str | None],
    server: object | None = None,
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
    sync_published(
        rows.select(PAYLOAD_COLUMNS),
        lambda hashes: {h: np.asarray(by_hash[h]) for h in hashes},
        world.settings,
        embedder.model_id,
        server=server,
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


# Server mode: the same routes when the ticket index lives in a Qdrant server ---------------------------


@pytest.mark.filterwarnings("ignore:Local mode performs exact")  # the local engine stands in for a server
def test_a_server_mode_index_serves_the_same_similar_tickets_and_duplicates(client, world, indexed):
    from qdrant_client import QdrantClient

    from serving.memory import TicketIndexStore

    server = QdrantClient(":memory:")  # qdrant-client's local engine stands in for QDRANT_URL's server
    now = datetime.now(UTC)
    created = [now - timedelta(hours=1)] * indexed.height
    _publish(world, indexed, created, [None, "closed"] + [None] * (indexed.height - 2), server=server)
    store = TicketIndexStore(world.settings, server=server)
    assert client.portal.call(store.refresh) and store.current.n_points == indexed.height
    state = client.app.state.serving
    embedded, state.tickets = state.tickets, store
    try:
        response = client.post("/v1/triage", json={"tickets": [_text(indexed, 0), _text(indexed, 1)]})
    finally:
        state.tickets = embedded
    assert response.status_code == 200, response.text
    open_one, closed = response.json()["results"]
    assert open_one["similar"][0]["ticket_id"] == indexed["ticket_id"][0]
    assert open_one["duplicate_of"]["ticket_id"] == indexed["ticket_id"][0]
    assert closed["similar"][0]["status"] == "closed" and closed["similar"][0]["resolution"]
    assert closed["duplicate_of"] is None or closed["duplicate_of"]["ticket_id"] != indexed["ticket_id"][1]


# Incidents and KB gaps, as the memory assets store them -------------------------------------------------


def test_incidents_and_kb_gaps_are_served_from_what_the_assets_stored(client, world):
    from ticket_assets.memory.incidents import Incident
    from ticket_assets.memory.kb_gaps import Gap

    now = datetime.now(UTC)
    incident = Incident(
        incident_id=f"inc-{now:%Y%m%d-%H%M}-api001",
        first_seen=now - timedelta(minutes=25),
        last_seen=now - timedelta(minutes=5),
        size=41,
        baseline_per_window=0.4,
        top_terms=["vpn", "connect"],
        examples=[{"id": "outage-3-1", "text": "VPN down"}],
        departments={"Finance": 20, "Sales": 21},
        channels={"email": 30, "chat": 11},  # the documented example's keys: its shape is compared too
        centroid=np.ones(384, dtype=np.float32) / np.sqrt(384),
    )
    gap = Gap(
        3, 0.7, 0.3, 0.45, ["projector", "room"], [{"id": "t-1", "kb_score": 0.3, "text": "No signal"}], 1
    )
    url = world.settings.database_url.get_secret_value()
    stored = [replace(gap, incident_ids=(incident.incident_id,)), gap]
    with stored_memory(url, [incident], stored, "run-1234", "run-5678"):
        incidents = client.get("/v1/incidents?hours=1").json()["incidents"]
        served = next(i for i in incidents if i["incident_id"] == incident.incident_id)
        assert (
            served["size"] == 41 and served["top_terms"] == ["vpn", "connect"] and served["predictions"] == 0
        )
        assert served["run_url"].endswith("/runs/run-1234") and served["departments"] == incident.departments
        gaps = client.get("/v1/kb-gaps?limit=5").json()
        assert gaps["run_id"] == "run-5678" and [g["rank"] for g in gaps["gaps"]] == [1, 2]
        assert (
            gaps["gaps"][0]["incident_ids"] == [incident.incident_id]
            and gaps["gaps"][1]["incident_ids"] == []
        )
        assert gaps["gaps"][0]["title_terms"] == ["projector", "room"]
        assert client.get("/v1/kb-gaps?limit=0").status_code == 422
