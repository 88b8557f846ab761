"""Which KB topic each ticket label prefers, learned from the data.

A label's tickets are embedded anyway for training; each one's nearest KB chunk (cosine) votes for
that chunk's topic. A label prefers the topic most of its votes go to when that topic holds at
least ``min_share`` of them and is ``min_lift`` times more frequent among them than among all
tickets' votes (a topic every label drifts towards, such as a generic outage article, says nothing
about this one). Any other label is explicitly unmapped (None: no preference, since a wrong
preference hides the right article). On the public IT-service dataset 'HR Support' -> hr_onboarding
and 'Purchase' -> purchase are learned; 'Administrative rights' or 'Miscellaneous' stay unmapped. Every model label ends up in the map one way or the other,
whatever the export calls its categories ('HR Support', 'Administrative rights', an assignment
group ...). The map is stored with the model (``metadata['kb_topic_map']``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_SHARE = 0.4  # a large share of a label's tickets must land in one KB topic...
MIN_LIFT = 2.0  # ...and clearly more often than other labels' tickets do
MAX_TICKETS_PER_LABEL = 300  # enough votes for a stable majority; keeps the scan cheap


@dataclass(frozen=True)
class TopicPreference:
    kb_topic: str | None
    share: float  # share of the label's tickets whose nearest chunk has kb_topic (or the top topic)
    tickets: int


def learn_kb_topic_map(
    labels: Sequence[str],
    ticket_vectors: np.ndarray,
    chunk_vectors: np.ndarray,
    chunk_topics: Sequence[str | None],
    min_share: float = MIN_SHARE,
    min_lift: float = MIN_LIFT,
    seed: int = 0,
) -> dict[str, TopicPreference]:
    """label -> its preferred KB topic (or None) from L2-normalised ticket and chunk vectors."""
    if len(labels) != ticket_vectors.shape[0]:
        raise ValueError(f"{len(labels)} labels for {ticket_vectors.shape[0]} ticket vectors")
    labels_array = np.asarray(labels, dtype=object)
    topics = np.asarray(chunk_topics, dtype=object)
    rng = np.random.default_rng(seed)
    sampled: dict[str, np.ndarray] = {}
    for label in sorted(set(labels_array.tolist())):
        rows = np.flatnonzero(labels_array == label)
        if len(rows) > MAX_TICKETS_PER_LABEL:
            rows = np.sort(rng.choice(rows, MAX_TICKETS_PER_LABEL, replace=False))
        sampled[label] = rows
    if len(chunk_vectors) == 0:
        return {label: TopicPreference(None, 0.0, len(rows)) for label, rows in sampled.items()}
    rows_all = np.concatenate(list(sampled.values()))
    nearest = dict(
        zip(
            rows_all.tolist(),
            topics[(ticket_vectors[rows_all] @ chunk_vectors.T).argmax(axis=1)],
            strict=True,
        )
    )
    overall = Counter(topic for topic in nearest.values() if topic)
    n_all = len(rows_all)
    result: dict[str, TopicPreference] = {}
    for label, rows in sampled.items():
        votes = Counter(nearest[row] for row in rows.tolist() if nearest[row])
        if not votes:
            result[label] = TopicPreference(None, 0.0, len(rows))
            continue
        top, count = min(votes.items(), key=lambda item: (-item[1], item[0]))
        share = count / len(rows)
        lift = share / (overall[top] / n_all)
        preferred = top if share >= min_share and lift >= min_lift else None
        result[label] = TopicPreference(preferred, round(share, 4), len(rows))
    return result


def unmapped_labels(model_labels: Sequence[str], topic_map: Mapping[str, str | None]) -> list[str]:
    """Model labels the map says nothing about (neither a KB topic nor an explicit None)."""
    return [label for label in model_labels if label not in topic_map]
