"""Similar past tickets and duplicates for the triage and answer routes, from the ticket index."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import numpy as np

from serving.model_store import KnowledgeBaseStore
from serving.schemas import SimilarTicketOut, TicketTriage
from ticket_assets.memory.ticket_index import SimilarTicket, TicketIndex, duplicate_of
from ticket_assets.settings import Settings


class TicketIndexStore(KnowledgeBaseStore):
    """The published ticket index, hot-reloaded by the same poller as the KB (same refresh rules)."""

    label = "ticket"

    def __init__(self, settings: Settings, *, server: Any | None = None, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._server = server  # a QdrantClient overriding QDRANT_URL's (tests stand one in)

    def _open(self) -> Any:
        # The server alias when QDRANT_URL is set, as for the knowledge base.
        return TicketIndex.published(self._settings, server=self._server)


def _out(hit: SimilarTicket) -> SimilarTicketOut:
    return SimilarTicketOut(
        ticket_id=hit.ticket_id,
        similarity=round(hit.similarity, 4),
        topic=hit.topic,
        urgency=hit.urgency,
        created=hit.created,
        channel=hit.channel,
        department=hit.department,
        status=hit.status,
        resolution=hit.resolution,
    )


def attach_similar(
    index: TicketIndex | None,
    settings: Settings,
    triages: Sequence[TicketTriage],
    vectors: np.ndarray,
    embedder_id: str,
) -> None:
    """Fill ``similar`` and ``duplicate_of`` on each triage (runs in a worker thread: HNSW search).

    Skipped when the index was built with another embedding model: its similarities would be noise.
    """
    if index is None or not settings.similar_enabled or settings.similar_top_k == 0:
        return
    if index.model_id != embedder_id:
        return
    now = time.time()
    window_s = settings.duplicate_window_h * 3600
    for triage, vector in zip(triages, vectors, strict=True):
        hits = index.search(vector, k=settings.similar_top_k)
        triage.similar = [_out(h) for h in hits]
        duplicate = duplicate_of(hits, settings.duplicate_threshold, now, window_s)
        triage.duplicate_of = None if duplicate is None else _out(duplicate)


def current_tickets(state: Any) -> TicketIndex | None:
    """The loaded ticket index of the serving state, or None (not built yet, or turned off)."""
    store = getattr(state, "tickets", None)
    if store is None or not state.settings.similar_enabled:
        return None
    return store.current


async def add_similar(state: Any, triages: Sequence[TicketTriage], vectors: np.ndarray, timings: Any) -> None:
    """``attach_similar`` off the event loop; no thread hop (and no timing) when there is no index."""
    index = current_tickets(state)
    if index is None:
        return
    t0 = time.perf_counter()
    await anyio.to_thread.run_sync(attach_similar, index, state.settings, triages, vectors, state.embedder_id)
    timings.since("similar", t0)
