"""Text helpers shared by every ticket source: normalisation, hashing and labels.

Each scalar helper has a polars twin (``*_expr``/``*_series``) for whole frames; tests keep the
two in agreement so a ticket hashes the same whichever path ingested it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import polars as pl

URGENCY_LEVELS: list[str] = ["low", "medium", "high", "critical"]  # most urgent last

# Same rule as the dbt macro normalise_label, so a label normalises identically in both places.
_LABEL_SEPARATORS = re.compile(r"[\s_-]+")

# Priority words seen in help-desk exports (Zendesk, ServiceNow, Jira) mapped onto our four
# levels. Keys are already normalised with ``normalize_label``; anything else is kept as-is.
URGENCY_ALIASES: dict[str, str] = {
    "p1": "critical",
    "p2": "high",
    "p3": "medium",
    "p4": "low",
    "p5": "low",
    "sev1": "critical",
    "sev2": "high",
    "sev3": "medium",
    "sev4": "low",
    "1": "critical",
    "2": "high",
    "3": "medium",
    "4": "low",
    "5": "low",
    "urgent": "critical",
    "blocker": "critical",
    "highest": "critical",
    "critique": "critical",
    "urgente": "critical",
    "major": "high",
    "haute": "high",
    "elevee": "high",
    "élevée": "high",
    "normal": "medium",
    "moderate": "medium",
    "moyenne": "medium",
    "minor": "low",
    "trivial": "low",
    "lowest": "low",
    "planning": "low",
    "basse": "low",
    "faible": "low",
}


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


def normalize_label(value: str | None) -> str | None:
    """'Hardware ' -> 'hardware', 'HR  Support' -> 'hr_support', 'Internal - Project' -> 'internal_project'."""
    if value is None:
        return None
    label = _LABEL_SEPARATORS.sub("_", value.strip().lower()).strip("_")
    return label or None


def normalize_urgency(value: str | None) -> str | None:
    """Map common priority words (P1, urgent, normal ...) onto URGENCY_LEVELS; keep others normalised."""
    label = normalize_label(value)
    if label is None:
        return None
    return URGENCY_ALIASES.get(label, label)
