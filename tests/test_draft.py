"""Answer drafting against a real OpenAI-compatible HTTP server on 127.0.0.1, and the extractive fallback.

Passages are real KB sections (the chunker's output), so drafts are checked against real text.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_llm import FakeLLM, chat_reply, serve_fake_llm
from ticket_assets.core.labels import LabelNames
from ticket_assets.core.language import detect_language
from ticket_assets.core.passage import Passage
from ticket_assets.rag.draft import Draft, draft_answer, filter_citations
from ticket_assets.rag.kb import KB_DIR, KB_TOPICS, chunk_article, load_articles
from ticket_assets.settings import Settings

API_KEY = "test-key-not-a-secret"


@pytest.fixture()
def llm() -> Iterator[tuple[FakeLLM, str]]:
    with serve_fake_llm() as state:
        yield state, state.url


def _draft(*args, **kwargs) -> Draft:
    """The API's drafting coroutine, run to completion."""
    return asyncio.run(draft_answer(*args, **kwargs))


def _settings(tmp_path: Path, base_url: str | None, timeout: float = 2.0) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        llm_base_url=base_url,
        llm_api_key=API_KEY if base_url else None,
        llm_model="test-model",
        llm_timeout_s=timeout,
    )


@pytest.fixture(scope="module")
def chunks_by_article():
    out: dict[str, list] = {}
    for article in load_articles(KB_DIR):
        out[article.id] = chunk_article(article)
    return out


def _passages(chunks_by_article, *refs: tuple[str, int], top: float = 0.7) -> list[Passage]:
    """Passages from real KB sections, with descending retrieval scores."""
    passages = []
    for rank, (article_id, index) in enumerate(refs):
        chunk = chunks_by_article[article_id][index]
        passages.append(
            Passage(
                article_id=chunk.article_id,
                chunk_id=chunk.chunk_id,
                title=chunk.title,
                heading=chunk.heading,
                text=chunk.text,
                score=top - 0.04 * rank,
                topic=chunk.topic,
                language=chunk.language,
            )
        )
    return passages


def _section(chunks_by_article, article_id: str, heading_start: str) -> int:
    return next(i for i, c in enumerate(chunks_by_article[article_id]) if c.heading.startswith(heading_start))


@pytest.fixture()
def vpn_passages(chunks_by_article) -> list[Passage]:
    return _passages(
        chunks_by_article,
        ("kb-vpn-003", _section(chunks_by_article, "kb-vpn-003", "Stop the VPN")),
        ("kb-vpn-002", 0),
        ("kb-vpn-004", 0),
    )


TOPICS = ["vpn_network", "printer", "access_password", "security_phishing"]
VPN_TICKET = "Hi, my VPN keeps dropping every few minutes when I work from home. Can you help?"


# LLM mode -------------------------------------------------------------------------------------------


def test_llm_draft_keeps_only_citations_of_given_passages(llm, tmp_path, vpn_passages) -> None:
    state, url = llm
    content = (
        "Hello,\n1. Switch the protocol to TCP 443 [kb-vpn-003].\n2. Check the status page [2].\n"
        "3. Reinstall the client [kb-made-up-999].\nRegards [kb-vpn-003, kb-other-001]"
    )
    state.script = [(200, chat_reply(content), 0.0)]
    draft = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, url), TOPICS)

    assert draft.mode == "llm" and draft.fallback_reason is None
    assert draft.model == "served-model"
    assert draft.citations == ["kb-vpn-003", "kb-vpn-002"]
    assert "kb-made-up-999" not in draft.text and "kb-other-001" not in draft.text
    assert "status page [kb-vpn-002]" in draft.text  # numbered citations resolve to article ids
    assert "Reinstall the client." in draft.text

    (request,) = state.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "test-model"
    assert state.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    prompt = request["body"]["messages"][-1]["content"]
    assert VPN_TICKET in prompt and "Ticket category: vpn_network" in prompt
    for number, passage in enumerate(vpn_passages, start=1):
        assert f"[{number}] {passage.article_id}" in prompt
        assert passage.text in prompt


def test_prompt_never_carries_a_topic_outside_the_allowed_labels(llm, tmp_path, vpn_passages) -> None:
    state, url = llm
    state.script = [(200, chat_reply("Try [kb-vpn-003]."), 0.0)]
    _draft(VPN_TICKET, "made_up_topic", None, vpn_passages, _settings(tmp_path, url), TOPICS)
    prompt = state.requests[0]["body"]["messages"][-1]["content"]
    assert "made_up_topic" not in prompt and "Ticket category" not in prompt


def test_one_retry_on_server_error_then_success(llm, tmp_path, vpn_passages) -> None:
    state, url = llm
    state.script = [(503, {"error": "overloaded"}, 0.0), (200, chat_reply("Use TCP 443 [kb-vpn-003]."), 0.0)]
    draft = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, url), TOPICS)
    assert draft.mode == "llm" and draft.citations == ["kb-vpn-003"]
    assert len(state.requests) == 2


def test_persistent_server_error_falls_back_after_one_retry(llm, tmp_path, vpn_passages) -> None:
    state, url = llm
    state.script = [(500, {"error": "boom"}, 0.0)]
    draft = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, url), TOPICS)
    assert draft.mode == "extractive" and draft.fallback_reason == "llm_http_500"
    assert len(state.requests) == 2


def test_client_error_is_not_retried(llm, tmp_path, vpn_passages) -> None:
    state, url = llm
    state.script = [(401, {"error": "bad key"}, 0.0)]
    draft = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, url), TOPICS)
    assert draft.mode == "extractive" and draft.fallback_reason == "llm_http_401"
    assert len(state.requests) == 1


def test_timeout_falls_back_to_an_extractive_draft(llm, tmp_path, vpn_passages) -> None:
    state, url = llm
    state.script = [(200, chat_reply("too late [kb-vpn-003]"), 1.5)]
    started = time.perf_counter()
    draft = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, url, 0.3), TOPICS)
    elapsed = time.perf_counter() - started
    assert draft.mode == "extractive" and draft.fallback_reason == "llm_timeout"
    assert draft.model is None and draft.citations
    assert len(state.requests) == 2 and elapsed < 1.4  # two attempts of 0.3 s, not the 1.5 s reply


@pytest.mark.parametrize(
    "body",
    [
        {"choices": []},
        chat_reply(""),
        chat_reply(None),
        chat_reply({"unexpected": "object"}),
        chat_reply("[kb-invented-001]"),  # nothing left once the invalid citation is removed
        "this is not json",
    ],
)
def test_malformed_reply_falls_back(llm, tmp_path, vpn_passages, body) -> None:
    state, url = llm
    state.script = [(200, body, 0.0)]
    draft = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, url), TOPICS)
    assert draft.mode == "extractive"
    assert draft.fallback_reason.startswith("llm_malformed_reply")
    assert len(state.requests) == 1


def test_unreachable_endpoint_falls_back(tmp_path, vpn_passages) -> None:
    settings = _settings(tmp_path, "http://127.0.0.1:9/v1", timeout=0.5)  # discard port: nothing listens
    draft = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, settings, TOPICS)
    assert draft.mode == "extractive" and draft.fallback_reason.startswith("llm_unreachable")


def test_numbered_citations_resolve_and_a_retry_sends_the_same_prompt(llm, tmp_path, vpn_passages) -> None:
    state, url = llm
    state.script = [(200, chat_reply("Switch to TCP 443 [1] and see [kb-nope-000]."), 0.0)]
    ok = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, url), TOPICS)
    assert ok.mode == "llm" and ok.citations == ["kb-vpn-003"] and "kb-nope-000" not in ok.text

    state.script = [(200, chat_reply("late"), 1.0)]
    slow = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, url, 0.2), TOPICS)
    assert slow.mode == "extractive" and slow.fallback_reason == "llm_timeout"
    assert state.requests[0]["body"]["messages"] == state.requests[1]["body"]["messages"]


# Extractive mode ------------------------------------------------------------------------------------


def _step_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^\d+\. ", line)]


def test_no_llm_configured_gives_a_grounded_extractive_draft(tmp_path, vpn_passages) -> None:
    draft = _draft(VPN_TICKET, "vpn_network", "high", vpn_passages, _settings(tmp_path, None), TOPICS)
    assert (
        draft.mode == "extractive" and draft.fallback_reason == "llm_not_configured" and draft.model is None
    )
    assert draft.text.startswith("Hello,")
    assert "category: Vpn network (urgency: high)" in draft.text
    assert "vpn_network" not in draft.text  # people read words, not machine keys

    steps = _step_lines(draft.text)
    assert 1 <= len(steps) <= 5
    passage_text = {p.article_id: re.sub(r"\*\*|`", "", p.text) for p in vpn_passages}
    for line in steps:
        match = re.fullmatch(r"\d+\. (.+) \[([\w-]+)\]", line)
        assert match, line
        step, cited = match.groups()
        assert cited in draft.citations
        assert step in re.sub(r"\s+", " ", passage_text[cited]), f"step not taken from {cited}: {step}"
    # The top passage is about exactly this problem: its steps lead.
    assert draft.citations[0] == "kb-vpn-003"
    sources = draft.text.split("Sources:")[1]
    for article_id in draft.citations:
        title = next(p.title for p in vpn_passages if p.article_id == article_id)
        assert f"[{article_id}] {title}" in sources
    assert set(re.findall(r"\[(kb-[\w-]+)\]", draft.text)) == set(draft.citations)


@pytest.mark.parametrize("topic", ["not_a_model_label", "printer", None])
def test_extractive_draft_never_names_a_topic_outside_the_allowed_labels(
    tmp_path, vpn_passages, topic
) -> None:
    allowed = ["vpn_network", "access_password"]
    draft = _draft(VPN_TICKET, topic, "low", vpn_passages, _settings(tmp_path, None), allowed)
    assert "category" not in draft.text.lower()
    assert "urgency" not in draft.text.lower()
    for label in [*KB_TOPICS, "not_a_model_label"]:
        assert label not in draft.text


def test_french_ticket_gets_a_french_draft_from_french_passages(tmp_path, chunks_by_article) -> None:
    ticket = "Bonjour, je n'arrive plus à imprimer depuis ce matin, mes documents restent bloqués."
    assert detect_language(ticket) == "fr"
    passages = _passages(
        chunks_by_article,
        ("kb-print-101", _section(chunks_by_article, "kb-print-101", "Mes documents")),
        ("kb-print-004", 0),
    )
    names = LabelNames.load()
    topic, urgency = (
        names.name("topic", "printer", language="fr"),
        names.name("urgency", "medium", language="fr"),
    )
    allowed = [names.name("topic", t, language="fr") for t in TOPICS]
    draft = _draft(ticket, topic, urgency, passages, _settings(tmp_path, None), allowed)
    assert draft.text.startswith("Bonjour,")
    assert "catégorie : Imprimante (urgence : moyenne)" in draft.text
    assert draft.citations == ["kb-print-101"]
    assert "Sources :" in draft.text


def test_french_ticket_without_french_passages_says_the_steps_are_english(tmp_path, vpn_passages) -> None:
    ticket = "Le VPN se coupe toutes les cinq minutes quand je suis en télétravail."
    draft = _draft(ticket, "vpn_network", None, vpn_passages, _settings(tmp_path, None), TOPICS)
    assert draft.text.startswith("Bonjour,") and "articles en anglais" in draft.text
    assert draft.citations and set(draft.citations) <= {p.article_id for p in vpn_passages}


def test_no_passages_gives_an_honest_draft_without_calling_the_llm(llm, tmp_path) -> None:
    state, url = llm
    state.script = [(200, chat_reply("should not be asked"), 0.0)]
    draft = _draft("Printer on fire?", "printer", "critical", [], _settings(tmp_path, url), TOPICS)
    assert draft.mode == "extractive" and draft.fallback_reason == "no_passages"
    assert draft.citations == [] and "could not find" in draft.text
    assert state.requests == []


def test_filter_citations_leaves_ordinary_brackets_alone() -> None:
    text = "See [EXTERNAL] tags, the [guide](https://example.com) and [kb-a-001; 2] or [kb-zzz-9]."
    cleaned, cited = filter_citations(text, ["kb-a-001", "kb-b-002"])
    assert cleaned == "See [EXTERNAL] tags, the [guide](https://example.com) and [kb-a-001][kb-b-002] or."
    assert cited == ["kb-a-001", "kb-b-002"]
