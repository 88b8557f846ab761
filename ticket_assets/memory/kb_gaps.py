"""Knowledge-base gaps: groups of tickets the knowledge base does not answer well.

A ticket is *unserved* when its best KB passage is weak (cosine below ``weak_score``) or an agent
marked the draft built for it unhelpful. Unserved tickets are grouped by meaning (the same greedy
grouping as incident detection, at a looser similarity); each group is a gap with its size, trend
(share of its tickets in the later half of the period), example tickets and suggested title terms
(words frequent in the gap and rare elsewhere). Ranked by *shortfall*, the summed distance of its
tickets' best passages below ``weak_score`` (an unhelpful draft counts as a full miss): a large
group the KB answers badly before a tight group it nearly answers. The articles to write next.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import psycopg
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from psycopg.types.json import Jsonb

from ticket_assets.memory.incidents import SIMILARITY, KnownIncident, greedy_groups, top_terms

WEAK_SCORE = 0.45  # relevant passages score ~0.45-0.75 (see rag/index.py); below: the KB has no answer
GAP_SIMILARITY = 0.5
MIN_GAP_SIZE = 5


@dataclass(frozen=True)
class GapTicket:
    ticket_id: str
    created_at: datetime | None
    text: str
    best_kb_score: float
    unhelpful: bool = False


@dataclass(frozen=True)
class Gap:
    size: int
    trend: float  # share of the gap's tickets in the later half of the period (0.5 = flat)
    mean_kb_score: float
    shortfall: float
    title_terms: list[str]
    examples: list[dict]
    unhelpful_drafts: int
    centroid: np.ndarray | None = field(default=None, repr=False, compare=False)
    incident_ids: tuple[str, ...] = ()  # major incidents this gap's tickets belong to


def find_gaps(
    tickets: Sequence[GapTicket],
    vectors: np.ndarray,
    *,
    weak_score: float = WEAK_SCORE,
    similarity: float = GAP_SIMILARITY,
    min_size: int = MIN_GAP_SIZE,
) -> list[Gap]:
    unserved = np.array([t.best_kb_score < weak_score or t.unhelpful for t in tickets], dtype=bool)
    idx = np.flatnonzero(unserved)
    if len(idx) < min_size:
        return []
    stamps = [t.created_at.timestamp() for t in tickets if t.created_at is not None]
    midpoint = (min(stamps) + max(stamps)) / 2 if stamps else None
    served_texts = [t.text for t, u in zip(tickets, unserved, strict=True) if not u]
    gaps = []
    unit = np.asarray(vectors, dtype=np.float32)
    for members in greedy_groups(unit[idx], similarity, min_size):
        group = [tickets[i] for i in idx[members]]
        centroid = unit[idx[members]].mean(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        later = [t for t in group if t.created_at is not None and midpoint is not None]
        trend = sum(t.created_at.timestamp() > midpoint for t in later) / len(later) if later else 0.5
        weakest = sorted(group, key=lambda t: t.best_kb_score)[:3]
        gaps.append(
            Gap(
                size=len(group),
                trend=round(trend, 3),
                mean_kb_score=round(float(np.mean([t.best_kb_score for t in group])), 3),
                shortfall=round(
                    sum(weak_score if t.unhelpful else max(weak_score - t.best_kb_score, 0.0) for t in group),
                    3,
                ),
                title_terms=top_terms([t.text for t in group], served_texts, k=5),
                examples=[
                    {"id": t.ticket_id, "kb_score": round(t.best_kb_score, 3), "text": t.text[:160]}
                    for t in weakest
                ],
                unhelpful_drafts=sum(t.unhelpful for t in group),
                centroid=centroid,
            )
        )
    return sorted(gaps, key=lambda g: (-g.shortfall, -g.size))


def link_incidents(
    gaps: Sequence[Gap], incidents: Sequence[KnownIncident], similarity: float = SIMILARITY
) -> list[Gap]:
    """Each gap with the incidents whose centre is as close to its own as incident members are:
    a burst of outage reports finds no article, but the fix is the outage, not a new article."""
    linked = []
    for gap in gaps:
        ids = tuple(
            i.incident_id
            for i in incidents
            if gap.centroid is not None and len(i.centroid) == len(gap.centroid)
            and float(gap.centroid @ i.centroid) >= similarity
        )  # fmt: skip
        linked.append(replace(gap, incident_ids=ids))
    return linked


def store_gaps(conn: psycopg.Connection, gaps: Sequence[Gap], run_id: str | None) -> int:
    """Replace ``ops.kb_gaps`` with this run's gaps, ranked (what the API and the console read)."""
    with conn.transaction():
        conn.execute("delete from ops.kb_gaps")
        for rank, g in enumerate(gaps, start=1):
            conn.execute(
                "insert into ops.kb_gaps (rank, run_id, size, trend, mean_kb_score, shortfall, title_terms,"
                " examples, unhelpful_drafts, incident_ids) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    rank, run_id, g.size, g.trend, g.mean_kb_score, g.shortfall, g.title_terms,
                    Jsonb(g.examples), g.unhelpful_drafts, list(g.incident_ids),
                ),
            )  # fmt: skip
    return len(gaps)


def render_gaps_png(gaps: Sequence[Gap], top: int = 10, dpi: int = 100) -> bytes:
    """Horizontal bars: shortfall per gap, labelled with its suggested title terms and size."""
    figure = Figure(figsize=(9, 0.5 * max(min(len(gaps), top), 1) + 1.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    shown = list(gaps[:top])[::-1]
    labels = [f"{', '.join(g.title_terms[:3]) or '?'} ({g.size})" for g in shown]
    ax.barh(labels, [g.shortfall for g in shown], color="tab:orange")
    ax.set_xlabel("shortfall: summed distance of the best passage below the weak-score line")
    ax.set_title("Knowledge-base gaps (largest first)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
