"""The drift reference: tickets the champion never trained on, in its training data's label mix.

A model registered since the label contract carries ``holdout_ticket_ids`` (the rows it was scored
on, never fitted on) and ``train_topic_counts`` in its metadata. The reference is drawn from those
rows of the current training mart, per topic in proportion to the training counts, so in-domain
traffic (which follows the training mix) is compared with the same mix. Older models fall back to
their data-version tags (the latest ``test_rows`` tickets up to ``max_event_at``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl


def drift_reference(
    training_set: pl.DataFrame,
    model_metadata: dict[str, Any],
    version_tags: dict[str, str],
    size: int,
    seed: int = 0,
) -> pl.DataFrame:
    """At most ``size`` rows of ``training_set`` the champion held out (see the module doc)."""
    ids = model_metadata.get("holdout_ticket_ids")
    if ids:
        holdout = training_set.filter(pl.col("ticket_id").is_in(list(ids)))
    else:
        holdout = holdout_from_tags(training_set, version_tags)
    counts = model_metadata.get("train_topic_counts") or {}
    return sample_in_mix(holdout, counts, size, seed)


def sample_in_mix(frame: pl.DataFrame, mix: dict[str, int], size: int, seed: int = 0) -> pl.DataFrame:
    """``size`` rows with topic shares as in ``mix`` as far as the rows allow (uniform without a mix)."""
    if frame.height <= size and not mix:
        return frame
    if not mix:
        return frame.sample(size, seed=seed)
    total = sum(mix.values())
    parts = []
    for topic, rows in frame.group_by("topic", maintain_order=True):
        quota = round(size * mix.get(topic[0], 0) / total)
        if quota:
            parts.append(rows.sample(min(quota, rows.height), seed=seed))
    return pl.concat(parts) if parts else frame.head(0)


def holdout_from_tags(training_set: pl.DataFrame, version_tags: dict[str, str]) -> pl.DataFrame:
    """A model without holdout ids: the latest ``test_rows`` tickets it had seen (event_at up to its
    ``max_event_at``). The mart's current test split would not do: once feedback from drifted traffic
    lands in the mart, it would compare production with itself."""
    max_event_at = version_tags.get("data.max_event_at")
    test_rows = int(version_tags.get("data.test_rows") or 0)
    seen = training_set
    if max_event_at:
        # Compare instants (epoch), not zone names: the database says Etc/UTC, the tag says +00:00.
        cutoff_us = int(datetime.fromisoformat(max_event_at).timestamp() * 1_000_000)
        seen = training_set.filter(pl.col("event_at").dt.epoch("us") <= cutoff_us)
    if test_rows <= 0:
        return seen.filter(pl.col("split") == "test")
    return seen.sort("event_at").tail(test_rows)
