"""Trust signals through the API (real model, KB index, Postgres): escalation, out-of-scope,
reasons, and drafts that abstain when no article covers the ticket."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.support.api import API_KEYS


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
