"""Text helpers shared by every ticket source: normalisation and hashing.

Labels (keys, display names, urgency synonyms) live in ``ticket_assets.core.labels``; language
detection in ``ticket_assets.core.language``.

Each scalar helper has a polars twin (``*_expr``/``*_series``) for whole frames; tests keep the
two in agreement so a ticket hashes the same whichever path ingested it.
"""

from __future__ import annotations

import hashlib
import unicodedata

import polars as pl


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
