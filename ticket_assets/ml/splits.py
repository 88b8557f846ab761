"""Train/test splits in Python, the same rules as dbt's marts.training_set.

``stratified_hash_split`` is the mart's 'hash' rule: within each label, rows ordered by
md5(ticket_id); the first round(n * test_fraction) are 'test'. Deterministic (the same ids give
the same split on any machine), stratified (the holdout has the data's label mix) and a label
with two examples keeps both for training. ``time_split_usable`` is the mart's test for dates
that can order a holdout: one created_at value holding most rows means an export stamped every
row with one time, and a 'time' split would hold out arbitrary ticket ids.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

TEST_FRACTION = 0.2  # dbt var test_fraction
DEGENERATE_TIME_SHARE = 0.5  # dbt var degenerate_time_share


def n_test(n: int, test_fraction: float = TEST_FRACTION) -> int:
    """round(n * fraction), half away from zero like Postgres' round(numeric)."""
    return int((Decimal(n) * Decimal(str(test_fraction))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def stratified_hash_split(
    ticket_ids: Sequence[str], labels: Sequence[Any], test_fraction: float = TEST_FRACTION
) -> list[str]:
    """'train' or 'test' per row (rows with a null label are 'train')."""
    by_label: dict[Any, list[tuple[str, str, int]]] = {}
    for row, (ticket_id, label) in enumerate(zip(ticket_ids, labels, strict=True)):
        if label is not None:
            digest = hashlib.md5(ticket_id.encode("utf-8")).hexdigest()
            by_label.setdefault(label, []).append((digest, ticket_id, row))
    split = ["train"] * len(ticket_ids)
    for rows in by_label.values():
        for _, _, row in sorted(rows)[: n_test(len(rows), test_fraction)]:
            split[row] = "test"
    return split


def time_split_usable(created_at: Sequence[Any], share: float = DEGENERATE_TIME_SHARE) -> bool:
    """Whether the non-null timestamps can order a holdout (no single value holds > ``share``)."""
    counts = Counter(value for value in created_at if value is not None)
    if not counts:
        return False
    return max(counts.values()) <= share * sum(counts.values())
