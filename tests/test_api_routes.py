"""The API's routes through FastAPI's TestClient, against a real model, KB index and Postgres."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.support.api import API_KEYS, ApiWorld, count_predictions, wait_for
from ticket_assets.core.text import model_text
from ticket_assets.settings import Settings


def _db(world: ApiWorld) -> str:
    return world.settings.database_url.get_secret_value()


def _drained(client: TestClient) -> bool:
    return wait_for(lambda: client.app.state.serving.log_writer.queue_size == 0)


def _prediction_row(world: ApiWorld, request_id: str) -> dict[str, Any]:
    assert wait_for(lambda: count_predictions(_db(world), [request_id]) == 1), "prediction row never written"
    with psycopg.connect(_db(world), row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("select * from ops.predictions where request_id = %s", (request_id,)).fetchone()


def _served_version(client: TestClient) -> str:
    return client.get("/v1/model").json()["version"]


# Triage --------------------------------------------------------------------------------------------
def test_triage_single_ticket_returns_calibrated_labels_and_logs_the_prediction(
    client: TestClient, world: ApiWorld
) -> None:
    ticket = {"title": "VPN drops", "text": world.holdout_texts[0], "channel": "email"}
    response = client.post("/v1/triage", json={"ticket": ticket})

    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert {"embed", "model", "total"} <= {
        part.split(";")[0] for part in response.headers["Server-Timing"].split(", ")
    }
    assert body["model"] == {"name": world.settings.model_name, "version": _served_version(client)}
    [result] = body["results"]
    topics = client.get("/v1/model").json()["topics"]
    assert set(result["topic_probabilities"]) == set(topics)
    assert math.isclose(sum(result["topic_probabilities"].values()), 1.0, abs_tol=1e-6)
    assert result["topic"] == max(result["topic_probabilities"], key=result["topic_probabilities"].get)
    assert result["topic_confidence"] == pytest.approx(max(result["topic_probabilities"].values()))
    assert result["urgency"] in result["urgency_probabilities"]
    assert result["low_confidence"] == (result["topic_confidence"] < world.settings.low_confidence_threshold)
    assert result["request_id"] != body["request_id"]

    row = _prediction_row(world, result["request_id"])
    expected_text = model_text("VPN drops", ticket["text"])
    assert row["endpoint"] == "triage"
    assert str(row["call_request_id"]) == body["request_id"]
    assert row["text"] == expected_text
    assert row["text_sha256"] == hashlib.sha256(expected_text.encode()).hexdigest()
    assert row["text_chars"] == len(expected_text)
    assert row["channel"] == "email"
    # The log keeps the model's own urgency (escalation rules are not the model).
    assert (row["topic"], row["urgency"]) == (result["topic"], result["model_urgency"])
    assert row["probabilities"]["topic"] == pytest.approx(result["topic_probabilities"])
    assert row["model_version"] == body["model"]["version"]
    assert row["latency_ms"] > 0
    assert row["answer_mode"] is None


def test_batch_results_match_the_registered_model_ticket_by_ticket(
    client: TestClient, world: ApiWorld
) -> None:
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.ml.registry import load_model_version

    texts = world.holdout_texts[:12]
    response = client.post("/v1/triage", json={"tickets": [{"text": text} for text in texts]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == len(texts)
    assert len({r["request_id"] for r in body["results"]}) == len(texts)
    model, _ = load_model_version(
        world.settings.model_name, body["model"]["version"], settings=world.settings
    )
    embedder = get_embedder(world.settings)
    direct = model.predict(texts, embeddings=embedder.encode(texts))
    for served, expected in zip(body["results"], direct, strict=True):
        assert (served["topic"], served["model_urgency"]) == (expected.topic, expected.urgency)
        assert served["topic_confidence"] == pytest.approx(expected.topic_confidence, abs=1e-5)

    assert wait_for(
        lambda: count_predictions(_db(world), [r["request_id"] for r in body["results"]]) == len(texts)
    )
    with psycopg.connect(_db(world)) as conn:
        calls = conn.execute(
            "select count(distinct call_request_id) from ops.predictions where request_id = any(%s::uuid[])",
            ([r["request_id"] for r in body["results"]],),
        ).fetchone()[0]
    assert calls == 1


# Answer --------------------------------------------------------------------------------------------
def test_triage_returns_the_held_out_tier_of_every_target(client: TestClient, world: ApiWorld) -> None:
    from ticket_assets.ml import registry
    from ticket_assets.ml.tiers import tier_of

    model, _ = registry.load_model_version(world.settings.model_name, _served_version(client), world.settings)
    table = model.tier_thresholds()
    assert table is not None and "urgency" in table
    tickets = [{"text": text} for text in world.holdout_texts[:20]]
    response = client.post("/v1/triage", json={"tickets": tickets})
    assert response.status_code == 200, response.text
    seen = set()
    for result in response.json()["results"]:
        for target in ("topic", "urgency"):
            expected = tier_of(table[target].get(result[target]), result[f"{target}_confidence"])
            assert result[f"{target}_tier"] == expected
            seen.add(expected)
        assert result["urgency_low_confidence"] == (
            result["urgency_confidence"] < world.settings.low_confidence_threshold
        )
        [routed] = result["routing"].values()
        assert set(result["routing"]) == {"assignment_group"}
        assert routed["label"] == max(routed["probabilities"], key=routed["probabilities"].get)
        assert routed["tier"] == tier_of(table["assignment_group"].get(routed["label"]), routed["confidence"])
        assert routed["low_confidence"] == (routed["confidence"] < world.settings.low_confidence_threshold)
        tiers = (result["topic_tier"], result["urgency_tier"], routed["tier"])
        assert result["needs_review"] == ("review" in tiers)
    assert "auto" in seen  # the synthetic holdout's easy topics reach the auto precision


def test_answer_without_llm_is_an_extractive_draft_citing_retrieved_articles(
    client: TestClient, world: ApiWorld
) -> None:
    from ticket_assets.rag.index import current_snapshot

    ticket = {"text": "I forgot my password and now my account is locked, how do I reset it?"}
    response = client.post("/v1/answer", json={"ticket": ticket, "top_k": 3})

    assert response.status_code == 200, response.text
    body = response.json()
    draft, passages = body["draft"], body["passages"]
    assert draft["mode"] == "extractive"
    assert draft["fallback_reason"] == "llm_not_configured"
    assert 1 <= len(passages) <= 3
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
    assert any(p["article_id"] == "kb-access-001" for p in passages)  # the password-reset article
    assert draft["citations"] and set(draft["citations"]) <= {p["article_id"] for p in passages}
    for article_id in draft["citations"]:
        assert f"[{article_id}]" in draft["text"]
    assert body["kb_version"] == current_snapshot(world.settings).version
    assert "retrieve" in response.headers["Server-Timing"] and "draft" in response.headers["Server-Timing"]

    row = _prediction_row(world, body["triage"]["request_id"])
    assert (row["endpoint"], row["answer_mode"], row["kb_version"]) == (
        "answer",
        "extractive",
        body["kb_version"],
    )


# Feedback ------------------------------------------------------------------------------------------
def test_feedback_right_after_triage_is_stored_and_updated_in_place(
    client: TestClient, world: ApiWorld
) -> None:
    result = client.post("/v1/triage", json={"ticket": {"text": world.holdout_texts[1]}}).json()["results"][0]
    topics = client.get("/v1/model").json()["topics"]
    true_topic = next(t for t in topics if t != result["topic"])

    # Sent at once: the prediction row is most likely still in the log writer's buffer.
    first = client.post("/v1/feedback", json={"request_id": result["request_id"], "true_topic": true_topic})
    second = client.post(
        "/v1/feedback",
        json={"request_id": result["request_id"], "draft_helpful": False, "comment": "wrong queue"},
    )

    assert first.status_code == 200, first.text
    assert first.json()["updated"] is False
    assert second.status_code == 200, second.text
    assert second.json()["updated"] is True
    assert second.json()["created_at"] == first.json()["created_at"]
    with psycopg.connect(_db(world)) as conn:
        rows = conn.execute(
            "select true_topic, true_urgency, draft_helpful, comment from ops.feedback where request_id = %s",
            (result["request_id"],),
        ).fetchall()
    assert rows == [(true_topic, None, False, "wrong queue")]


def test_feedback_with_true_labels_lands_in_ops_feedback_merged_per_target(
    client: TestClient, world: ApiWorld
) -> None:
    result = client.post("/v1/triage", json={"ticket": {"text": world.holdout_texts[4]}}).json()["results"][0]
    groups = client.get("/v1/model").json()["routing"]["assignment_group"]
    true_group = next(g for g in groups if g != result["routing"]["assignment_group"]["label"])
    first = client.post(
        "/v1/feedback",
        json={"request_id": result["request_id"], "true_labels": {"assignment_group": true_group}},
    )
    later = client.post("/v1/feedback", json={"request_id": result["request_id"], "comment": "thanks"})
    assert first.status_code == 200, first.text
    assert later.status_code == 200, later.text
    with psycopg.connect(_db(world)) as conn:
        stored = conn.execute(
            "select true_labels, comment from ops.feedback where request_id = %s", (result["request_id"],)
        ).fetchone()
    assert stored == ({"assignment_group": true_group}, "thanks")


@pytest.mark.parametrize(
    ("true_labels", "field"),
    [({"queue": "network"}, "queue"), ({"assignment_group": "astrology"}, "assignment_group")],
)
def test_feedback_with_an_unknown_routing_target_or_label_is_422_naming_it(
    client: TestClient, world: ApiWorld, true_labels: dict, field: str
) -> None:
    result = client.post("/v1/triage", json={"ticket": {"text": world.holdout_texts[5]}}).json()["results"][0]
    response = client.post(
        "/v1/feedback", json={"request_id": result["request_id"], "true_labels": true_labels}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "true_labels", field]
    with psycopg.connect(_db(world)) as conn:
        count = conn.execute(
            "select count(*) from ops.feedback where request_id = %s", (result["request_id"],)
        ).fetchone()[0]
    assert count == 0


def test_feedback_for_an_unknown_request_id_is_404(client: TestClient, world: ApiWorld) -> None:
    unknown = "6b1f9a3e-0000-4000-8000-000000000000"
    response = client.post("/v1/feedback", json={"request_id": unknown, "draft_helpful": True})

    assert response.status_code == 404
    assert unknown in response.json()["detail"]
    with psycopg.connect(_db(world)) as conn:
        assert (
            conn.execute("select count(*) from ops.feedback where request_id = %s", (unknown,)).fetchone()[0]
            == 0
        )


def test_feedback_with_a_label_the_model_does_not_know_is_422(client: TestClient, world: ApiWorld) -> None:
    result = client.post("/v1/triage", json={"ticket": {"text": world.holdout_texts[2]}}).json()["results"][0]
    response = client.post(
        "/v1/feedback", json={"request_id": result["request_id"], "true_topic": "astrology"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "true_topic"]


def test_feedback_can_name_a_new_topic_when_flagged(client: TestClient, world: ApiWorld) -> None:
    result = client.post("/v1/triage", json={"ticket": {"text": world.holdout_texts[3]}}).json()["results"][0]
    accepted = client.post(
        "/v1/feedback",
        json={"request_id": result["request_id"], "true_topic": "mfa_rollout", "new_topic": True},
    )
    malformed = client.post(
        "/v1/feedback",
        json={"request_id": result["request_id"], "true_topic": "MFA roll-out!", "new_topic": True},
    )

    assert accepted.status_code == 200
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["body", "true_topic"]
    with psycopg.connect(_db(world)) as conn:
        stored = conn.execute(
            "select true_topic from ops.feedback where request_id = %s", (result["request_id"],)
        ).fetchone()
    assert stored == ("mfa_rollout",)


# Model, health, metrics ----------------------------------------------------------------------------
def test_model_endpoint_describes_the_served_version(client: TestClient, world: ApiWorld) -> None:
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.ml.registry import get_alias_version

    body = client.get("/v1/model").json()

    assert body["name"] == world.settings.model_name
    assert body["version"] == get_alias_version(
        world.settings.model_name, "champion", settings=world.settings
    )
    assert "champion" in body["aliases"]
    assert body["run_id"]
    assert body["data_version"]["rows"] == "300"
    assert body["metrics"]["topic.macro_f1"] == pytest.approx(0.9)
    assert body["embedding_model"] == get_embedder(world.settings).model_id
    assert len(body["topics"]) >= 10 and body["urgencies"]
    assert body["kb_version"]


def test_probes_and_metrics_need_no_key_and_report_state(client: TestClient, world: ApiWorld) -> None:
    client.post("/v1/triage", json={"ticket": {"text": world.holdout_texts[3]}})
    anonymous = {"X-API-Key": ""}

    assert client.get("/healthz", headers=anonymous).json() == {"status": "ok"}
    ready = client.get("/readyz", headers=anonymous)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"model": True, "kb": True, "database": True}
    assert ready.json()["degraded"] is False
    metrics = client.get("/metrics", headers=anonymous)
    assert metrics.status_code == 200
    text = metrics.text
    assert 'ticketops_http_requests_total{method="POST",route="/v1/triage",status="200"}' in text
    assert (
        'ticketops_http_request_duration_seconds_bucket{le="0.05",method="POST",route="/v1/triage"}' in text
    )
    assert 'ticketops_predictions_total{endpoint="triage",topic="' in text
    assert (
        f'ticketops_model_info{{name="{world.settings.model_name}",version="{_served_version(client)}"}} 1.0'
        in text
    )
    assert "ticketops_prediction_log_queue_size " in text
    assert "ticketops_prediction_log_dropped_total 0.0" in text
    assert "ticketops_database_up 1.0" in text


# Auth ----------------------------------------------------------------------------------------------
def test_drift_reports_need_the_api_key_and_stay_inside_their_folder(
    client: TestClient, world: ApiWorld
) -> None:
    report = world.settings.reports_dir / "drift" / "latest.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<html>drift: 12 of 200 predictions out of range</html>")
    (world.settings.data_dir / "secret.txt").write_text("not a report")
    anonymous = TestClient(client.app)

    assert anonymous.get("/reports/drift/latest.html").status_code == 401
    assert anonymous.get("/reports/drift/latest.html", headers={"X-API-Key": "wrong"}).status_code == 401
    served = client.get("/reports/drift/latest.html")
    assert served.status_code == 200 and "12 of 200" in served.text
    assert served.headers["content-type"].startswith("text/html")
    assert client.get("/reports/../secret.txt").status_code == 404
    assert client.get("/reports/%2e%2e/secret.txt").status_code == 404
    assert client.get("/reports/drift/missing.html").status_code == 404


PROTECTED = [
    ("post", "/v1/triage", {"ticket": {"text": "printer jammed"}}),
    ("post", "/v1/answer", {"ticket": {"text": "printer jammed"}}),
    ("post", "/v1/feedback", {"request_id": "6b1f9a3e-0000-4000-8000-000000000001", "draft_helpful": True}),
    ("get", "/v1/model", None),
]


@pytest.mark.parametrize("key", [None, "wrong-key", API_KEYS[0] + "x", ""])
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_v1_routes_reject_missing_or_wrong_keys(
    client: TestClient, world: ApiWorld, method: str, path: str, body: Any, key: str | None
) -> None:
    assert _drained(client)
    before = count_predictions(_db(world))
    anonymous = TestClient(client.app)  # same running app, without the default key header
    response = anonymous.request(method, path, json=body, headers={} if key is None else {"X-API-Key": key})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "ApiKey"
    assert client.app.state.serving.log_writer.queue_size == 0
    assert count_predictions(_db(world)) == before


def test_every_configured_key_is_accepted(client: TestClient) -> None:
    for key in API_KEYS:
        assert client.get("/v1/model", headers={"X-API-Key": key}).status_code == 200


# Bad input -----------------------------------------------------------------------------------------
MAX_TEXT = Settings.model_fields["max_text_chars"].default
MAX_BATCH = Settings.model_fields["max_batch_size"].default
OK_TICKET = {"text": "the printer is jammed"}
BAD_REQUESTS = [
    ("empty text", "/v1/triage", {"ticket": {"text": ""}}, ["body", "ticket", "text"]),
    ("whitespace text", "/v1/triage", {"ticket": {"text": "  \n\t \u200b "}}, ["body", "ticket", "text"]),
    ("text too long", "/v1/triage", {"ticket": {"text": "x" * (MAX_TEXT + 1)}}, ["body", "ticket", "text"]),
    (
        "unknown ticket field",
        "/v1/triage",
        {"ticket": {**OK_TICKET, "priority": "P1"}},
        ["body", "ticket", "priority"],
    ),
    ("unknown top-level field", "/v1/triage", {"ticket": OK_TICKET, "debug": True}, ["body", "debug"]),
    ("batch too large", "/v1/triage", {"tickets": [OK_TICKET] * (MAX_BATCH + 1)}, ["body", "tickets"]),
    (
        "blank ticket in batch",
        "/v1/triage",
        {"tickets": [OK_TICKET, {"text": " "}]},
        ["body", "tickets", 1, "text"],
    ),
    (
        "long ticket in batch",
        "/v1/triage",
        {"tickets": [OK_TICKET, {"text": "y" * (MAX_TEXT + 1)}]},
        ["body", "tickets", 1, "text"],
    ),
    ("text wrong type", "/v1/triage", {"ticket": {"text": 42}}, ["body", "ticket", "text"]),
    (
        "title wrong type",
        "/v1/triage",
        {"ticket": {**OK_TICKET, "title": ["a"]}},
        ["body", "ticket", "title"],
    ),
    ("tickets not a list", "/v1/triage", {"tickets": "many"}, ["body", "tickets"]),
    ("empty batch", "/v1/triage", {"tickets": []}, ["body", "tickets"]),
    ("missing text", "/v1/triage", {"ticket": {"title": "no body"}}, ["body", "ticket", "text"]),
    (
        "answer text too long",
        "/v1/answer",
        {"ticket": {"text": "z" * (MAX_TEXT + 1)}},
        ["body", "ticket", "text"],
    ),
    ("answer top_k zero", "/v1/answer", {"ticket": OK_TICKET, "top_k": 0}, ["body", "top_k"]),
    ("answer batch", "/v1/answer", {"tickets": [OK_TICKET]}, ["body", "tickets"]),
    (
        "feedback bad uuid",
        "/v1/feedback",
        {"request_id": "abc", "draft_helpful": True},
        ["body", "request_id"],
    ),
    (
        "feedback wrong type",
        "/v1/feedback",
        {"request_id": "6b1f9a3e-0000-4000-8000-000000000002", "draft_helpful": "sometimes"},
        ["body", "draft_helpful"],
    ),
    # Strict types: the schema says integer / boolean, so strings and booleans are not coerced.
    ("answer top_k string", "/v1/answer", {"ticket": OK_TICKET, "top_k": "3"}, ["body", "top_k"]),
    ("answer top_k boolean", "/v1/answer", {"ticket": OK_TICKET, "top_k": True}, ["body", "top_k"]),
    (
        "feedback boolean as string",
        "/v1/feedback",
        {"request_id": "6b1f9a3e-0000-4000-8000-000000000002", "draft_helpful": "true"},
        ["body", "draft_helpful"],
    ),
]

FEEDBACK_ID = "6b1f9a3e-0000-4000-8000-000000000003"
# Every text field of every endpoint, with a control character PostgreSQL or a log reader chokes on.
CONTROL_CHARACTER_CASES = [
    ("/v1/triage", {"ticket": {"text": "printer\x00jam"}}, ["body", "ticket", "text"]),
    ("/v1/triage", {"ticket": {**OK_TICKET, "title": "VPN \x1b[31m"}}, ["body", "ticket", "title"]),
    ("/v1/triage", {"ticket": {**OK_TICKET, "channel": "e\x00mail"}}, ["body", "ticket", "channel"]),
    ("/v1/triage", {"ticket": {**OK_TICKET, "requester": "j\x7fdoe"}}, ["body", "ticket", "requester"]),
    (
        "/v1/triage",
        {"tickets": [OK_TICKET, {"text": "ok", "channel": "\x85"}]},
        ["body", "tickets", 1, "channel"],
    ),
    ("/v1/answer", {"ticket": {"text": "reset\x08 my password"}}, ["body", "ticket", "text"]),
    ("/v1/answer", {"ticket": {**OK_TICKET, "title": "\x0c"}}, ["body", "ticket", "title"]),
    ("/v1/feedback", {"request_id": FEEDBACK_ID, "comment": "bad\x00comment"}, ["body", "comment"]),
    ("/v1/feedback", {"request_id": FEEDBACK_ID, "true_topic": "net\x00work"}, ["body", "true_topic"]),
    ("/v1/feedback", {"request_id": FEEDBACK_ID, "true_urgency": "high\x1f"}, ["body", "true_urgency"]),
]
BAD_REQUESTS += [
    (f"control character in {'.'.join(map(str, loc[1:]))} of {path}", path, body, loc)
    for path, body, loc in CONTROL_CHARACTER_CASES
]


@pytest.mark.parametrize(
    ("path", "body", "loc"), [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS]
)
def test_invalid_input_is_422_naming_the_field_and_logs_nothing(
    client: TestClient, world: ApiWorld, path: str, body: Any, loc: list[Any]
) -> None:
    assert (world.settings.max_text_chars, world.settings.max_batch_size) == (MAX_TEXT, MAX_BATCH)
    assert _drained(client)
    before = count_predictions(_db(world))

    response = client.post(path, json=body)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert loc in [error["loc"] for error in detail]
    assert all("input" not in error for error in detail)  # rejected ticket text is not echoed back
    assert client.app.state.serving.log_writer.queue_size == 0
    assert count_predictions(_db(world)) == before


def test_neither_ticket_nor_tickets_is_422_saying_which_fields(client: TestClient) -> None:
    for body in ({}, {"ticket": OK_TICKET, "tickets": [OK_TICKET]}):
        response = client.post("/v1/triage", json=body)
        assert response.status_code == 422
        assert "'ticket' or 'tickets'" in response.json()["detail"][0]["msg"]


def test_control_character_errors_say_which_character_and_keep_tab_newline_cr(client: TestClient) -> None:
    rejected = client.post("/v1/triage", json={"ticket": {"text": "printer jam", "channel": "e\u0000mail"}})
    allowed = client.post("/v1/triage", json={"ticket": {"text": "line one\r\n\tline two"}})

    assert rejected.status_code == 422
    [error] = rejected.json()["detail"]
    assert error["loc"] == ["body", "ticket", "channel"]
    assert "U+0000" in error["msg"] and "tab, newline and carriage return" in error["msg"]
    assert allowed.status_code == 200, allowed.text


def test_a_huge_text_is_refused_with_the_deployments_own_limit(client: TestClient, world: ApiWorld) -> None:
    response = client.post("/v1/triage", json={"ticket": {"text": "a" * 1_000_000}})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "ticket", "text"]
    assert f"at most {world.settings.max_text_chars} characters" in error["msg"]


def test_a_body_that_is_not_utf8_is_a_documented_400(client: TestClient) -> None:
    response = client.post(
        "/v1/triage",
        content=b'{"ticket": {"text": "\xff\xfe"}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "400" in client.get("/openapi.json").json()["paths"]["/v1/triage"]["post"]["responses"]


def test_oversized_body_is_413(client: TestClient, world: ApiWorld) -> None:
    assert _drained(client)  # earlier tests' rows may still be on their way to the database
    before = count_predictions(_db(world))
    response = client.post(
        "/v1/triage",
        content=b'{"ticket": {"text": "' + b"a" * world.settings.max_body_bytes + b'"}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert count_predictions(_db(world)) == before


# OpenAPI -------------------------------------------------------------------------------------------
def test_openapi_documents_every_route_with_its_errors_and_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    assert spec["info"]["title"] == "TicketOps API" and spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    expected = {
        ("/v1/triage", "post"): {"400", "401", "413", "422", "503"},
        ("/v1/answer", "post"): {"400", "401", "413", "422", "503"},
        ("/v1/feedback", "post"): {"202", "400", "401", "404", "413", "422", "503"},
        ("/v1/model", "get"): {"401", "503"},
        ("/reports/{path}", "get"): {"401", "404"},
        ("/readyz", "get"): {"503"},
    }
    for (path, method), codes in expected.items():
        operation = spec["paths"][path][method]
        assert codes <= set(operation["responses"]), (path, operation["responses"].keys())
        assert operation["tags"] and operation["summary"]
    schemas = spec["components"]["schemas"]
    for schema in ("SingleTriageRequest", "BatchTriageRequest", "AnswerRequest", "Ticket"):
        assert schemas[schema]["examples"], schema
    # Feedback: the served model's labels, or a new topic flagged as such (what the route checks).
    known, new = schemas["FeedbackRequest"]["oneOf"]
    topics = client.get("/v1/model").json()["topics"]
    assert known["properties"]["true_topic"]["anyOf"][0]["enum"] == topics
    assert known["examples"][0]["true_topic"] in topics
    assert new["properties"]["new_topic"] == {"const": True} and "new_topic" in new["required"]
    # ticket xor tickets, the deployment's limits, strict integers, the control-character rule.
    triage_body = spec["paths"]["/v1/triage"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in triage_body["oneOf"]} == {
        "SingleTriageRequest",
        "BatchTriageRequest",
    }
    assert schemas["Ticket"]["properties"]["text"]["maxLength"] == MAX_TEXT
    assert schemas["BatchTriageRequest"]["properties"]["tickets"]["maxItems"] == MAX_BATCH
    top_k = schemas["AnswerRequest"]["properties"]["top_k"]["anyOf"]
    assert {"type": "integer", "minimum": 1, "maximum": 20} in top_k
    # (at the field level: JSON Schema applies `pattern` to the string branch only, null stays valid)
    assert "\\u0000-\\u0008" in schemas["Ticket"]["properties"]["channel"]["pattern"]
    assert "\\u0000-\\u0008" in known["properties"]["comment"]["pattern"]
    # Open paths are exactly the probes and metrics; everything else declares the API key.
    open_paths = {
        path
        for path, operations in spec["paths"].items()
        for operation in operations.values()
        if not operation.get("security")
    }
    assert open_paths == {"/healthz", "/readyz", "/metrics"}


# Redaction -----------------------------------------------------------------------------------------
def test_redacted_deployments_log_only_hash_and_length(world: ApiWorld, tmp_path: Path) -> None:
    settings = world.settings.model_copy(update={"redact_text": True})
    text = "My badge stopped opening the car park barrier this morning."
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEYS[1]}) as redacting:
        result = redacting.post("/v1/triage", json={"ticket": {"text": text}}).json()["results"][0]

    row = _prediction_row(world, result["request_id"])
    assert row["text"] is None
    assert row["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert row["text_chars"] == len(text)


def test_cors_preflight_allows_configured_origins_only(world: ApiWorld) -> None:
    settings = world.settings.model_copy(update={"cors_origins": ["https://helpdesk.example.com"]})
    app = TestClient(create_app(settings))  # no lifespan needed: CORS answers before routing
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key,content-type",
    }

    allowed = app.options("/v1/triage", headers={"Origin": "https://helpdesk.example.com", **preflight})
    refused = app.options("/v1/triage", headers={"Origin": "https://evil.example.net", **preflight})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://helpdesk.example.com"
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in refused.headers
