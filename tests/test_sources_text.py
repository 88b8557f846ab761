"""Text helpers: the scalar and vectorised paths must agree, labels must normalise predictably."""

from __future__ import annotations

import polars as pl

from ticket_assets.sources.text import (
    normalize_text,
    text_hash,
    text_hash_series,
)

TRICKY_TEXTS = [
    None,
    "",
    "  Printer\u00a0JAMS\tagain\n\n",
    "ﬁle on Ｆｕｌｌｗｉｄｔｈ drive",
    "record\x1cseparator",
    "Écran\u2003noir",
    "ΣΟΦΙΑΣ",
    "\u3000leading ideographic space",
    "İstanbul office",
    "line\r\nbreaks",
    "zero\u200bwidth",
]


def test_normalize_text_canonicalises_case_width_and_whitespace() -> None:
    assert normalize_text("  Printer\u00a0JAMS\tagain\n\n") == "printer jams again"
    assert normalize_text("Ｆｕｌｌ") == "full"
    assert normalize_text(None) == ""


def test_text_hash_ignores_formatting_but_not_content() -> None:
    assert text_hash("VPN down", "Cannot  connect\n") == text_hash("vpn DOWN", "cannot connect")
    assert text_hash("VPN down", "Cannot connect") != text_hash("VPN down", "Can connect")
    # The separator keeps title/body boundaries apart.
    assert text_hash("ab", "c") != text_hash("a", "bc")
    assert len(text_hash(None, "x")) == 64


def test_vectorised_hash_matches_scalar_hash_on_tricky_unicode() -> None:
    titles = pl.Series(TRICKY_TEXTS * 2, dtype=pl.String)
    bodies = pl.Series(TRICKY_TEXTS + TRICKY_TEXTS[::-1], dtype=pl.String)
    expected = [text_hash(t, b) for t, b in zip(titles.to_list(), bodies.to_list(), strict=True)]
    assert text_hash_series(titles, bodies).to_list() == expected
