"""A knowledge-base passage as retrieval returns it and drafting and the API read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    article_id: str
    chunk_id: str
    title: str
    heading: str
    text: str
    score: float  # raw cosine similarity to the query
    topic: str | None
    language: str | None
