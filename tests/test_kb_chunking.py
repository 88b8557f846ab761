"""Heading-aware chunking: bounded sizes, context kept, content preserved, ids stable."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from ticket_assets.rag.kb import KB_DIR, Article, chunk_article, load_articles, parse_article


@pytest.fixture(scope="module")
def articles() -> list[Article]:
    return load_articles(KB_DIR)


def _article(body: str, article_id: str = "kb-test-001") -> Article:
    return Article(
        id=article_id,
        title="Test article",
        topic="printer",
        tags=("t",),
        language="en",
        body=body,
        path=Path("x.md"),
    )


def test_chunk_ids_are_stable_across_runs(articles) -> None:
    first = [c.chunk_id for a in articles for c in chunk_article(a)]
    second = [c.chunk_id for a in load_articles(KB_DIR) for c in chunk_article(a)]
    assert first == second
    assert len(set(first)) == len(first)


def test_editing_one_section_changes_only_its_chunk(articles, tmp_path: Path) -> None:
    original = next(a for a in articles if a.id == "kb-vpn-002")
    before = chunk_article(original)
    edited_path = tmp_path / "kb-vpn-002.md"
    text = original.path.read_text(encoding="utf-8")
    edited_text = text.replace("Try a phone hotspot", "Try a mobile phone hotspot", 1)
    assert edited_text != text
    edited_path.write_text(edited_text, encoding="utf-8")
    after = chunk_article(parse_article(edited_path))

    changed_before = {c.chunk_id for c in before} - {c.chunk_id for c in after}
    changed_after = {c.chunk_id for c in after} - {c.chunk_id for c in before}
    assert len(changed_before) == len(changed_after) == 1
    (new_chunk,) = [c for c in after if c.chunk_id in changed_after]
    assert "mobile phone hotspot" in new_chunk.text
    assert len(after) == len(before)


def test_chunk_id_depends_on_article_and_heading_too(articles) -> None:
    article = articles[0]
    chunk = chunk_article(article)[0]
    renamed = chunk_article(dataclasses.replace(article, id="kb-other-999"))[0]
    assert renamed.text == chunk.text and renamed.chunk_id != chunk.chunk_id


def test_real_articles_chunk_within_bounds_and_keep_all_content(articles) -> None:
    for article in articles:
        chunks = chunk_article(article, max_words=180)
        assert chunks, article.id
        for chunk in chunks:
            assert 0 < len(chunk.text.split()) <= 180, (article.id, chunk.heading)
            assert chunk.article_id == article.id and chunk.topic == article.topic
            assert chunk.language == article.language and chunk.title == article.title
            assert chunk.embedding_text.startswith(article.title)
        joined = "\n".join(chunk.text for chunk in chunks)
        for line in article.body.splitlines():
            if line.strip() and not line.startswith("#"):
                assert line.strip() in joined, f"{article.id}: lost line {line!r}"


def test_sections_nest_and_the_intro_joins_the_first_section() -> None:
    intro = "This article explains printing. " * 3
    body = (
        f"# Title\n\n{intro}\n\n## Setup\n\n"
        + "Step words here. " * 15
        + "\n\n### On macOS\n\n"
        + "Mac steps. " * 20
    )
    chunks = chunk_article(_article(body), max_words=180, min_words=5)
    assert [c.heading for c in chunks] == ["Setup", "Setup > On macOS"]
    assert chunks[0].text.startswith("This article explains printing.")
    assert chunks[1].embedding_text.startswith("Test article > Setup > On macOS\n\n")


def test_tiny_sections_are_merged_with_their_heading_kept_in_the_text() -> None:
    body = (
        "## Big\n\n"
        + "Long enough content here. " * 10
        + "\n\n## Tiny\n\nJust one line.\n\n## Next\n\n"
        + "More. " * 40
    )
    chunks = chunk_article(_article(body), max_words=180, min_words=25)
    merged = chunks[0]
    assert merged.heading == "Big / Tiny"
    assert "Tiny:\nJust one line." in merged.text
    assert chunks[1].heading == "Next"


def test_long_sections_split_on_paragraphs_under_the_same_heading() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 60 for i in range(7)]
    body = "## Long section\n\n" + "\n\n".join(paragraphs)
    chunks = chunk_article(_article(body), max_words=180)
    assert len(chunks) >= 3
    assert {c.heading for c in chunks} == {"Long section"}
    assert all(len(c.text.split()) <= 180 for c in chunks)
    # Paragraphs are never cut in the middle.
    for chunk in chunks:
        assert all(
            re.fullmatch(r"Paragraph \d (word )*word", part.strip()) for part in chunk.text.split("\n\n")
        )
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_a_long_list_is_split_between_items_not_inside_them() -> None:
    items = "\n".join(f"{i}. " + "do this step carefully " * 6 for i in range(1, 13))
    chunks = chunk_article(_article(f"## Steps\n\n{items}"), max_words=100)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert all(re.match(r"\d+\. do this", line) for line in chunk.text.splitlines())


def test_headings_inside_code_fences_are_not_sections() -> None:
    body = (
        "## Script\n\n```bash\n# not a heading\necho hi\n```\n\nRun it from a terminal window as shown above."
    )
    chunks = chunk_article(_article(body), min_words=1)
    assert len(chunks) == 1 and "# not a heading" in chunks[0].text
