"""The label contract: keys for machines, original spellings for people."""

from __future__ import annotations

import pytest

from ticket_assets.core.labels import (
    URGENCY_LEVELS,
    LabelMap,
    display_label,
    match_labels,
    normalize_label,
    normalize_urgency,
)


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("Hardware ", "hardware"),
        ("HR  Support", "hr_support"),
        ("access__password", "access_password"),
        (" Internal - Project ", "internal_project"),
        ("  ", None),
    ],
)
def test_normalize_label(raw: str, label: str | None) -> None:
    assert normalize_label(raw) == label


@pytest.mark.parametrize(
    ("raw", "urgency"),
    [("P1", "critical"), ("Urgent", "critical"), ("p2", "high"), ("High ", "high"), ("Normal", "medium"),
     ("P4", "low"), ("Whenever Possible", "whenever_possible"), (None, None)],
)  # fmt: skip
def test_normalize_urgency_maps_priority_words_and_keeps_unknown_values(
    raw: str | None, urgency: str | None
) -> None:
    assert normalize_urgency(raw) == urgency


def test_urgency_levels_are_ordered_most_urgent_last() -> None:
    assert URGENCY_LEVELS == ["low", "medium", "high", "critical"]


def test_label_map_shows_the_most_frequent_original_spelling() -> None:
    labels = LabelMap.from_pairs(
        [
            ("hr_support", "HR Support"),
            ("hr_support", "HR  Support"),  # the same spelling once spaces are tidied
            ("hr_support", "hr support"),
            ("administrative_rights", "Administrative rights"),
            ("hardware", None),
            ("hardware", "Printer"),  # a spelling of another key is never shown for this one
        ]
    )
    assert labels.name("hr_support") == "HR Support"
    assert labels.name("administrative_rights") == "Administrative rights"
    assert labels.name("hardware") == "hardware"
    assert labels.name("never_seen") == "never_seen"
    assert labels.key("Administrative  Rights") == "administrative_rights"
    assert display_label("  HR \t Support ") == "HR Support"


def test_match_labels_reports_what_the_model_cannot_map() -> None:
    match = match_labels(["Hardware", "HR Support", "Payroll", "payroll", None], ["hardware", "hr_support"])
    assert match.keys == ["hardware", "hr_support", "payroll", "payroll", None]
    assert match.matched_rows == 2
    assert match.unmapped == {"Payroll": 1, "payroll": 1}
