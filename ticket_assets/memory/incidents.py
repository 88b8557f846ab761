"""Major-incident detection: bursts of mutually similar tickets well above their baseline rate.

Over the latest window (default one hour) the tickets are grouped greedily around the ticket with
the most close neighbours (cosine >= ``similarity``); a group is an incident when it has at least
``min_size`` tickets *and* is ``rate_factor`` times larger than the baseline predicts: how many
tickets that similar to the group's centre arrived per window over the previous ``baseline_days``.
So a routine topic that is always busy never raises one, and forty "VPN down" tickets in twenty
minutes always do. A group whose centre matches a still-active incident extends it instead of
opening a new one, so an outage that lasts several windows is one incident.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

SIMILARITY = 0.7
MIN_SIZE = 10
RATE_FACTOR = 4.0
_WORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+#-]{2,}")
_STOP = frozenset(
    "the and for with that this from have has not are was were but you your our can cannot since any all "
    "about into will would there their they them its it's just also been when what which who how why hello "
    "thanks thank please regards best dear team anymore every time".split()
)


@dataclass(frozen=True)
class WindowItem:
    """A ticket (or logged prediction) in the detection window."""

    item_id: str  # ticket id, or "prediction:<request_id>"
    created_at: datetime
    text: str
    department: str | None = None
    channel: str | None = None


@dataclass
class Incident:
    incident_id: str
    first_seen: datetime
    last_seen: datetime
    size: int
    baseline_per_window: float
    top_terms: list[str]
    examples: list[dict]
    departments: dict[str, int]
    channels: dict[str, int]
    centroid: np.ndarray
    members: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "size": self.size,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "baseline_per_window": round(self.baseline_per_window, 3),
            "top_terms": self.top_terms,
            "examples": self.examples,
            "departments": self.departments,
            "channels": self.channels,
        }


def top_terms(texts: Sequence[str], background: Sequence[str], k: int = 6) -> list[str]:
    """Words frequent in the group and rarer in the background (smoothed frequency ratio)."""
    group = Counter(w for t in texts for w in {w.lower() for w in _WORD.findall(t)} - _STOP)
    back = Counter(w for t in background for w in {w.lower() for w in _WORD.findall(t)} - _STOP)
    n_group, n_back = max(len(texts), 1), max(len(background), 1)
    scored = {
        w: (c / n_group) * np.log((c / n_group + 0.01) / (back.get(w, 0) / n_back + 0.01))
        for w, c in group.items()
        if c >= 2
    }
    return [w for w, _ in sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def greedy_groups(vectors: np.ndarray, similarity: float, min_size: int) -> list[np.ndarray]:
    """Greedy: the item with most neighbours and its unassigned neighbours form a group; repeat."""
    close = (vectors @ vectors.T) >= similarity
    free = np.ones(len(vectors), dtype=bool)
    groups = []
    while free.any():
        counts = (close & free[None, :]).sum(axis=1) * free
        centre = int(np.argmax(counts))
        if counts[centre] < min_size:
            break
        members = np.flatnonzero(close[centre] & free)
        groups.append(members)
        free[members] = False
    return groups


def incident_id(first_seen: datetime, first_member: str) -> str:
    digest = hashlib.sha256(first_member.encode("utf-8")).hexdigest()[:6]
    return f"inc-{first_seen:%Y%m%d-%H%M}-{digest}"


def detect_incidents(
    items: Sequence[WindowItem],
    vectors: np.ndarray,
    baseline_vectors: np.ndarray,
    baseline_span: timedelta,
    window: timedelta,
    baseline_texts: Sequence[str] = (),
    *,
    similarity: float = SIMILARITY,
    min_size: int = MIN_SIZE,
    rate_factor: float = RATE_FACTOR,
) -> list[Incident]:
    """Incidents among ``items`` (all inside one window of length ``window``); ``vectors`` are their
    unit embeddings and ``baseline_vectors`` those of the tickets in the ``baseline_span`` before."""
    if len(items) < min_size:
        return []
    vectors = np.asarray(vectors, dtype=np.float32)
    windows_in_baseline = max(baseline_span / window, 1.0)
    incidents = []
    for members in greedy_groups(vectors, similarity, min_size):
        centroid = vectors[members].mean(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        matched = int((baseline_vectors @ centroid >= similarity).sum()) if len(baseline_vectors) else 0
        expected = matched / windows_in_baseline
        if len(members) < rate_factor * max(expected, 1.0):
            continue
        group = sorted((items[i] for i in members), key=lambda it: it.created_at)
        centre_sims = vectors[members] @ centroid
        typical = [items[i] for i in members[np.argsort(-centre_sims)][:3]]
        incidents.append(
            Incident(
                incident_id=incident_id(group[0].created_at, group[0].item_id),
                first_seen=group[0].created_at,
                last_seen=group[-1].created_at,
                size=len(group),
                baseline_per_window=expected,
                top_terms=top_terms([it.text for it in group], baseline_texts),
                examples=[{"id": it.item_id, "text": it.text[:200]} for it in typical],
                departments=dict(Counter(it.department or "unknown" for it in group).most_common()),
                channels=dict(Counter(it.channel or "unknown" for it in group).most_common()),
                centroid=centroid,
                members=[it.item_id for it in group],
            )
        )
    return incidents


@dataclass(frozen=True)
class KnownIncident:
    incident_id: str
    last_seen: datetime
    centroid: np.ndarray


def assign_known(
    found: Sequence[Incident], known: Sequence[KnownIncident], similarity: float = SIMILARITY
) -> list[tuple[Incident, str | None]]:
    """Pair each found incident with the active known one it continues (same centre), if any."""
    out = []
    for incident in found:
        best, best_sim = None, similarity
        for other in known:
            sim = float(incident.centroid @ other.centroid)
            if sim >= best_sim:
                best, best_sim = other.incident_id, sim
        out.append((incident, best))
    return out


# Storage (ops.incidents, ops.predictions.incident_id) ------------------------------------------------

_MODEL_TEXT = "concat_ws('. ', nullif(btrim(title), ''), nullif(btrim(body), ''))"


def window_items(conn: psycopg.Connection, start: datetime, end: datetime) -> list[WindowItem]:
    """Raw tickets created in [start, end), plus logged predictions of texts not among them."""
    tickets = conn.execute(
        f"select ticket_id, created_at, {_MODEL_TEXT}, department, channel from raw.tickets"
        " where created_at >= %s and created_at < %s order by created_at, ticket_id",
        (start, end),
    ).fetchall()
    items = [WindowItem(r[0], r[1], r[2] or "", r[3], r[4]) for r in tickets]
    seen = {item.text for item in items}
    predictions = conn.execute(
        "select request_id::text, created_at, text, channel from ops.predictions"
        " where created_at >= %s and created_at < %s and text is not null order by created_at",
        (start, end),
    ).fetchall()
    items += [
        WindowItem(f"prediction:{r[0]}", r[1], r[2], None, r[3]) for r in predictions if r[2] not in seen
    ]
    return items


def baseline(
    conn: psycopg.Connection, model_id: str, start: datetime, end: datetime, max_texts: int = 5000
) -> tuple[np.ndarray, list[str]]:
    """Stored embeddings of the tickets created in [start, end), and a sample of their texts."""
    with conn.cursor(binary=True) as cur:
        cur.execute(
            f"select e.embedding, {_MODEL_TEXT} from raw.tickets t join features.ticket_embeddings e"
            " on e.text_hash = t.text_hash and e.model_id = %s where t.created_at >= %s and t.created_at < %s",
            (model_id, start, end),
        )
        rows = cur.fetchall()
    if not rows:
        return np.zeros((0, 0), dtype=np.float32), []
    matrix = np.frombuffer(b"".join(r[0] for r in rows), dtype="<f4").reshape(len(rows), -1)
    return matrix.astype(np.float32), [r[1] for r in rows[:max_texts]]


def known_incidents(conn: psycopg.Connection, model_id: str, since: datetime) -> list[KnownIncident]:
    rows = conn.execute(
        "select incident_id, last_seen, centroid from ops.incidents where last_seen >= %s and model_id = %s",
        (since, model_id),
    ).fetchall()
    return [KnownIncident(r[0], r[1], np.frombuffer(r[2], dtype="<f4")) for r in rows]


def store_incidents(
    conn: psycopg.Connection,
    pairs: Sequence[tuple[Incident, str | None]],
    model_id: str,
    run_id: str | None,
) -> list[str]:
    """Insert new incidents, extend continued ones, tag their predictions; returns the incident ids."""
    ids = []
    with conn.transaction():
        for incident, known in pairs:
            target = known or incident.incident_id
            conn.execute(
                "insert into ops.incidents (incident_id, first_seen, last_seen, size, baseline_per_window,"
                " top_terms, summary, centroid, model_id, run_id)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " on conflict (incident_id) do update set"
                " last_seen = greatest(ops.incidents.last_seen, excluded.last_seen),"
                " size = greatest(ops.incidents.size, excluded.size), summary = excluded.summary,"
                " top_terms = excluded.top_terms, updated_at = now()",
                (
                    target,
                    incident.first_seen,
                    incident.last_seen,
                    incident.size,
                    incident.baseline_per_window,
                    incident.top_terms,
                    Jsonb(incident.summary()),
                    np.ascontiguousarray(incident.centroid, dtype="<f4").tobytes(),
                    model_id,
                    run_id,
                ),
            )
            predictions = [
                m.removeprefix("prediction:") for m in incident.members if m.startswith("prediction:")
            ]
            if predictions:
                conn.execute(
                    "update ops.predictions set incident_id = %s where request_id = any(%s::uuid[])",
                    (target, predictions),
                )
            ids.append(target)
    return ids
