"""Idempotent upserts into raw.tickets and the quarantine, against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ticket_assets.services.postgres import connect
from ticket_assets.sources.csv_import import ColumnMapping
from ticket_assets.sources.store import ingest_csv, ingest_synthetic, quarantine_rows, upsert_tickets
from ticket_assets.sources.synthetic import generate_tickets
from ticket_assets.sources.text import text_hash


def _updated_at(url: str) -> dict[str, object]:
    with connect(url) as conn:
        return dict(conn.execute("select ticket_id, updated_at from raw.tickets").fetchall())


def test_reingesting_the_same_tickets_changes_nothing(fresh_db: str) -> None:
    calls: list[tuple[int, int]] = []
    first = ingest_synthetic(
        fresh_db, n=1500, seed=3, progress=lambda done, total: calls.append((done, total))
    )
    assert (first.read, first.inserted, first.updated, first.unchanged) == (1500, 1500, 0, 0)
    assert calls[-1] == (1500, 1500)
    before = _updated_at(fresh_db)

    second = ingest_synthetic(fresh_db, n=1500, seed=3)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 1500)
    assert _updated_at(fresh_db) == before

    with connect(fresh_db) as conn:
        stored = conn.execute(
            "select count(*), count(distinct text_hash), min(created_at) is not null, "
            "count(*) filter (where extra->>'duplicate_of' is not null) from raw.tickets"
        ).fetchone()
    assert stored[0] == 1500
    assert stored[1] < 1500  # duplicates kept as separate tickets, sharing a hash
    assert stored[2] is True
    assert stored[3] > 0  # generator metadata survives as jsonb


def test_only_changed_rows_are_updated_and_timestamped(fresh_db: str) -> None:
    tickets = generate_tickets(400, seed=5)
    with connect(fresh_db) as conn:
        upsert_tickets(conn, tickets, batch_rows=150)  # several COPY batches
    before = _updated_at(fresh_db)

    relabelled = tickets.head(3)["ticket_id"].to_list()
    edited = tickets.slice(3, 2)["ticket_id"].to_list()
    changed = tickets.with_columns(
        topic=pl.when(pl.col("ticket_id").is_in(relabelled))
        .then(pl.lit("reviewed_topic"))
        .otherwise("topic"),
        body=pl.when(pl.col("ticket_id").is_in(edited))
        .then(pl.col("body") + " Update: still broken.")
        .otherwise("body"),
    )
    changed = changed.with_columns(
        text_hash=pl.Series([text_hash(t, b) for t, b in changed.select("title", "body").iter_rows()])
    )
    new_rows = generate_tickets(10, seed=6)
    with connect(fresh_db) as conn:
        result = upsert_tickets(conn, pl.concat([changed, new_rows]), batch_rows=150)
    assert (result.inserted, result.updated, result.unchanged) == (10, 5, 395)

    after = _updated_at(fresh_db)
    moved = {ticket_id for ticket_id, stamp in before.items() if after[ticket_id] != stamp}
    assert moved == set(relabelled + edited)
    with connect(fresh_db) as conn:
        body = conn.execute("select body from raw.tickets where ticket_id = %s", (edited[0],)).fetchone()[0]
    assert body.endswith("Update: still broken.")


def test_upsert_rejects_ambiguous_frames(fresh_db: str) -> None:
    tickets = generate_tickets(5, seed=1)
    with connect(fresh_db) as conn, pytest.raises(ValueError, match="unique"):
        upsert_tickets(conn, pl.concat([tickets, tickets.head(1)]))


def test_upsert_fills_a_missing_hash_and_extra(fresh_db: str) -> None:
    minimal = pl.DataFrame(
        {"ticket_id": ["m-1"], "source": ["manual"], "title": ["Hi"], "body": ["Printer broken"]}
    )
    with connect(fresh_db) as conn:
        assert upsert_tickets(conn, minimal).inserted == 1
        stored = conn.execute("select text_hash, extra, topic from raw.tickets").fetchone()
    assert stored == (text_hash("Hi", "Printer broken"), {}, None)


def test_csv_ingest_quarantines_and_is_idempotent(tmp_path: Path, fresh_db: str) -> None:
    path = tmp_path / "desk.csv"
    path.write_bytes(
        b"id,text,priority,created\n"
        b"1,Outlook keeps crashing,P2,2025-01-06\n"
        b"2,,P3,2025-01-06\n"
        b"3,Wifi down on floor 4,P1,yesterday\n"
        b"4,VPN slow,P4,2025-01-07,extra\n"
        b"5,Caf\xe9 printer,P4,2025-01-07\n"
        b"6,New monitor please,P4,2025-01-08\n"
    )
    # UTF-8 given: the stray latin-1 byte is a corrupt row here, not a reason to re-detect the file.
    mapping = ColumnMapping(
        text_col="text", id_col="id", urgency_col="priority", created_col="created", encoding="utf-8"
    )
    report = ingest_csv(fresh_db, path, mapping, source_name="desk.csv")
    assert (report.read, report.inserted, report.quarantined) == (6, 2, 4)
    assert report.reasons == {
        "blank_text": 1,
        "unparseable_date": 1,
        "field_count_mismatch": 1,
        "invalid_encoding": 1,
    }
    again = ingest_csv(fresh_db, path, mapping, source_name="desk.csv")
    assert (again.inserted, again.updated, again.unchanged, again.quarantined) == (0, 0, 2, 4)
    with connect(fresh_db) as conn:
        quarantine = conn.execute(
            "select row_ref, reason, raw_record from raw.tickets_rejected where source = 'csv:desk.csv' order by row_ref"
        ).fetchall()
        urgencies = conn.execute("select ticket_id, urgency from raw.tickets order by ticket_id").fetchall()
    assert [(ref, reason) for ref, reason, _ in quarantine] == [
        ("3", "blank_text"),
        ("4", "unparseable_date"),
        ("5", "field_count_mismatch"),
        ("6", "invalid_encoding"),
    ]
    assert quarantine[1][2] == "3,Wifi down on floor 4,P1,yesterday"
    assert urgencies == [("csv:desk.csv:1", "high"), ("csv:desk.csv:6", "low")]


def test_quarantine_upserts_on_source_and_row(fresh_db: str) -> None:
    rejected = pl.DataFrame(
        {"source": ["csv:a.csv", "csv:a.csv"], "row_ref": ["2", "5"], "reason": ["blank_text", "malformed_csv"],
         "raw_record": ["1,,x", '4,"oops']}
    )  # fmt: skip
    with connect(fresh_db) as conn:
        assert quarantine_rows(conn, rejected) == 2
        assert quarantine_rows(conn, rejected.with_columns(reason=pl.lit("unparseable_date"))) == 2
        rows = conn.execute("select row_ref, reason from raw.tickets_rejected order by row_ref").fetchall()
    assert rows == [("2", "unparseable_date"), ("5", "unparseable_date")]
