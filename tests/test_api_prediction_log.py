"""The prediction log writer on its own, against a real Postgres (and a really unreachable one)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest

from serving.prediction_log import (
    FeedbackRow,
    PredictionLogWriter,
    from_record,
    text_fields,
    to_record,
)
from serving.spool import Spool
from tests.support.api import sample_prediction_row as _row


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


# Poison rows, backoff, queued feedback ---------------------------------------------------------------
def _dead_letters(url: str, table: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"select request_id, error, row_json from {table} order by id").fetchall()


def test_a_row_the_database_refuses_costs_one_dead_letter_and_nothing_else(log_db: str) -> None:
    rows = [_row(topic=f"topic_{i % 4}") for i in range(60)]
    # As an older server (or a spool written before validation existed) could hand over: NUL in text.
    poison = replace(rows[37], channel="e\x00mail")
    rows[37] = poison
    rejected: list[tuple[str, int]] = []

    async def scenario() -> PredictionLogWriter:
        writer = PredictionLogWriter(
            log_db, batch_size=500, flush_interval_s=0.05, on_rejected=lambda k, n: rejected.append((k, n))
        )
        await writer.start()
        writer.enqueue(rows)
        assert await writer.wait_all_written([r.request_id for r in rows], timeout_s=20)
        later = [_row() for _ in range(10)]  # the writer keeps going after the poison row
        writer.enqueue(later)
        assert await writer.wait_all_written([r.request_id for r in later], timeout_s=20)
        assert await writer.stop() == 0
        return writer

    writer = asyncio.run(scenario())

    stored = {r[0] for r in _stored(log_db)}
    assert stored == {r.request_id for r in rows if r is not poison} | (stored - {r.request_id for r in rows})
    assert len(stored) == 59 + 10
    [(request_id, error, row_json)] = _dead_letters(log_db, "ops.predictions_rejected")
    assert request_id == poison.request_id
    assert "NUL" in error
    assert json.loads(row_json)["channel"] == "e\x00mail"
    assert rejected == [("prediction", 1)]
    assert writer.rejected_total == 1 and writer.written_total == 69 and writer.failed_writes == 0


def test_waiting_requests_do_not_turn_retries_into_a_busy_loop(pg_url: str) -> None:
    rows = [_row() for _ in range(20)]

    async def scenario() -> PredictionLogWriter:
        writer = PredictionLogWriter(_unreachable(pg_url), flush_interval_s=0.05, min_backoff_s=0.2)
        await writer.start()
        writer.enqueue(rows)
        # 20 feedback requests waiting for their predictions for 3 s each ask for early writes.
        waits = [writer.wait_written(r.request_id, timeout_s=3.0) for r in rows]
        assert not any(await asyncio.gather(*waits))
        await writer.stop(timeout_s=0.5)
        return writer

    writer = asyncio.run(scenario())
    # Backoff 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6 s ...: a handful of attempts in 3 s, not hundreds.
    assert 2 <= writer.failed_writes <= 8, writer.failed_writes


def test_queued_feedback_is_written_behind_its_prediction_and_unknown_ids_are_dead_letters(
    log_db: str,
) -> None:
    prediction = _row()
    known = FeedbackRow(prediction.request_id, None, "high", True, "queued while the row was buffered")
    unknown = FeedbackRow(uuid.uuid4(), None, None, False, None)

    async def scenario() -> None:
        writer = PredictionLogWriter(log_db, flush_interval_s=0.05)
        await writer.start()
        writer.enqueue([prediction, known, unknown])
        assert await writer.stop() == 0

    asyncio.run(scenario())

    with psycopg.connect(log_db) as conn:
        feedback = conn.execute("select request_id, true_urgency, draft_helpful from ops.feedback").fetchall()
    assert feedback == [(prediction.request_id, "high", True)]
    [(request_id, error, _)] = _dead_letters(log_db, "ops.feedback_rejected")
    assert request_id == unknown.request_id and "no prediction" in error


# Spool ---------------------------------------------------------------------------------------------
def test_the_spool_replays_what_was_not_released_and_skips_a_torn_tail(tmp_path: Path) -> None:
    rows = [_row() for _ in range(6)]

    async def first_process() -> int:
        spool = Spool(tmp_path / "spool")
        assert spool.open() == []
        await spool.start()
        # Concurrent appends share fsyncs (group commit).
        segments = await asyncio.gather(*(spool.append([to_record(r)]) for r in rows))
        spool.release(segments[0], 2)  # the first two reached Postgres
        assert spool.syncs_total < len(rows)
        # No stop(): the process dies here; the lock goes with it.
        os.close(spool._lock_fd)  # what the kernel does for a killed process
        return segments[0]

    segment = asyncio.run(first_process())
    path = next((tmp_path / "spool").glob("slot-*/*.jsonl"))
    with path.open("ab") as handle:
        handle.write(b'{"kind":"prediction","row":{"request_')  # crash in the middle of a write

    async def second_process() -> list:
        spool = Spool(tmp_path / "spool")
        replay = spool.open()
        await spool.start()
        for seg, _ in replay:
            spool.release(seg)
        await spool.stop()
        return replay

    replay = asyncio.run(second_process())
    # Nothing is released per row on disk: all six come back, idempotent inserts skip the two written.
    assert [from_record(record) for _, record in replay] == rows
    assert {seg for seg, _ in replay} == {segment}
    assert list((tmp_path / "spool").glob("slot-*/*.jsonl")) == []  # all released: nothing left


def test_two_processes_get_two_spool_slots_and_orphans_are_adopted(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = Spool(tmp_path / "spool"), Spool(tmp_path / "spool")
        a.open(), b.open()
        await a.start()
        await b.start()
        assert a._slot != b._slot
        await b.append([to_record(_row())])
        os.close(b._lock_fd)  # b crashes with one unreleased row
        c = Spool(tmp_path / "spool")
        replay = c.open()  # a's slot is locked, b's is free: c adopts b's row
        assert len(replay) == 1
        await a.stop()

    asyncio.run(scenario())
