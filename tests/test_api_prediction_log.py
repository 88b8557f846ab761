"""The prediction log writer on its own, against a real Postgres (and a really unreachable one)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest

from serving.prediction_log import PredictionLogWriter, PredictionRow, text_fields


def _row(text: str = "Outlook keeps asking for my password", topic: str = "email_calendar") -> PredictionRow:
    stored, digest, chars = text_fields(text, redact=False)
    return PredictionRow(
        request_id=uuid.uuid4(),
        call_request_id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        endpoint="triage",
        text=stored,
        text_sha256=digest,
        text_chars=chars,
        channel="portal",
        topic=topic,
        topic_confidence=0.8,
        urgency="medium",
        urgency_confidence=0.6,
        probabilities={"topic": {topic: 0.8, "other": 0.2}, "urgency": {"medium": 0.6, "low": 0.4}},
        low_confidence=False,
        model_name="ticket-triage",
        model_version="3",
        answer_mode=None,
        kb_version=None,
        latency_ms=4.2,
    )


def _unreachable(url: str) -> str:
    """Same server, a database that does not exist: every connection attempt fails."""
    return urlunparse(urlparse(url)._replace(path=f"/missing_{uuid.uuid4().hex[:8]}"))


@pytest.fixture()
def log_db(fresh_db: str) -> str:
    return fresh_db


def _stored(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select request_id, topic, probabilities, text_chars from ops.predictions order by created_at"
        ).fetchall()


def test_rows_are_written_in_batches_off_the_request_path(log_db: str) -> None:
    rows = [_row(topic=f"topic_{i % 3}") for i in range(35)]
    writes: list[int] = []

    async def scenario() -> PredictionLogWriter:
        writer = PredictionLogWriter(log_db, batch_size=10, flush_interval_s=0.05, on_written=writes.append)
        await writer.start()
        writer.enqueue(rows)
        assert writer.queue_size == 35  # enqueue returned without touching the database
        assert await writer.wait_written(rows[-1].request_id, timeout_s=10)
        assert await writer.stop() == 0
        return writer

    writer = asyncio.run(scenario())

    assert writes == [10, 10, 10, 5]
    assert writer.written_total == 35
    stored = {r[0]: r for r in _stored(log_db)}
    assert set(stored) == {row.request_id for row in rows}
    assert stored[rows[4].request_id][1:] == ("topic_1", rows[4].probabilities, rows[4].text_chars)


def test_a_retried_batch_does_not_duplicate_or_fail_on_rows_already_written(log_db: str) -> None:
    row = _row()

    async def scenario() -> PredictionLogWriter:
        writer = PredictionLogWriter(log_db, flush_interval_s=0.05)
        await writer.start()
        writer.enqueue([row])
        await writer.wait_written(row.request_id, timeout_s=10)
        writer.enqueue([row, _row()])  # as if the first commit's acknowledgement had been lost
        await writer.stop()
        return writer

    writer = asyncio.run(scenario())
    assert writer.failed_writes == 0
    assert len(_stored(log_db)) == 2


def test_an_unreachable_database_keeps_the_newest_rows_and_counts_the_dropped(pg_url: str) -> None:
    rows = [_row() for _ in range(8)]
    dropped: list[int] = []

    async def scenario() -> tuple[PredictionLogWriter, int]:
        writer = PredictionLogWriter(
            _unreachable(pg_url),
            buffer_max=5,
            flush_interval_s=0.02,
            max_backoff_s=0.05,
            on_dropped=dropped.append,
        )
        await writer.start()
        writer.enqueue(rows[:4])
        writer.enqueue(rows[4:])
        for _ in range(100):
            if writer.failed_writes >= 2:
                break
            await asyncio.sleep(0.02)
        kept = [r.request_id for r in rows if writer.is_pending(r.request_id)]
        assert kept == [r.request_id for r in rows[3:]]  # the three oldest went
        lost = await writer.stop(timeout_s=0.3)
        return writer, lost

    writer, lost = asyncio.run(scenario())
    assert writer.failed_writes >= 2
    assert writer.dropped_total == 3 and sum(dropped) == 3
    assert lost == 5
    assert writer.last_error and "OperationalError" in writer.last_error


def test_redaction_keeps_only_hash_and_length() -> None:
    stored, digest, chars = text_fields("Mon écran clignote", redact=True)
    assert stored is None
    assert chars == len("Mon écran clignote")
    assert digest == text_fields("Mon écran clignote", redact=False)[1]
    assert digest != text_fields("Mon écran clignote.", redact=True)[1]
