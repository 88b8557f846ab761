"""Answer abstention with the real embedding model and the real KB index, and drafts for people."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import yaml

from ticket_assets.core.labels import LabelNames, LabelNamesError
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
    floor, weight, k = (
        settings.answer_min_relevance,
        settings.answer_lexical_weight,
        settings.answer_coverage_terms,
    )

    def relevance(item, w: float) -> float:
        return kb.relevance(embedder.encode([item["q"]])[0], item["q"], w, k)

    covered = np.array([relevance(item, weight) for item in QUESTIONS["covered"]])
    uncovered = np.array([relevance(item, weight) for item in QUESTIONS["uncovered"]])
    assert np.mean(covered < floor) <= 0.05  # covered questions still get an answer
    # 86 % on these questions, 86 % held out (BENCHMARKS.md "Answer abstention"); a drop means the
    # floor, the weight or retrieval moved.
    assert np.mean(uncovered < floor) >= 0.8
    # The dense score alone, at its own floor for the same covered rate, abstains on far fewer.
    dense_covered = np.sort([relevance(item, 0.0) for item in QUESTIONS["covered"]])
    dense_floor = dense_covered[int(0.05 * len(dense_covered))] - 1e-6
    dense_uncovered = np.array([relevance(item, 0.0) for item in QUESTIONS["uncovered"]])
    assert np.mean(dense_uncovered < dense_floor) < np.mean(uncovered < floor) - 0.1
    # w = 0 is the best passage's cosine.
    item = QUESTIONS["covered"][0]
    assert relevance(item, 0.0) == pytest.approx(
        max(p.score for p in _passages(kb, embedder, item["q"])), abs=1e-5
    )


def test_coverage_is_the_share_of_the_ticket_words_an_article_holds(kb) -> None:
    assert kb.coverage("the coffee machine in the kitchen is leaking") < 0.3
    assert kb.coverage("mot de passe oublié, compte verrouillé") > 0.7  # accents and plurals folded
    assert kb.coverage("") == 0.0
    # Only the rarest words count with top_terms: a common word the article lacks costs nothing.
    assert kb.coverage("Concur expense claim", 1) == 0.0


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
    names = LabelNames.load()
    question = "j'ai oublié mon mot de passe, comment le changer moi-même"
    topic = names.name("topic", "access_password", language="fr")
    draft = extractive_draft(
        question,
        topic,
        names.name("urgency", "high", language="fr"),
        _passages(kb, embedder, question),
        [topic],
    )
    assert "catégorie : Accès / mot de passe (urgence : haute)" in draft.text
    # In English the export's own spelling wins over the shipped name; a key without either is put in words.
    spelled = names.name("topic", "hr_support", {"hr_support": "HR Support"})
    english = extractive_draft("printer jam", spelled, names.name("urgency", "critical"), [], [spelled])
    assert "category: HR Support (urgency: critical)" in english.text
    assert names.name("topic", "storage", {"storage": "storage"}) == "Storage"  # a bare key is no spelling
    assert names.name("assignment_group", "new_queue") == "New queue"
    assert names.name("topic", "hardware", {"hardware": "Hardware"}, language="fr") == "Matériel"


def test_label_names_file_errors_are_one_line(tmp_path) -> None:
    bad = tmp_path / "names.yaml"
    bad.write_text("topic: [not, a, mapping]\n", encoding="utf-8")
    with pytest.raises(LabelNamesError, match=r"^label names .*names.yaml: expected target"):
        LabelNames.load(bad)
    with pytest.raises(LabelNamesError, match="No such file"):
        LabelNames.load(tmp_path / "missing.yaml")
