"""Text helpers shared by every ticket source: normalisation, hashing and language.

Labels (keys, display names, urgency synonyms) live in ``ticket_assets.core.labels``.

Each scalar helper has a polars twin (``*_expr``/``*_series``) for whole frames; tests keep the
two in agreement so a ticket hashes the same whichever path ingested it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import polars as pl

_WORD = re.compile(r"[a-zàâäçéèêëîïôöùûüÿœæ']+")

# Short, frequent words: a handful per ticket is enough to tell English from French. Words that
# are also common in other languages or in English shorthand ('la', 'ne', 'mon' = Monday) are
# left out, so Romanian or Spanish fragments in an English export do not read as French.
_EN_WORDS = frozenset(
    "the and is are was to of for in on it my i we you this that with have has not can can't cannot "
    "please hi hello thanks thank regards from be at or but when since would could need help "
    "working doesn't don't won't isn't any our your me get".split()
)
_FR_WORDS = frozenset(
    "le les un une des du et est sont je j'ai nous vous il elle pas plus mes notre votre pour avec "
    "sur dans depuis merci bonjour cordialement svp au aux cette qui que fonctionne marche besoin "
    "mais très peux pouvez impossible ma mon de la ne".split()
) - {"la", "ne", "mon"}
_FR_ACCENTS = frozenset("éèêàâçùûôîœ")


def normalize_text(value: str | None) -> str:
    """Canonical form used for hashing/deduplication: NFKC, lower case, single spaces."""
    if not value:
        return ""
    if not value.isascii():  # NFKC never changes ASCII; skipping it halves the cost
        value = unicodedata.normalize("NFKC", value)
    return " ".join(value.lower().split())


def text_hash(title: str | None, body: str | None) -> str:
    """sha256 of the normalised title and body (a newline keeps 'a'+'bc' apart from 'ab'+'c')."""
    payload = f"{normalize_text(title)}\n{normalize_text(body)}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# str.split() whitespace: Unicode White_Space plus the ASCII separators \x1c-\x1f.
# Matching only runs or non-space characters leaves the common single space alone (10x faster).
_WHITESPACE_RUN = (
    r"[\s\x1c-\x1f]{2,}|[\t\n\v\f\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)


def normalize_text_expr(column: str | pl.Expr, *, ascii_only: bool = False) -> pl.Expr:
    """Polars twin of ``normalize_text``; ``ascii_only`` skips NFKC for rows known to be ASCII."""
    expr = pl.col(column) if isinstance(column, str) else column
    expr = expr.fill_null("")
    if not ascii_only:
        expr = expr.str.normalize("NFKC")
    return expr.str.to_lowercase().str.replace_all(_WHITESPACE_RUN, " ").str.strip_chars(" ")


def text_hash_series(title: pl.Series, body: pl.Series) -> pl.Series:
    """Vectorised ``text_hash``: normalisation in polars, sha256 in a tight loop (~1 µs/row).

    NFKC is slow in polars and a no-op on ASCII, so it runs only on the rows that need it.
    """
    frame = pl.DataFrame({"title": title, "body": body}, schema={"title": pl.String, "body": pl.String})
    # A string is ASCII exactly when its byte and character lengths agree.
    non_ascii = frame.select(
        (pl.col("title").str.len_bytes() != pl.col("title").str.len_chars()).fill_null(False)
        | (pl.col("body").str.len_bytes() != pl.col("body").str.len_chars()).fill_null(False)
    ).to_series()
    normalised = frame.select(
        pl.concat_str(
            [normalize_text_expr("title", ascii_only=True), normalize_text_expr("body", ascii_only=True)],
            separator="\n",
        ).alias("text")
    ).to_series()
    rows = non_ascii.arg_true()
    if len(rows):
        special = frame[rows].select(
            pl.concat_str([normalize_text_expr("title"), normalize_text_expr("body")], separator="\n")
        )
        normalised = normalised.scatter(rows, special.to_series())
    sha = hashlib.sha256
    return pl.Series(
        "text_hash", [sha(text.encode("utf-8")).hexdigest() for text in normalised], dtype=pl.String
    )


def detect_language(text: str | None) -> str | None:
    """'en' or 'fr' from stop-word counts (accents break ties); None for empty text.

    Deliberately tiny: tickets are short and the platform only needs to route French ones.
    Text with no evidence either way is taken as English, the platform's default language.
    """
    if not text or not text.strip():
        return None
    lowered = text.lower()
    words = _WORD.findall(lowered)
    english = sum(word in _EN_WORDS for word in words)
    french_words = [word for word in words if word in _FR_WORDS]
    # Two distinct French words (or one plus French accents) before a single hit counts.
    accented = not _FR_ACCENTS.isdisjoint(lowered)
    evidence = len(set(french_words)) >= 2 or (accented and french_words)
    if evidence and len(french_words) + accented > english:
        return "fr"
    return "en"
