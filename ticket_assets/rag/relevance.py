"""How well the knowledge base covers a ticket: the number `/v1/answer` abstains under.

The serving embedder is an English model: French questions score ~0.45 against French passages
whatever they ask, and near misses ("attachments over 10 MB are rejected" against the mailbox-quota
article) score like real matches, so the best passage's cosine alone separates covered from
uncovered questions poorly. Words help where the embedder is weak: a ticket about the coffee
machine, payslips or Concur uses words no article contains. An article's ``coverage`` is the
IDF-weighted share of the ticket's words it holds (title, tags and text; accents folded, EN and FR
stop words dropped, a light suffix stemmer for both languages), counting only the ticket's
``top_terms`` rarest words when given: what a ticket is about, not how it is phrased.

Two relevances: ``hybrid_relevance``, ``(1 - w) * best passage cosine + w * best coverage`` (the
two maxima may come from different articles), and ``article_relevance`` (served), the best of
``(1 - w) * cosine + w * coverage`` over articles, so one article must both read like the ticket
and hold its rare words. ``w``, ``top_terms`` and the floor are calibrated on
tests/data/kb_questions.yaml (benchmarks/bench_abstention.py, cross-validated figures in
BENCHMARKS.md "Answer abstention"); ``w = 0`` is the dense score alone.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    """a an and are as at be but by can cannot could do does for from has have how i if in into is it its
    me my no not of on or our so that the their them then there this to up was we what when where which
    who why will with would you your also any all get got just than too very out off over am been
    le la les l un une des du de d et est en je j ne n pas plus mon ma mes que qui quoi sur pour par avec
    dans au aux ce cet cette ces il elle on nous vous se s sa son ses leur y ai a ete etre depuis m qu t
    comment peut puis dois faut veux voudrais""".split()
)
# Longest first; a stem keeps at least 4 letters, so short words ("mail", "vpn") stay whole.
_SUFFIXES = tuple(
    sorted(
        """issements issement ements ement ations ation ateurs ateur atrices atrice euses euse eurs eur
        ances ance ences ence ismes isme istes iste ables able ibles ible ites ite ives ive ifs if ees ee
        es e s x ing ed ly ies er ers""".split(),
        key=len,
        reverse=True,
    )
)


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def _stem(token: str) -> str:
    for suffix in _SUFFIXES:
        if len(token) - len(suffix) >= 4 and token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def terms(text: str) -> list[str]:
    """Distinct content words of ``text``, folded and stemmed, in order of appearance."""
    words = (_stem(w) for w in _WORD.findall(_fold(text)) if len(w) > 1 and w not in _STOPWORDS)
    return list(dict.fromkeys(words))


@dataclass(frozen=True)
class LexicalIndex:
    """The words of each article (all its chunks, title and tags) and their document frequency."""

    article_terms: Mapping[str, frozenset[str]]
    document_frequency: Mapping[str, int]

    @classmethod
    def build(cls, chunks: Iterable[Mapping[str, object]]) -> LexicalIndex:
        """From chunk records with ``article_id``, ``title``, ``heading``, ``text`` and ``tags``."""
        words: dict[str, set[str]] = {}
        for chunk in chunks:
            tags = " ".join(str(t) for t in (chunk.get("tags") or []))  # type: ignore[union-attr]
            text = " ".join(str(chunk.get(k) or "") for k in ("title", "heading", "text"))
            words.setdefault(str(chunk["article_id"]), set()).update(terms(f"{text} {tags}"))
        frequency = Counter(term for found in words.values() for term in found)
        return cls({a: frozenset(t) for a, t in words.items()}, dict(frequency))

    def idf(self, term: str) -> float:
        # A word no article has weighs most: it is what an uncovered ticket is about.
        n = len(self.article_terms)
        return math.log((n + 1) / (self.document_frequency.get(term, 0) + 0.5))

    def article_coverage(self, text: str, top_terms: int = 0) -> dict[str, float]:
        """Per article, the IDF-weighted share of the words of ``text`` it contains (0..1); with
        ``top_terms`` > 0 only that many of the rarest words count."""
        query = terms(text)
        if not query or not self.article_terms:
            return {}
        weights = {term: self.idf(term) for term in query}
        if top_terms > 0:  # stable sort: ties keep the ticket's word order
            weights = dict(sorted(weights.items(), key=lambda kv: -kv[1])[:top_terms])
        total = sum(weights.values())
        return {
            article: sum(w for term, w in weights.items() if term in found) / total
            for article, found in self.article_terms.items()
        }

    def coverage(self, text: str, top_terms: int = 0) -> float:
        """The largest share of the words of ``text`` that one article contains (0..1)."""
        return max(self.article_coverage(text, top_terms).values(), default=0.0)


def hybrid_relevance(dense: float, coverage: float, lexical_weight: float) -> float:
    """The relevance ``/v1/answer`` compares with its floor; ``lexical_weight = 0``: the cosine alone."""
    return (1.0 - lexical_weight) * dense + lexical_weight * coverage


def article_relevance(
    cosines: Mapping[str, float], coverage: Mapping[str, float], lexical_weight: float
) -> float:
    """The best ``(1 - w) * cosine + w * coverage`` over articles: ``cosines`` holds each candidate
    article's best passage cosine; an article outside it is scored at the lowest cosine it holds
    (an upper bound when ``cosines`` is the top of a search). ``w = 0``: the best cosine."""
    if not cosines:
        return 0.0
    floor = min(cosines.values())
    articles = set(cosines) | (set(coverage) if lexical_weight > 0 else set())
    return max(
        (1.0 - lexical_weight) * cosines.get(a, floor) + lexical_weight * coverage.get(a, 0.0)
        for a in articles
    )
