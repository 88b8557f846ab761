"""Background writer for ``ops.predictions``: requests enqueue rows, one task batches the inserts.

Why a writer instead of inserting in the handler: an insert per request would add a database round
trip to every response and make the API fail whenever Postgres blips. Here a request only appends
to an in-memory buffer; the writer inserts in batches off the request path, keeps rows across
database errors (retrying with backoff) and flushes everything on shutdown. The buffer is bounded:
when it is full the oldest rows are dropped and counted, so an outage cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One triaged ticket; field order is the column order of ``ops.predictions``."""

    request_id: UUID
    call_request_id: UUID
    created_at: datetime
    endpoint: str
    text: str | None  # None when the deployment redacts ticket text
    text_sha256: str
    text_chars: int
    channel: str | None
    topic: str
    topic_confidence: float
    urgency: str | None
    urgency_confidence: float | None
    probabilities: dict[str, Any]
    low_confidence: bool
    model_name: str
    model_version: str
    answer_mode: str | None
    kb_version: str | None
    latency_ms: float


COLUMNS = tuple(field.name for field in fields(PredictionRow))
INSERT_SQL = (
    f"insert into ops.predictions ({', '.join(COLUMNS)}) "
    f"values ({', '.join(['%s'] * len(COLUMNS))}) "
    # A batch whose commit succeeded but whose acknowledgement was lost is retried: skip duplicates.
    "on conflict (request_id) do nothing"
)


def text_fields(text: str, redact: bool) -> tuple[str | None, str, int]:
    """(stored text, sha256, length): redaction keeps only the hash and the length."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return (None if redact else text), digest, len(text)


def _as_params(row: PredictionRow) -> tuple[Any, ...]:
    values = list(astuple(row))
    values[COLUMNS.index("probabilities")] = Jsonb(row.probabilities)
    return tuple(values)


class PredictionLogWriter:
    """Bounded, batching, retrying writer. Every public method runs on the event loop thread."""

    def __init__(
        self,
        database_url: str,
        *,
        buffer_max: int = 50_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        max_backoff_s: float = 5.0,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self._url = database_url
        self._buffer_max = buffer_max
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_backoff_s = max_backoff_s
        self._on_written = on_written or (lambda n: None)
        self._on_dropped = on_dropped or (lambda n: None)
        self._buffer: deque[PredictionRow] = deque()
        self._in_flight: list[PredictionRow] = []
        self._pending_ids: set[UUID] = set()
        self._conn: psycopg.AsyncConnection | None = None
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.written_total = 0
        self.dropped_total = 0
        self.failed_writes = 0
        self.last_error: str | None = None

    # Request side -----------------------------------------------------------------------------
    def enqueue(self, rows: Iterable[PredictionRow]) -> None:
        for row in rows:
            self._buffer.append(row)
            self._pending_ids.add(row.request_id)
        self._drop_overflow()
        if len(self._buffer) >= self._batch_size:
            self._wakeup.set()

    @property
    def queue_size(self) -> int:
        return len(self._buffer) + len(self._in_flight)

    def is_pending(self, request_id: UUID) -> bool:
        return request_id in self._pending_ids

    async def wait_written(self, request_id: UUID, timeout_s: float) -> bool:
        """Wait until a buffered row is in the database (used before feedback references it)."""
        deadline = time.monotonic() + timeout_s
        while self.is_pending(request_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            progress = self._progress
            self._wakeup.set()
            try:
                await asyncio.wait_for(progress.wait(), timeout=remaining)
            except TimeoutError:
                return not self.is_pending(request_id)
        return True

    # Lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="prediction-log-writer")

    async def stop(self, timeout_s: float = 15.0) -> int:
        """Flush what is buffered (retrying within the timeout) and close; returns rows left unwritten."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=timeout_s)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close()
        lost = self.queue_size
        if lost:
            log.error("prediction log: %d rows could not be written before shutdown", lost)
        return lost

    # Writer side ------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self._buffer:
                if self._stopping:
                    return
                await self._sleep(self._flush_interval_s)
                continue
            if await self._write_next_batch():
                backoff = 0.1
                continue
            await self._sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    async def _sleep(self, seconds: float) -> None:
        """Sleep until the interval passes or someone asks for an early write (batch full, flush, stop)."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wakeup.clear()

    async def _write_next_batch(self) -> bool:
        batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
        self._in_flight = batch
        try:
            await self._insert(batch)
        except Exception as exc:  # any database failure: keep the rows, reconnect, retry later
            self._in_flight = []
            self._buffer.extendleft(reversed(batch))
            self._drop_overflow()
            self.failed_writes += 1
            self.last_error = f"{type(exc).__name__}: {exc}".strip()
            log.warning(
                "prediction log: write of %d rows failed (%s); will retry", len(batch), self.last_error
            )
            await self._close()
            self._notify_progress()
            return False
        self._in_flight = []
        self._pending_ids.difference_update(row.request_id for row in batch)
        self.written_total += len(batch)
        self.last_error = None
        self._on_written(len(batch))
        self._notify_progress()
        return True

    async def _insert(self, batch: list[PredictionRow]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, connect_timeout=3, options="-c statement_timeout=15000"
            )
        async with self._conn.transaction():
            async with self._conn.cursor() as cur:
                await cur.executemany(INSERT_SQL, [_as_params(row) for row in batch])

    async def _close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:  # already broken: nothing to release
                pass
            self._conn = None

    def _drop_overflow(self) -> None:
        overflow = self.queue_size - self._buffer_max
        dropped = 0
        while overflow > 0 and self._buffer:
            self._pending_ids.discard(self._buffer.popleft().request_id)
            overflow -= 1
            dropped += 1
        if dropped:
            self.dropped_total += dropped
            self._on_dropped(dropped)
            log.warning("prediction log buffer full: dropped %d oldest rows", dropped)

    def _notify_progress(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()
