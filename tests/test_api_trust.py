"""Trust signals through the API (real model, KB index, Postgres): escalation, out-of-scope,
reasons, and drafts that abstain when no article covers the ticket."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.support.api import API_KEYS, ApiWorld, count_predictions, wait_for
from ticket_assets.core.labels import LabelNames


def _triage(client: TestClient, text: str, title: str | None = None) -> dict:
    response = client.post("/v1/triage", json={"ticket": {"text": text, "title": title}})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


@pytest.mark.parametrize(
    ("title", "text", "rule"),
    [
        (
            "Ransomware",
            "All files on the finance share are encrypted and there is a ransom note.",
            "ransomware",
        ),
        (
            None,
            "I clicked a link in a phishing email and entered my password on the page.",
            "credentials_phished",
        ),
        (
            "Panne générale",
            "Tout le bâtiment n'a plus d'accès au réseau, impossible de travailler.",
            "outage",
        ),
        (None, "Site-wide outage: nobody can reach the intranet, the whole office is down.", "outage"),
    ],
)
def test_urgent_tickets_are_at_least_high_and_say_which_rule(client, title, text, rule) -> None:
    result = _triage(client, text, title)
    assert result["urgency"] in {"high", "critical"}
    assert result["escalation_rule"] == rule
    assert result["model_urgency"] in result["urgency_probabilities"]  # the model's view stays visible
    assert result["escalated"] == (result["urgency"] != result["model_urgency"])
    assert f"escalation: {rule}" in result["reasons"]


def test_benign_ticket_is_not_escalated_and_carries_term_reasons(client, world) -> None:
    result = _triage(client, "My printer shows a paper jam in tray 2, please have a look this week.")
    assert not result["escalated"] and result["escalation_rule"] is None
    assert result["urgency"] == result["model_urgency"]
    terms = [reason.removeprefix("term: ") for reason in result["reasons"] if reason.startswith("term: ")]
    assert 1 <= len(terms) <= 3
    assert all(
        term.split()[0] in "my printer shows a paper jam in tray 2, please have a look this week."
        for term in terms
    )
    assert isinstance(result["out_of_scope"], bool) and result["out_of_scope_score"] >= 0.0
    # The out-of-scope kNN's neighbours: training tickets (the world trains on the first 300).
    nearest = [
        reason.removeprefix("nearest: ") for reason in result["reasons"] if reason.startswith("nearest: ")
    ]
    assert len(nearest) == 3 and len(set(nearest)) == 3
    assert all(tid.startswith("syn-11-base-") and int(tid.rsplit("-", 1)[1]) < 300 for tid in nearest)


def test_foreign_text_is_out_of_scope_and_in_domain_text_mostly_is_not(client, world) -> None:
    foreign = _triage(
        client, "Preheat the oven to 180 degrees, whisk the eggs with the sugar and fold in the flour."
    )
    assert foreign["out_of_scope"] is True and "out_of_scope" in foreign["reasons"]
    in_domain = [_triage(client, text) for text in world.holdout_texts[:20]]
    assert sum(r["out_of_scope"] for r in in_domain) <= 3
    scores = sorted(r["out_of_scope_score"] for r in in_domain)
    assert scores[len(scores) // 2] < 1.0 < foreign["out_of_scope_score"]


def test_answer_abstains_in_the_ticket_language_under_the_relevance_floor(world) -> None:
    # The floor's calibration is tested on the real index (test_abstention.py); here the API path:
    # a floor above any passage's score makes every answer a no_answer draft.
    settings = world.settings.model_copy(update={"answer_min_relevance": 0.99})
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEYS[0]}) as strict:
        for text, expected in [
            ("The coffee machine in the kitchen is leaking.", "No article in our knowledge base covers"),
            (
                "La machine à café de l'étage fuit, merci de prévenir quelqu'un.",
                "Aucun article de notre base",
            ),
        ]:
            response = strict.post("/v1/answer", json={"ticket": {"text": text}})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["draft"]["mode"] == "no_answer" and body["draft"]["citations"] == []
            assert expected in body["draft"]["text"] and "agent" in body["draft"]["text"]
            assert body["passages"]  # what was found stays visible to the agent
            assert body["triage"]["topic"] not in body["draft"]["text"] or "_" not in body["triage"]["topic"]


def test_answer_on_a_covered_ticket_still_cites_articles(client) -> None:
    response = client.post(
        "/v1/answer", json={"ticket": {"text": "My VPN keeps disconnecting when I work from home."}}
    )
    draft = response.json()["draft"]
    assert draft["mode"] == "extractive" and draft["citations"]


def test_openapi_examples_show_the_trust_fields_and_are_valid(client) -> None:
    from serving.schemas import DraftOut, TicketTriage

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    [triage] = schemas["TicketTriage"]["examples"]
    assert {
        "out_of_scope",
        "out_of_scope_score",
        "escalated",
        "escalation_rule",
        "model_urgency",
        "reasons",
    } <= set(triage)
    TicketTriage.model_validate(triage)
    [draft] = schemas["DraftOut"]["examples"]
    assert DraftOut.model_validate(draft).mode == "no_answer"
    assert "no_answer" in schemas["DraftOut"]["properties"]["mode"]["enum"]


def _logged(world: ApiWorld, request_ids: list[str]) -> dict[str, dict]:
    url = world.settings.database_url.get_secret_value()
    assert wait_for(lambda: count_predictions(url, request_ids) == len(request_ids))
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        rows = conn.execute(
            "select request_id::text as request_id, urgency, needs_review, out_of_scope, out_of_scope_score,"
            " escalated, escalation_rule, served_urgency, topic_tier, urgency_tier, routing"
            " from ops.predictions where request_id = any(%s::uuid[])",
            (request_ids,),
        ).fetchall()
    return {row["request_id"]: row for row in rows}


def test_prediction_log_stores_the_trust_signals_as_served(client, world) -> None:
    served = [
        _triage(
            client, "All files on the finance share are encrypted and there is a ransom note.", "Ransomware"
        ),
        _triage(
            client, "Preheat the oven to 180 degrees, whisk the eggs with the sugar and fold in the flour."
        ),
        *(_triage(client, text) for text in world.holdout_texts[20:26]),
    ]
    logged = _logged(world, [r["request_id"] for r in served])
    for result in served:
        row = logged[result["request_id"]]
        assert row["needs_review"] is result["needs_review"]
        assert row["out_of_scope"] is result["out_of_scope"]
        assert row["out_of_scope_score"] == pytest.approx(result["out_of_scope_score"])
        assert row["escalated"] is result["escalated"] and row["escalation_rule"] == result["escalation_rule"]
        assert (row["urgency"], row["served_urgency"]) == (result["model_urgency"], result["urgency"])
        assert (row["topic_tier"], row["urgency_tier"]) == (result["topic_tier"], result["urgency_tier"])
        assert row["routing"] == {
            name: {"label": r["label"], "confidence": pytest.approx(r["confidence"]), "tier": r["tier"]}
            for name, r in result["routing"].items()
        }
        assert row["routing"]  # the test model has a routing target (assignment_group)
    assert logged[served[0]["request_id"]]["escalation_rule"] == "ransomware"
    assert logged[served[1]["request_id"]]["out_of_scope"] is True
    assert logged[served[1]["request_id"]]["needs_review"] is True


def test_review_queue_puts_what_the_api_said_needs_review_first(client, world) -> None:
    served = [_triage(client, text) for text in world.holdout_texts[26:40]]
    served.append(_triage(client, "Preheat the oven to 180 degrees and fold in the flour."))  # out of scope
    by_id = {r["request_id"]: r for r in served}
    _logged(world, list(by_id))
    # The session's other tests logged hundreds of rows: move them out of the queue's window while
    # it is read, so the queue holds exactly these, and put them back as found.
    url = world.settings.database_url.get_secret_value()
    shift = "update ops.predictions set created_at = created_at {} interval '400 days' where request_id <> all(%s::uuid[])"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(shift.format("-"), (list(by_id),))
        try:
            queue = client.get("/v1/predictions/recent", params={"limit": 500}).json()["predictions"]
        finally:
            conn.execute(shift.format("+"), (list(by_id),))
    mine = [p for p in queue if p["request_id"] in by_id]
    assert len(mine) == len(by_id)
    for p in mine:  # the stored verdict, not a re-derivation from the confidence
        assert p["needs_review"] is by_id[p["request_id"]]["needs_review"]
        assert p["topic_name"] == by_id[p["request_id"]]["topic_name"]
    unreviewed = [p["needs_review"] for p in queue if not p["reviewed"]]
    assert unreviewed == sorted(unreviewed, reverse=True)  # every needs_review row before the others
    assert any(p["needs_review"] for p in mine) and not all(p["needs_review"] for p in mine)


def _raw_keys(world_client: TestClient) -> set[str]:
    described = world_client.get("/v1/model").json()
    keys = {*described["topics"], *(label for labels in described["routing"].values() for label in labels)}
    return {key for key in keys if "_" in key}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I forgot my password and my account is locked after too many attempts.", "category: "),
        ("The coffee machine in the kitchen is leaking.", "category: "),
        ("J'ai oublié mon mot de passe et mon compte est verrouillé.", "catégorie : "),
        ("Le VPN se déconnecte sans arrêt quand je suis en télétravail.", "catégorie : "),
        ("La machine à café de l'étage fuit.", "catégorie : "),
    ],
)
def test_drafts_and_names_show_no_raw_label_keys(client, text, category) -> None:
    raw = _raw_keys(client)
    assert raw  # the synthetic model's topics (access_password ...) and routing labels are keys
    response = client.post("/v1/answer", json={"ticket": {"text": text}})
    assert response.status_code == 200, response.text
    body = response.json()
    draft, triage = body["draft"]["text"], body["triage"]
    assert not [key for key in raw if key in draft], draft
    assert "_" not in triage["topic_name"] and triage["topic_name"] != triage["topic"]
    assert all("_" not in r["label_name"] for r in triage["routing"].values())
    assert category in draft  # the triage line names the topic, in the ticket's language
    names = client.get("/v1/model").json()
    assert all("_" not in name for name in names["topic_names"].values())
    assert all("_" not in n for by_label in names["routing_names"].values() for n in by_label.values())
    if category == "catégorie : ":
        french = LabelNames.load().name("topic", triage["topic"], language="fr")
        assert f"catégorie : {french}" in draft
