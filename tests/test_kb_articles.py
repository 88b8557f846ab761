"""The knowledge base itself: every article in kb/ is valid, useful-sized and fictional."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from ticket_assets.rag.kb import (
    KB_DIR,
    KB_TOPICS,
    KnowledgeBaseError,
    kb_topic_for,
    load_articles,
    parse_article,
)


@pytest.fixture(scope="module")
def articles():
    return load_articles(KB_DIR)


def test_kb_has_enough_articles_in_both_languages(articles) -> None:
    languages = Counter(article.language for article in articles)
    assert len(articles) >= 45
    assert languages["fr"] >= 6
    assert set(languages) <= {"en", "fr"}


def test_every_topic_is_covered(articles) -> None:
    covered = Counter(article.topic for article in articles)
    assert set(covered) == set(KB_TOPICS), f"topics without an article: {set(KB_TOPICS) - set(covered)}"


def test_front_matter_is_complete_and_ids_match_file_names(articles) -> None:
    for article in articles:
        assert article.path.stem == article.id, f"{article.path.name}: id {article.id} differs from file name"
        assert re.fullmatch(r"kb-[a-z]+-\d{3}", article.id)
        assert article.title and article.tags
        assert all(isinstance(tag, str) and tag for tag in article.tags)
    assert len({a.id for a in articles}) == len(articles)


def test_articles_are_150_to_500_words_with_sections(articles) -> None:
    for article in articles:
        words = len(article.body.split())
        assert 150 <= words <= 500, f"{article.id}: {words} words"
        sections = re.findall(r"^## ", article.body, flags=re.MULTILINE)
        assert len(sections) >= 3, f"{article.id}: only {len(sections)} ## sections"
        steps = re.findall(r"^\s*(?:\d+\.|-)\s+\S", article.body, flags=re.MULTILINE)
        assert len(steps) >= 3, f"{article.id}: needs concrete steps"


def test_articles_use_only_fictional_addresses(articles) -> None:
    for article in articles:
        for host in re.findall(r"https?://([^/\s`)>]+)", article.body):
            assert host == "example.com" or host.endswith(".example.com") or host == "neverssl.com", (
                f"{article.id}: real-looking address {host}"
            )
        for address in re.findall(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)", article.body):
            assert address == "example.com", f"{article.id}: e-mail domain {address}"


def test_readme_documents_every_topic() -> None:
    readme = (KB_DIR / "README.md").read_text(encoding="utf-8")
    for topic in KB_TOPICS:
        assert f"`{topic}`" in readme


def _write(path: Path, front: str, body: str = "# T\n\n## S\n\nSome text.\n") -> Path:
    path.write_text(f"---\n{front}---\n{body}", encoding="utf-8")
    return path


GOOD_FRONT = "id: kb-test-001\ntitle: Test\ntopic: printer\ntags: [a]\nlanguage: en\n"


@pytest.mark.parametrize(
    ("front", "message"),
    [
        (GOOD_FRONT.replace("title: Test\n", ""), "missing front matter field(s): title"),
        (GOOD_FRONT.replace("printer", "coffee_machine"), "topic 'coffee_machine'"),
        (GOOD_FRONT.replace("language: en", "language: de"), "language 'de'"),
        (GOOD_FRONT.replace("tags: [a]", "tags: just-a-string"), "tags must be a list"),
        (GOOD_FRONT.replace("kb-test-001", "KB Test 1"), "lower-case slug"),
        ("id: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_front_matter_names_the_file(tmp_path: Path, front: str, message: str) -> None:
    path = _write(tmp_path / "broken.md", front)
    with pytest.raises(KnowledgeBaseError) as excinfo:
        parse_article(path)
    assert str(path) in str(excinfo.value)
    assert message in str(excinfo.value)


def test_missing_front_matter_and_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "plain.md").write_text("# No front matter\n", encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match="plain.md: missing front matter"):
        load_articles(tmp_path)
    (tmp_path / "plain.md").unlink()
    _write(tmp_path / "one.md", GOOD_FRONT)
    _write(tmp_path / "two.md", GOOD_FRONT)
    with pytest.raises(KnowledgeBaseError, match="duplicate id 'kb-test-001'"):
        load_articles(tmp_path)


def test_readme_is_not_an_article(tmp_path: Path) -> None:
    _write(tmp_path / "kb-test-001.md", GOOD_FRONT)
    (tmp_path / "README.md").write_text("# About\n", encoding="utf-8")
    assert [a.id for a in load_articles(tmp_path)] == ["kb-test-001"]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("vpn_network", "vpn_network"),
        ("Hardware", "hardware"),
        ("HR Support", None),  # no guessed aliases: only a learned map maps it
        ("something_new", None),
        (None, None),
    ],
)
def test_without_a_learned_map_only_kb_topics_steer_retrieval(
    label: str | None, expected: str | None
) -> None:
    assert kb_topic_for(label) == expected


def test_a_learned_map_decides_for_every_label_spelling() -> None:
    learned = {"hr_support": "hr_onboarding", "administrative_rights": None, "hardware": "hardware"}
    assert kb_topic_for("HR Support", learned) == "hr_onboarding"
    assert kb_topic_for("hr_support", learned) == "hr_onboarding"
    assert kb_topic_for("Administrative rights", learned) is None  # explicitly unmapped
    assert kb_topic_for("vpn_network", learned) is None  # not a label of this model
