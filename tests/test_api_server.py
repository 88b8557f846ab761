"""The API as a real uvicorn server on 127.0.0.1: hot reload under load, no lost prediction rows on
shutdown or across a database outage, micro-batching, and the LLM drafting path against a real
OpenAI-compatible HTTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import polars as pl
import psycopg
import pytest
from pydantic import SecretStr

from serving.app import create_app
from tests.support.api import (
    API_KEYS,
    REPO_ROOT,
    ApiWorld,
    ServerThread,
    count_predictions,
    move_champion,
    running_server,
    wait_for,
)
from tests.support.fake_llm import FakeLLM, cite_first_passage, serve_fake_llm
from ticket_assets.services.postgres import connection_params

HEADERS = {"X-API-Key": API_KEYS[0]}


def _db(world: ApiWorld) -> str:
    return world.settings.database_url.get_secret_value()


def _result_ids(body: dict) -> list[str]:
    return [result["request_id"] for result in body["results"]]


# Hot reload ----------------------------------------------------------------------------------------
@pytest.fixture()
def champion_restored(world: ApiWorld) -> Iterator[None]:
    yield
    move_champion(world.settings, world.first_version, _db(world))


def test_champion_moving_during_a_request_stream_swaps_without_failures(
    world: ApiWorld, champion_restored: None
) -> None:
    texts = world.holdout_texts

    async def stream(base_url: str) -> list[tuple[float, int, str | None]]:
        outcomes: list[tuple[float, int, str | None]] = []
        moved_at: list[float] = []
        stop_after = time.monotonic() + 60

        async def client_loop(client: httpx.AsyncClient, offset: int) -> None:
            i = offset
            while time.monotonic() < stop_after:
                response = await client.post("/v1/triage", json={"ticket": {"text": texts[i % len(texts)]}})
                version = response.json()["model"]["version"] if response.status_code == 200 else None
                outcomes.append((time.monotonic(), response.status_code, version))
                i += 4
                # Keep streaming until well after the swap, then stop.
                if (
                    moved_at
                    and sum(1 for t, _, v in outcomes if t > moved_at[0] and v == world.second_version) >= 40
                ):
                    return

        async def mover() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(move_champion, world.settings, world.second_version, _db(world))
            moved_at.append(time.monotonic())

        async with httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=30) as client:
            await asyncio.gather(mover(), *(client_loop(client, n) for n in range(4)))
        return outcomes

    with running_server(create_app(world.settings)) as server:
        outcomes = asyncio.run(stream(server.base_url))
        described = httpx.get(f"{server.base_url}/v1/model", headers=HEADERS).json()
        metrics = httpx.get(f"{server.base_url}/metrics").text

    statuses = [status for _, status, _ in outcomes]
    versions = [version for _, _, version in sorted(outcomes)]
    assert statuses.count(200) == len(statuses), f"failed requests: {[s for s in statuses if s != 200]}"
    assert versions[0] == world.first_version
    assert versions[-1] == world.second_version
    # Once the new version answered, the old one never answers again.
    first_new = versions.index(world.second_version)
    assert set(versions[first_new:]) == {world.second_version}
    assert described["version"] == world.second_version and "champion" in described["aliases"]
    assert "ticketops_model_reloads_total 1.0" in metrics


def test_a_champion_trained_on_other_embeddings_is_refused_and_the_old_one_kept(
    world: ApiWorld, champion_restored: None
) -> None:
    from ticket_assets.ml import registry
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.ml.train import TrainConfig, train_triage_model
    from ticket_assets.sources.synthetic import generate_tickets

    tickets = generate_tickets(120, seed=12).with_columns(text=pl.col("body"))
    vectors = get_embedder(world.settings).encode(tickets["text"].to_list())
    # Labelled as torch vectors: a server embedding with ONNX must not serve it.
    outcome = train_triage_model(
        tickets,
        vectors,
        "all-MiniLM-L6-v2/torch",
        TrainConfig(cv_folds=2, candidates=("embedding",), embedding_c_grid=(4.0,)),
    )
    incompatible = registry.log_training_run(
        outcome.model, {}, {}, {}, {"rows": 120}, settings=world.settings, db_url=_db(world)
    ).version

    with (
        running_server(create_app(world.settings)) as server,
        httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=30) as client,
    ):
        served = client.get("/v1/model").json()["version"]
        move_champion(world.settings, incompatible, _db(world))
        store = server.app.state.serving.models
        assert wait_for(lambda: store.last_error is not None and "embeddings" in store.last_error)
        response = client.post("/v1/triage", json={"ticket": {"text": world.holdout_texts[0]}})
        ready = client.get("/readyz").json()

    assert served != incompatible
    assert response.status_code == 200 and response.json()["model"]["version"] == served
    assert ready["ready"] and ready["model_version"] == served
    assert f"version {incompatible}" in ready["errors"]["model"]


def test_a_newly_published_kb_index_is_swapped_in_while_serving(world: ApiWorld) -> None:
    from ticket_assets.rag.index import build_snapshot, current_snapshot, publish
    from ticket_assets.rag.kb import chunk_article, load_articles

    original = current_snapshot(world.settings)
    published = pl.read_parquet(original.path)
    vectors = dict(zip(published["chunk_id"], published["vector"].to_numpy(), strict=True))
    chunks = [c for article in load_articles(REPO_ROOT / "kb") for c in chunk_article(article)]
    without_reset_article = [c for c in chunks if c.article_id != "kb-access-001"]
    smaller = build_snapshot(
        without_reset_article,
        np.stack([vectors[c.chunk_id] for c in without_reset_article]),
        original.model_id,
        world.settings,
    )
    ticket = {"ticket": {"text": "I forgot my password, how do I reset it myself?"}}
    try:
        with (
            running_server(create_app(world.settings)) as server,
            httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=30) as client,
        ):
            before = client.post("/v1/answer", json=ticket).json()
            publish(smaller, world.settings)
            assert wait_for(lambda: client.get("/v1/model").json()["kb_version"] == smaller.version)
            after = client.post("/v1/answer", json=ticket).json()
            metrics = client.get("/metrics").text
    finally:
        publish(original, world.settings)

    assert before["kb_version"] == original.version
    assert "kb-access-001" in {p["article_id"] for p in before["passages"]}
    assert after["kb_version"] == smaller.version
    assert after["passages"] and "kb-access-001" not in {p["article_id"] for p in after["passages"]}
    assert f'ticketops_kb_info{{version="{smaller.version}"}} 1.0' in metrics


def test_the_heap_is_frozen_and_replaced_versions_leave_no_reference_cycles(world: ApiWorld) -> None:
    """The server freezes its heap after loading (full collections otherwise stall it for hundreds
    of milliseconds) and again after each hot reload. That leaks nothing only while a replaced
    model or index is freed by reference counting, with no cycles for the collector to find."""
    import gc

    from ticket_assets.ml import registry
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.rag.index import KnowledgeBase

    gc.unfreeze()  # servers started by earlier tests in this process froze it already
    with running_server(create_app(world.settings)) as server:
        assert httpx.get(f"{server.base_url}/readyz").status_code == 200
        frozen_serving = gc.get_freeze_count()
    assert frozen_serving > 50_000  # the libraries and the loaded model, not just a few objects

    model, _ = registry.load_model_version(None, world.first_version, settings=world.settings)
    index = KnowledgeBase.open(world.settings)
    embedder = get_embedder(world.settings)
    texts = world.holdout_texts[:3]
    vectors = embedder.encode(texts)
    # Served once, so the caches a request fills (analyzers, term arrays, tiers) are part of it.
    model.predict(texts, embeddings=vectors, embedding_model_id=embedder.model_id, explain=True)
    index.search(vectors[0], k=2)
    gc.collect()  # the loading's own garbage
    gc.disable()
    try:
        del model, index
        cyclic = gc.collect()
    finally:
        gc.enable()
    assert cyclic == 0


# Prediction log: shutdown flush and database outage --------------------------------------------------
def test_burst_then_shutdown_loses_no_prediction_rows(world: ApiWorld) -> None:
    # A flush interval longer than the test: rows can only reach Postgres through the shutdown flush.
    settings = world.settings.model_copy(update={"log_flush_interval_s": 120.0, "log_batch_size": 1000})
    texts = world.holdout_texts

    async def burst(base_url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=60, limits=limits) as client:
            singles = [
                client.post("/v1/triage", json={"ticket": {"text": texts[i % len(texts)]}})
                for i in range(120)
            ]
            batches = [
                client.post(
                    "/v1/triage", json={"tickets": [{"text": texts[(i + j) % len(texts)]} for j in range(8)]}
                )
                for i in range(0, 80, 8)
            ]
            answers = [client.post("/v1/answer", json={"ticket": {"text": texts[i]}}) for i in range(10)]
            return list(await asyncio.gather(*singles, *batches, *answers))

    server = ServerThread(create_app(settings)).start()
    try:
        responses = asyncio.run(burst(server.base_url))
        writer = server.app.state.serving.log_writer
        buffered = writer.queue_size
    finally:
        server.stop()

    assert [r.status_code for r in responses] == [200] * len(responses)
    ids = [
        i
        for r in responses
        for i in (_result_ids(r.json()) if "results" in r.json() else [r.json()["triage"]["request_id"]])
    ]
    assert len(ids) == 120 + 80 + 10
    assert buffered > 0  # still in memory when shutdown began
    assert count_predictions(_db(world), ids) == len(ids)
    assert writer.dropped_total == 0


@pytest.fixture()
def outage_db(fresh_db: str, pg_server_url: str) -> Iterator[tuple[str, Callable[[bool], None]]]:
    """A database whose connections can be cut and refused, then allowed again."""
    # From the parsed URL: an embedded server's URL carries its socket directory in the query.
    dbname = connection_params(fresh_db)["dbname"]

    def set_reachable(reachable: bool) -> None:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'alter database "{dbname}" allow_connections {str(reachable).lower()}')
            if not reachable:
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
                    (dbname,),
                )

    yield fresh_db, set_reachable
    set_reachable(True)


def test_buffered_rows_survive_a_database_outage(
    world: ApiWorld, outage_db: tuple[str, Callable[[bool], None]]
) -> None:
    url, set_reachable = outage_db
    settings = world.settings.model_copy(update={"database_url": SecretStr(url), "log_flush_interval_s": 0.1})
    texts = world.holdout_texts
    with (
        running_server(create_app(settings)) as server,
        httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=30) as client,
    ):
        before = [
            _result_ids(client.post("/v1/triage", json={"ticket": {"text": t}}).json())[0] for t in texts[:5]
        ]
        assert wait_for(lambda: count_predictions(url, before) == 5)

        set_reachable(False)
        during = []
        for text in texts[5:45]:
            response = client.post("/v1/triage", json={"ticket": {"text": text}})
            assert response.status_code == 200  # triage does not need the database
            during += _result_ids(response.json())
        writer = server.app.state.serving.log_writer
        assert wait_for(lambda: writer.failed_writes > 0)
        # Feedback on a prediction made during the outage is queued behind it, not refused.
        queued = client.post("/v1/feedback", json={"request_id": during[0], "draft_helpful": False})
        assert queued.status_code == 202, queued.text
        assert queued.json()["status"] == "queued"
        assert writer.queue_size == len(during) + 1
        # Still serving triage: ready (stays in rotation), degraded (the database is away).
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["degraded"] is True and ready.json()["checks"]["database"] is False
        metrics = client.get("/metrics").text
        assert f"ticketops_prediction_log_queue_size {float(len(during) + 1)}" in metrics
        assert "ticketops_database_up 0.0" in metrics
        assert f"ticketops_spool_outstanding_rows {float(len(during) + 1)}" in metrics

        set_reachable(True)
        assert wait_for(lambda: writer.queue_size == 0, timeout_s=30)
        assert wait_for(lambda: client.get("/readyz").json()["degraded"] is False, timeout_s=30)

    assert count_predictions(url, before + during) == len(before) + len(during)
    with psycopg.connect(url) as conn:
        feedback = conn.execute("select draft_helpful from ops.feedback where request_id = %s", (during[0],))
        assert feedback.fetchall() == [(False,)]
    assert writer.dropped_total == 0


# Micro-batching ------------------------------------------------------------------------------------
def test_concurrent_requests_are_batched_without_changing_results(world: ApiWorld) -> None:
    settings = world.settings.model_copy(update={"microbatch_enabled": True, "microbatch_window_ms": 5.0})
    texts = world.holdout_texts[:24]

    async def fire(base_url: str) -> list[dict]:
        async with httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.post("/v1/triage", json={"ticket": {"text": t}}) for t in texts)
            )
            return [r.json()["results"][0] for r in responses]

    with running_server(create_app(settings)) as server:
        concurrent = asyncio.run(fire(server.base_url))
        sequential = httpx.post(
            f"{server.base_url}/v1/triage", json={"tickets": [{"text": t} for t in texts]}, headers=HEADERS
        ).json()["results"]
        metrics = httpx.get(f"{server.base_url}/metrics").text

    for merged, alone in zip(concurrent, sequential, strict=True):
        assert merged["topic"] == alone["topic"] and merged["urgency"] == alone["urgency"]
        assert merged["topic_confidence"] == pytest.approx(alone["topic_confidence"], abs=1e-4)
    batches = float(
        next(
            line.split()[-1]
            for line in metrics.splitlines()
            if line.startswith("ticketops_inference_batch_size_count")
        )
    )
    # 24 concurrent requests + 1 batch request + the warm-up needed fewer than 26 forward passes.
    assert batches < len(texts) + 2


# LLM drafting ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_llm() -> Iterator[tuple[FakeLLM, str]]:
    with serve_fake_llm() as llm:
        yield llm, llm.url


def test_answer_drafts_with_the_llm_and_falls_back_when_it_fails(
    world: ApiWorld, fake_llm: tuple[FakeLLM, str]
) -> None:
    llm, llm_url = fake_llm
    settings = world.settings.model_copy(
        update={"llm_base_url": llm_url, "llm_timeout_s": 0.5, "llm_model": "fake-llm-1"}
    )
    ticket = {"ticket": {"text": "The VPN disconnects every few minutes when I work from home."}}

    with (
        running_server(create_app(settings)) as server,
        httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=30) as client,
    ):
        outcomes = {}
        replies = {
            "ok": (200, cite_first_passage("fake-llm-1"), 0.0),
            "slow": (200, cite_first_passage("fake-llm-1"), 3.0),
            "malformed": (200, "<html>upstream proxy error</html>", 0.0),
            "no_choices": (200, {"id": "x", "object": "chat.completion", "choices": []}, 0.0),
        }
        for mode, reply in replies.items():
            llm.script = [reply]
            started = time.perf_counter()
            response = client.post("/v1/answer", json=ticket)
            outcomes[mode] = (response.status_code, response.json(), time.perf_counter() - started)
        rows_for = [body["triage"]["request_id"] for _, body, _ in outcomes.values()]
        assert wait_for(lambda: count_predictions(_db(world), rows_for) == len(rows_for))

    status, body, _ = outcomes["ok"]
    retrieved = {p["article_id"] for p in body["passages"]}
    assert status == 200
    assert body["draft"]["mode"] == "llm" and body["draft"]["model"] == "fake-llm-1"
    assert body["draft"]["citations"] and set(body["draft"]["citations"]) <= retrieved
    assert "kb-made-up-999" not in body["draft"]["text"]  # citations of unretrieved articles are stripped
    prompt = llm.requests[0]["body"]["messages"][-1]["content"]
    assert all(article_id in prompt for article_id in retrieved)

    for mode, reason in (
        ("slow", "llm_timeout"),
        ("malformed", "llm_malformed_reply"),
        ("no_choices", "llm_malformed_reply"),
    ):
        status, body, seconds = outcomes[mode]
        assert status == 200, mode
        assert body["draft"]["mode"] == "extractive", mode
        assert body["draft"]["fallback_reason"].startswith(reason), (mode, body["draft"]["fallback_reason"])
        assert body["draft"]["citations"], mode
    assert outcomes["slow"][2] < 2.9  # gave up (two 0.5 s attempts) before the LLM could answer once

    with psycopg.connect(_db(world)) as conn:
        modes = dict(
            conn.execute(
                "select request_id::text, answer_mode from ops.predictions where request_id = any(%s::uuid[])",
                (rows_for,),
            ).fetchall()
        )
    assert [modes[i] for i in rows_for] == ["llm", "extractive", "extractive", "extractive"]
