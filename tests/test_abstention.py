"""Answer abstention with the real embedding model and the real KB index, and drafts for people."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import yaml

from ticket_assets.core.language import detect_language
from ticket_assets.rag.draft import draft_answer, extractive_draft
from ticket_assets.rag.index import KnowledgeBase, build_snapshot, embed_chunks, publish
from ticket_assets.rag.kb import KB_DIR, chunk_article, load_articles
from ticket_assets.settings import Settings

QUESTIONS = yaml.safe_load((Path(__file__).parent / "data" / "kb_questions.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("kb") / "data", qdrant_url=None)


@pytest.fixture(scope="module")
def kb(settings, embedder) -> KnowledgeBase:
    chunks = [chunk for article in load_articles(KB_DIR) for chunk in chunk_article(article)]
    publish(build_snapshot(chunks, embed_chunks(chunks, embedder), embedder.model_id, settings), settings)
    return KnowledgeBase.open(settings)


def _passages(kb, embedder, question: str):
    return kb.search(embedder.encode([question])[0], 4, language=detect_language(question))


def _draft(kb, embedder, settings, question: str, topic: str = "access_password"):
    return asyncio.run(
        draft_answer(
            question,
            topic,
            "high",
            _passages(kb, embedder, question),
            settings,
            [topic],
            min_relevance=settings.answer_min_relevance,
        )
    )


def test_the_question_set_is_large_and_bilingual() -> None:
    for group in ("covered", "uncovered"):
        langs = [item["lang"] for item in QUESTIONS[group]]
        assert len(langs) >= 40 and langs.count("fr") >= 10, group


def test_default_floor_answers_covered_and_abstains_on_most_uncovered(kb, embedder, settings) -> None:
    floor = settings.answer_min_relevance

    def best(item) -> float:
        return max(p.score for p in _passages(kb, embedder, item["q"]))

    covered = np.array([best(item) for item in QUESTIONS["covered"]])
    uncovered = np.array([best(item) for item in QUESTIONS["uncovered"]])
    assert np.mean(covered < floor) <= 0.05  # covered questions still get an answer
    # Measured 66 % (BENCHMARKS.md "Answer abstention"); a drop means the floor or retrieval moved.
    assert np.mean(uncovered < floor) >= 0.6


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("the coffee machine in the kitchen is leaking", "No article in our knowledge base covers"),
        ("la machine à café de l'étage fuit", "Aucun article de notre base de connaissances"),
    ],
)
def test_uncovered_question_gets_a_no_answer_draft_in_its_language(
    kb, embedder, settings, question, expected
):
    draft = _draft(kb, embedder, settings, question)
    assert draft.mode == "no_answer" and draft.citations == []
    assert expected in draft.text and "agent" in draft.text
    assert "access_password" not in draft.text


def test_covered_question_is_answered_with_citations(kb, embedder, settings) -> None:
    draft = _draft(kb, embedder, settings, "I can't remember my password, how do I set a new one myself?")
    assert draft.mode == "extractive" and draft.citations
    assert "Access password" in draft.text and "access_password" not in draft.text


def test_drafts_show_readable_labels_in_the_ticket_language(kb, embedder) -> None:
    question = "j'ai oublié mon mot de passe, comment le changer moi-même"
    draft = extractive_draft(
        question, "access_password", "high", _passages(kb, embedder, question), ["access_password"]
    )
    assert "catégorie : Access password (urgence : haute)" in draft.text
    english = extractive_draft("printer jam", "HR Support", "critical", [], ["HR Support"])
    assert "category: HR Support (urgency: critical)" in english.text
