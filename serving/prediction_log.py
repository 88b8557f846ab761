"""Background writer for ``ops.predictions`` and queued ``ops.feedback``: one task batches the inserts.

Why a writer instead of inserting in the handler: an insert per request would add a database round
trip to every response and make the API fail whenever Postgres blips. Here a request appends to an
in-memory buffer (after the spool made the rows durable, see ``serving/spool.py``); the writer
inserts in batches off the request path and flushes on shutdown.

Failures are told apart. A lost connection keeps the batch and retries with exponential backoff and
jitter (requests asking for an early write do not shorten it: no busy loop against a dead server).
A row the database refuses (a data error) must not block the rows behind it: the batch is bisected
under savepoints until the offending rows are isolated, those go to a dead-letter table with the
error (``ops.predictions_rejected`` / ``ops.feedback_rejected``) and the rest is written. The buffer
is bounded: when full the oldest rows leave memory and are counted; with the spool on they stay on
disk and are replayed at the next start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from serving.spool import Spool

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
    # Trust signals as served (defaults: rows spooled before they were logged replay as nulls).
    needs_review: bool | None = None
    out_of_scope: bool | None = None
    out_of_scope_score: float | None = None
    escalated: bool | None = None
    escalation_rule: str | None = None
    served_urgency: str | None = None  # after the escalation rules; ``urgency`` is the model's
    topic_tier: str | None = None
    urgency_tier: str | None = None
    routing: dict[str, Any] | None = None  # {target: {label, confidence, tier}}


COLUMNS = tuple(field.name for field in fields(PredictionRow))
INSERT_SQL = (
    f"insert into ops.predictions ({', '.join(COLUMNS)}) "
    f"values ({', '.join(['%s'] * len(COLUMNS))}) "
    # A batch whose commit succeeded but whose acknowledgement was lost is retried: skip duplicates.
    "on conflict (request_id) do nothing"
)


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """Feedback accepted while its prediction (or the database) was not reachable yet."""

    request_id: UUID
    true_topic: str | None
    true_urgency: str | None
    draft_helpful: bool | None
    comment: str | None
    true_labels: str | None = None  # JSON object {routing target: label}


# Feedback upsert keyed by request_id, used by the route and the writer. Fields left out of a later
# submission keep their earlier value (the true topic now, `draft_helpful` later). The `where exists`
# makes an unknown request id return no row (404 / dead letter) instead of a foreign-key error.
FEEDBACK_UPSERT_SQL = """
insert into ops.feedback as f (request_id, true_topic, true_urgency, true_labels, draft_helpful, comment)
select %(request_id)s, %(true_topic)s, %(true_urgency)s, cast(%(true_labels)s as jsonb), %(draft_helpful)s,
    %(comment)s
where exists (select 1 from ops.predictions where request_id = %(request_id)s)
on conflict (request_id) do update set
    true_topic    = coalesce(excluded.true_topic, f.true_topic),
    true_urgency  = coalesce(excluded.true_urgency, f.true_urgency),
    -- Per target: a later correction of one target keeps the others.
    true_labels   = case when excluded.true_labels is null then f.true_labels
                         else coalesce(f.true_labels, '{}'::jsonb) || excluded.true_labels end,
    draft_helpful = coalesce(excluded.draft_helpful, f.draft_helpful),
    comment       = coalesce(excluded.comment, f.comment),
    updated_at    = now()
returning created_at, updated_at, updated_at > created_at as updated
"""

LogRow = PredictionRow | FeedbackRow
_FIELDS = {kind: tuple(f.name for f in fields(kind)) for kind in (PredictionRow, FeedbackRow)}

# Errors that a given row causes whatever the server's state: retrying the row cannot succeed.
DATA_ERRORS: tuple[type[BaseException], ...] = (psycopg.DataError, psycopg.IntegrityError, ValueError)
UNKNOWN_PREDICTION = "no prediction with this request_id"


def to_record(row: LogRow) -> dict[str, Any]:
    """The spool's JSON form of a row (UUIDs and timestamps as strings).

    Built field by field: ``asdict`` deep-copies and a JSON round trip re-parses, together a tenth
    of the event loop's time per request. Nested values (the probabilities) are shared, not
    copied: rows are frozen and the spool serialises the record at once.
    """
    kind = "prediction" if isinstance(row, PredictionRow) else "feedback"
    return {"kind": kind, "row": {name: _plain(getattr(row, name)) for name in _FIELDS[type(row)]}}


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, UUID | datetime) else value


def from_record(record: dict[str, Any]) -> LogRow:
    values = dict(record["row"])
    values["request_id"] = UUID(values["request_id"])
    if record["kind"] == "feedback":
        return FeedbackRow(**values)
    values["call_request_id"] = UUID(values["call_request_id"])
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    return PredictionRow(**values)


def text_fields(text: str, redact: bool) -> tuple[str | None, str, int]:
    """(stored text, sha256, length): redaction keeps only the hash and the length."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return (None if redact else text), digest, len(text)


def _as_params(row: PredictionRow) -> tuple[Any, ...]:
    # Shallow: ``astuple`` deep-copies the probabilities, 13 % of the event loop's time at 32 clients.
    return tuple(_param(name, getattr(row, name)) for name in COLUMNS)


_JSON_COLUMNS = frozenset({"probabilities", "routing"})


def _param(name: str, value: Any) -> Any:
    return Jsonb(value) if name in _JSON_COLUMNS and value is not None else value


@dataclass(slots=True)
class _Entry:
    row: LogRow
    segment: int | None = None  # spool segment holding the row, released once it is in Postgres


class PredictionLogWriter:
    """Bounded, batching, retrying, poison-isolating writer. Public methods run on the event loop."""

    def __init__(
        self,
        database_url: str,
        *,
        buffer_max: int = 50_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        spool: Spool | None = None,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        on_rejected: Callable[[str, int], None] | None = None,
        on_database: Callable[[bool], None] | None = None,
    ) -> None:
        self._url = database_url
        self._buffer_max = buffer_max
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._spool = spool
        self._on_written = on_written or (lambda n: None)
        self._on_dropped = on_dropped or (lambda n: None)
        self._on_rejected = on_rejected or (lambda kind, n: None)
        self._on_database = on_database or (lambda up: None)
        self._buffer: deque[_Entry] = deque()
        self._in_flight: list[_Entry] = []
        self._pending: dict[UUID, _Entry] = {}  # predictions not in the database yet
        self._conn: psycopg.AsyncConnection | None = None
        self._wakeup = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._progress = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.written_total = 0
        self.dropped_total = 0
        self.rejected_total = 0
        self.failed_writes = 0
        self.database_up: bool | None = None
        self.last_error: str | None = None

    # Request side -----------------------------------------------------------------------------
    def enqueue(self, rows: Iterable[LogRow], segment: int | None = None) -> None:
        for row in rows:
            entry = _Entry(row, segment)
            self._buffer.append(entry)
            if isinstance(row, PredictionRow):
                self._pending[row.request_id] = entry
        self._drop_overflow()
        if len(self._buffer) >= self._batch_size:
            self._wakeup.set()

    def attach_segment(self, request_ids: Iterable[UUID], segment: int) -> None:
        """Rows spooled after they were enqueued: release them when written (now, if already)."""
        for request_id in request_ids:
            entry = self._pending.get(request_id)
            if entry is not None:
                entry.segment = segment
            elif self._spool is not None:
                self._spool.release(segment)

    @property
    def queue_size(self) -> int:
        return len(self._buffer) + len(self._in_flight)

    def is_pending(self, request_id: UUID) -> bool:
        return request_id in self._pending

    async def wait_written(self, request_id: UUID, timeout_s: float) -> bool:
        """Wait until a buffered prediction is in the database (one early-write request, no polling)."""
        return await self.wait_all_written([request_id], timeout_s)

    async def wait_all_written(self, request_ids: Iterable[UUID], timeout_s: float) -> bool:
        ids = [request_id for request_id in request_ids if request_id in self._pending]
        deadline = time.monotonic() + timeout_s
        self._wakeup.set()
        while any(request_id in self._pending for request_id in ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._progress.wait(), timeout=remaining)
            except TimeoutError:
                return not any(request_id in self._pending for request_id in ids)
        return True

    # Lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="prediction-log-writer")

    async def stop(self, timeout_s: float = 15.0) -> int:
        """Flush what is buffered and close; returns rows lost (buffered and not in the spool).

        During an outage spooled rows are left on disk at once (the next start replays them);
        only rows that exist nowhere else are retried until the timeout.
        """
        self._stopping = True
        self._stop_event.set()
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=timeout_s)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close()
        remaining = [*self._in_flight, *self._buffer]
        lost = sum(1 for entry in remaining if entry.segment is None)
        kept = len(remaining) - lost
        if kept:
            log.warning("prediction log: %d rows stay in the spool and are replayed at the next start", kept)
        if lost:
            log.error("prediction log: %d rows could not be written before shutdown", lost)
        return lost

    # Writer side ------------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._buffer:
                if self._stopping:
                    return
                await self._sleep(self._flush_interval_s)
                continue
            if await self._write_next_batch():
                failures = 0
                continue
            failures += 1
            if self._stopping and all(entry.segment is not None for entry in self._buffer):
                return  # everything left is on disk already: do not hold shutdown hostage
            await self._backoff(failures)

    async def _sleep(self, seconds: float) -> None:
        """Sleep until the interval passes or someone asks for an early write (batch full, flush, stop)."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wakeup.clear()

    async def _backoff(self, failures: int) -> None:
        """Exponential backoff with jitter; only shutdown interrupts it (early-write requests do not)."""
        ceiling = min(self._max_backoff_s, self._min_backoff_s * 2 ** (failures - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        if self._stopping:  # the stop timeout bounds this; the stop event must not end the wait early
            await asyncio.sleep(delay)
            return
        try:
            await asyncio.wait_for(self._stop_event.wait(), timeout=delay)
        except TimeoutError:
            pass
        self._wakeup.clear()

    async def _write_next_batch(self) -> bool:
        batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
        self._in_flight = batch
        try:
            rejected = await self._insert(batch)
        except Exception as exc:  # connection lost or server-side trouble: keep the rows, retry later
            self._in_flight = []
            self._buffer.extendleft(reversed(batch))
            self._drop_overflow()
            self.failed_writes += 1
            self.last_error = f"{type(exc).__name__}: {exc}".strip()
            log.warning(
                "prediction log: write of %d rows failed (%s); will retry", len(batch), self.last_error
            )
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
                self._set_database(False)
            await self._close()
            self._notify_progress()
            return False
        self._in_flight = []
        for entry in batch:
            if isinstance(entry.row, PredictionRow) and self._pending.get(entry.row.request_id) is entry:
                del self._pending[entry.row.request_id]
            if entry.segment is not None and self._spool is not None:
                self._spool.release(entry.segment)
        written = len(batch) - len(rejected)
        self.written_total += written
        self.rejected_total += len(rejected)
        self.last_error = None
        self._set_database(True)
        if written:
            self._on_written(written)
        for kind in ("prediction", "feedback"):
            n = sum(1 for entry, _ in rejected if _kind(entry.row) == kind)
            if n:
                self._on_rejected(kind, n)
        self._notify_progress()
        return True

    async def _insert(self, batch: list[_Entry]) -> list[tuple[_Entry, str]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, connect_timeout=3, options="-c statement_timeout=15000"
            )
        async with self._conn.transaction():
            rejected = await self._write_isolating(self._conn, batch)
            if rejected:
                await self._dead_letter(self._conn, rejected)
        return rejected

    async def _write_isolating(
        self, conn: psycopg.AsyncConnection, entries: list[_Entry]
    ) -> list[tuple[_Entry, str]]:
        """Write under a savepoint; on a data error bisect until the refused rows are alone."""
        try:
            async with conn.transaction():
                return await _write_rows(conn, entries)
        except DATA_ERRORS as exc:
            if len(entries) == 1:
                return [(entries[0], f"{type(exc).__name__}: {exc}".strip())]
            middle = len(entries) // 2
            return [
                *await self._write_isolating(conn, entries[:middle]),
                *await self._write_isolating(conn, entries[middle:]),
            ]

    async def _dead_letter(self, conn: psycopg.AsyncConnection, rejected: list[tuple[_Entry, str]]) -> None:
        for kind, table in (
            ("prediction", "ops.predictions_rejected"),
            ("feedback", "ops.feedback_rejected"),
        ):
            rows = [
                # ensure_ascii escapes NUL and lone surrogates, so the dead letter itself is storable.
                (entry.row.request_id, error, json.dumps(asdict(entry.row), default=str))
                for entry, error in rejected
                if _kind(entry.row) == kind
            ]
            if rows:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"insert into {table} (request_id, error, row_json) values (%s, %s, %s)", rows
                    )
                log.error(
                    "prediction log: %d %s rows refused by the database moved to %s (first: %s)",
                    len(rows),
                    kind,
                    table,
                    rows[0][1],
                )

    async def _close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:  # already broken: nothing to release
                pass
            self._conn = None

    def _set_database(self, up: bool) -> None:
        if self.database_up is not up:
            self.database_up = up
            self._on_database(up)

    def _drop_overflow(self) -> None:
        overflow = self.queue_size - self._buffer_max
        dropped = 0
        while overflow > 0 and self._buffer:
            row = self._buffer.popleft().row
            if isinstance(row, PredictionRow):
                self._pending.pop(row.request_id, None)
            overflow -= 1
            dropped += 1
        if dropped:
            self.dropped_total += dropped
            self._on_dropped(dropped)
            log.warning("prediction log buffer full: dropped %d oldest rows from memory", dropped)

    def _notify_progress(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()


def _kind(row: LogRow) -> str:
    return "prediction" if isinstance(row, PredictionRow) else "feedback"


async def _write_rows(conn: psycopg.AsyncConnection, entries: list[_Entry]) -> list[tuple[_Entry, str]]:
    """Predictions first (feedback may refer to them), then feedback; unknown predictions come back."""
    predictions = [_as_params(e.row) for e in entries if isinstance(e.row, PredictionRow)]
    if predictions:
        async with conn.cursor() as cur:
            await cur.executemany(INSERT_SQL, predictions)
    unknown = []
    for entry in entries:
        if isinstance(entry.row, FeedbackRow):
            cur = await conn.execute(FEEDBACK_UPSERT_SQL, asdict(entry.row))
            if await cur.fetchone() is None:
                unknown.append((entry, UNKNOWN_PREDICTION))
    return unknown
