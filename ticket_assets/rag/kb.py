"""Knowledge-base articles (``kb/*.md`` with YAML front matter) and heading-aware chunking.

A chunk is one section (``##``/``###``) of an article, or several tiny neighbouring sections merged,
or one part of a long section split on paragraphs. Its id is a hash of (article id, heading path,
text), so re-chunking unchanged content yields the same ids and only edited sections get new ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ticket_assets.core.labels import normalize_label
from ticket_assets.core.paths import KB_DIR

# Retrieval filters on these; kb/README.md documents what each one covers.
KB_TOPICS: tuple[str, ...] = (
    "access_password",
    "vpn_network",
    "wifi",
    "email_calendar",
    "printer",
    "hardware",
    "software_install",
    "storage",
    "security_phishing",
    "hr_onboarding",
    "purchase",
    "outage_escalation",
)
KB_LANGUAGES: tuple[str, ...] = ("en", "fr")
REQUIRED_FIELDS: tuple[str, ...] = ("id", "title", "topic", "tags", "language")

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÀ-Ý*`\"(])")
HEADING_SEPARATOR = " > "


class KnowledgeBaseError(ValueError):
    """An article file is malformed; the message names the file."""


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    topic: str
    tags: tuple[str, ...]
    language: str
    body: str
    path: Path


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    article_id: str
    title: str
    topic: str | None
    language: str | None
    tags: tuple[str, ...]
    heading: str
    text: str

    @property
    def embedding_text(self) -> str:
        """What gets embedded: the title and heading path give a short section its context."""
        context = HEADING_SEPARATOR.join(part for part in (self.title, self.heading) if part)
        return f"{context}\n\n{self.text}"


def kb_topic_for(label: str | None, topic_map: Mapping[str, str | None] | None = None) -> str | None:
    """The KB topic a ticket label prefers in retrieval, or None when it should not steer it.

    ``topic_map`` is the served model's learned map (``rag.topic_map``): a label maps to what its
    tickets retrieve, or explicitly to None. Without one (older models) only a label that is itself
    a KB topic prefers it; a guessed mapping would hide the right article as often as it helps.
    """
    key = normalize_label(label)
    if key is None:
        return None
    if topic_map is not None:
        return topic_map.get(key)
    return key if key in KB_TOPICS else None


# Loading ------------------------------------------------------------------------------------------


def load_articles(kb_dir: Path | str = KB_DIR) -> list[Article]:
    """Every article in ``kb_dir`` (README excluded), validated, sorted by id."""
    kb_dir = Path(kb_dir)
    if not kb_dir.is_dir():
        raise KnowledgeBaseError(f"knowledge-base directory not found: {kb_dir}")
    articles = [parse_article(path) for path in sorted(kb_dir.glob("*.md")) if path.stem.upper() != "README"]
    seen: dict[str, Path] = {}
    for article in articles:
        if article.id in seen:
            raise KnowledgeBaseError(
                f"{article.path}: duplicate id {article.id!r} (also in {seen[article.id].name})"
            )
        seen[article.id] = article.path
    return sorted(articles, key=lambda a: a.id)


def parse_article(path: Path) -> Article:
    text = path.read_text(encoding="utf-8")
    front, body = _split_front_matter(text, path)
    try:
        meta = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        raise KnowledgeBaseError(f"{path}: front matter is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise KnowledgeBaseError(f"{path}: front matter must be a mapping")
    return Article(**_validated_fields(meta, path), body=body.strip("\n"), path=path)


def _split_front_matter(text: str, path: Path) -> tuple[str, str]:
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise KnowledgeBaseError(f"{path}: missing front matter (the file must start with '---')")
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[1:index]), "".join(lines[index + 1 :])
    raise KnowledgeBaseError(f"{path}: front matter is not closed by a '---' line")


def _validated_fields(meta: dict, path: Path) -> dict:
    missing = [name for name in REQUIRED_FIELDS if meta.get(name) in (None, "", [])]
    if missing:
        raise KnowledgeBaseError(f"{path}: missing front matter field(s): {', '.join(missing)}")
    article_id = str(meta["id"])
    if not _ID_PATTERN.match(article_id):
        raise KnowledgeBaseError(f"{path}: id {article_id!r} must be a lower-case slug like 'kb-vpn-001'")
    topic = str(meta["topic"])
    if topic not in KB_TOPICS:
        raise KnowledgeBaseError(f"{path}: topic {topic!r} is not one of {', '.join(KB_TOPICS)}")
    language = str(meta["language"])
    if language not in KB_LANGUAGES:
        raise KnowledgeBaseError(f"{path}: language {language!r} must be one of {', '.join(KB_LANGUAGES)}")
    tags = meta["tags"]
    if not isinstance(tags, list) or not all(isinstance(tag, str | int) for tag in tags):
        raise KnowledgeBaseError(f"{path}: tags must be a list of strings")
    return {
        "id": article_id,
        "title": str(meta["title"]).strip(),
        "topic": topic,
        "tags": tuple(str(tag) for tag in tags),
        "language": language,
    }


# Chunking -----------------------------------------------------------------------------------------


@dataclass
class _Section:
    path: tuple[str, ...]  # heading path below the article title, e.g. ("Common problems", "Codes")
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())

    @property
    def heading(self) -> str:
        return HEADING_SEPARATOR.join(self.path)


def chunk_article(article: Article, max_words: int = 180, min_words: int = 25) -> list[Chunk]:
    """Heading-aware chunks of at most ``max_words`` words (a single paragraph can only be split at lines)."""
    sections = _sections(article.body)
    pieces: list[_Section] = []
    for section in _merge_tiny(sections, max_words, min_words):
        pieces.extend(_split_long(section, max_words))
    return [_make_chunk(article, piece) for piece in pieces if piece.text.strip()]


def _make_chunk(article: Article, section: _Section) -> Chunk:
    text = section.text.strip()
    return Chunk(
        chunk_id=chunk_id_for(article.id, section.heading, text),
        article_id=article.id,
        title=article.title,
        topic=article.topic,
        language=article.language,
        tags=article.tags,
        heading=section.heading,
        text=text,
    )


def chunk_id_for(article_id: str, heading: str, text: str) -> str:
    digest = hashlib.sha256("\x1f".join((article_id, heading, text)).encode("utf-8"))
    return digest.hexdigest()[:32]


def _sections(body: str) -> list[_Section]:
    """Split on ## and deeper headings (the # title is front matter already); code fences are opaque."""
    sections: list[_Section] = []
    path: list[str] = []
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        if "".join(buffer).strip():
            sections.append(_Section(tuple(path), "\n".join(buffer).strip("\n")))
        buffer.clear()

    for line in body.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            buffer.append(line)
            continue
        level, title = len(match.group(1)), match.group(2).strip()
        flush()
        if level == 1:
            path = []
        else:
            # ## starts a new top-level section; ### nests under the current ##, and so on.
            path = path[: level - 2] + [title]
    flush()
    return sections


def _merge_tiny(sections: list[_Section], max_words: int, min_words: int) -> list[_Section]:
    """Fold the intro and sections under ``min_words`` into a neighbour (within ``max_words``)."""
    merged: list[_Section] = []
    for section in sections:
        previous = merged[-1] if merged else None
        # An untitled intro restates the problem; alone it out-ranks the section that solves it.
        intro = previous is not None and not previous.path
        if previous is not None and (intro or previous.words < min_words or section.words < min_words):
            joined = _join(previous, section)
            if joined.words <= max_words:
                merged[-1] = joined
                continue
        merged.append(_Section(section.path, section.text))
    return merged


def _join(first: _Section, second: _Section) -> _Section:
    # The heading line of the second part stays in the text so the merged chunk still reads in order.
    label = second.path[-1] if second.path else ""
    label = label if label[-1:] in ("?", ":", ".", "!") else f"{label}:"
    second_text = f"{label}\n{second.text}" if second.path and second.path != first.path else second.text
    if not first.path:  # an untitled intro takes the heading of what follows
        return _Section(second.path, f"{first.text}\n\n{second.text}")
    path = (
        first.path
        if second.path[: len(first.path)] == first.path
        else _combined_path(first.path, second.path)
    )
    return _Section(path, f"{first.text}\n\n{second_text}")


def _combined_path(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return (*first[:-1], f"{first[-1]} / {second[-1]}") if second else first


def _split_long(section: _Section, max_words: int) -> list[_Section]:
    if section.words <= max_words:
        return [section]
    parts: list[_Section] = []
    current = ""
    current_paragraph = -1
    for paragraph, unit in _paragraph_units(section.text, max_words):
        if current and len(current.split()) + len(unit.split()) > max_words:
            parts.append(_Section(section.path, current))
            current = ""
        # Lines of one split paragraph (a long list) stay single-spaced, paragraphs double-spaced.
        separator = "\n" if paragraph == current_paragraph else "\n\n"
        current = f"{current}{separator}{unit}" if current else unit
        current_paragraph = paragraph
    if current:
        parts.append(_Section(section.path, current))
    return parts


def _paragraph_units(text: str, max_words: int) -> list[tuple[int, str]]:
    """(paragraph index, text) units: paragraphs, or lines then sentences when a paragraph is too long."""
    units: list[tuple[int, str]] = []
    for index, paragraph in enumerate(re.split(r"\n\s*\n", text)):
        paragraph = paragraph.strip("\n")
        if not paragraph.strip():
            continue
        if len(paragraph.split()) <= max_words:
            units.append((index, paragraph))
            continue
        for line in paragraph.splitlines():
            pieces = [line] if len(line.split()) <= max_words else _SENTENCE_END.split(line)
            units.extend((index, piece) for piece in pieces if piece.strip())
    return units
