"""CSV import: real exports load, malformed rows are quarantined with a reason, unreadable files raise."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import psycopg
import pytest

from tests.conftest import SHARED_DATASET, _with_database
from ticket_assets.services.migrations import migrate
from ticket_assets.services.postgres import connect
from ticket_assets.sources.csv_import import ColumnMapping, SourceReadError, read_csv_tickets
from ticket_assets.sources.store import ingest_csv
from ticket_assets.sources.text import text_hash

# Encoding given: the fixture's stray latin-1 byte must read as a corrupt UTF-8 row, not as a
# sign that the file is latin-1 (which detection would conclude from that single byte).
EXPORT_MAPPING = ColumnMapping(
    text_col="description", title_col="subject", urgency_col="priority", id_col="id", created_col="created",
    encoding="utf-8",
)  # fmt: skip


def _path_digest(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.fixture()
def malformed_csv(tmp_path: Path) -> Path:
    lines = [
        b"id,subject,description,priority,created",
        b'1,Printer jam,"The printer on floor 2 jams, again",P2,2025-01-06 09:30',  # line 2: valid
        b"2,Blank body,   ,high,2025-01-06",  # line 3: blank text
        b"3,Bad date,VPN is down,urgent,31/02/2025",  # line 4: unparseable date
        b"4,Extra field,VPN down,low,2025-01-07,surprise",  # line 5: more fields than the header
        b"5,Too short",  # line 6: fewer fields
        b"6,Encoding,Caf\xe9 machine broken,low,2025-01-07",  # line 7: latin-1 byte in a UTF-8 file
        b'7,"Two-line\nsubject",Mail is slow,normal,2025-01-08T10:00:00+02:00',  # lines 8-9: valid
    ]
    return _write(tmp_path / "export.csv", b"\n".join(lines) + b"\n")


def test_malformed_rows_are_quarantined_with_reasons(malformed_csv: Path) -> None:
    batch = read_csv_tickets(malformed_csv, EXPORT_MAPPING, source_name="export.csv")
    assert batch.read == 7
    assert batch.valid["ticket_id"].to_list() == ["csv:export.csv:1", "csv:export.csv:7"]
    rejected = {row["row_ref"]: row for row in batch.rejected.iter_rows(named=True)}
    assert {ref: row["reason"] for ref, row in rejected.items()} == {
        "3": "blank_text",
        "4": "unparseable_date",
        "5": "field_count_mismatch",
        "6": "field_count_mismatch",
        "7": "invalid_encoding",
    }
    assert rejected["4"]["raw_record"] == "3,Bad date,VPN is down,urgent,31/02/2025"
    assert "\ufffd" in rejected["7"]["raw_record"]  # the bad byte is visible, not silently re-decoded
    assert set(batch.rejected["source"]) == {"csv:export.csv"}
    assert batch.reasons() == {
        "blank_text": 1,
        "field_count_mismatch": 2,
        "invalid_encoding": 1,
        "unparseable_date": 1,
    }


def test_valid_rows_are_shaped_into_the_ticket_contract(malformed_csv: Path) -> None:
    valid = read_csv_tickets(malformed_csv, EXPORT_MAPPING).valid
    first, second = valid.iter_rows(named=True)
    assert first["title"] == "Printer jam"
    assert first["urgency"] == "high"  # P2
    assert first["created_at"] == datetime(2025, 1, 6, 9, 30, tzinfo=UTC)  # naive -> UTC
    assert first["text_hash"] == text_hash("Printer jam", "The printer on floor 2 jams, again")
    assert first["language"] == "en"
    assert second["title"] == "Two-line\nsubject"
    assert second["urgency"] == "medium"  # normal
    assert second["created_at"] == datetime(2025, 1, 8, 8, 0, tzinfo=UTC)  # offset converted


def test_unterminated_quote_costs_one_line_not_the_rest_of_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "quotes.csv", b'id,text\n1,fine\n2,"never closed\n3,still read\n4,"x"y"\n5,last\n'
    )
    batch = read_csv_tickets(path, ColumnMapping(text_col="text", id_col="id"))
    assert batch.valid["body"].to_list() == ["fine", "still read", "last"]
    assert batch.rejected.select("row_ref", "reason").rows() == [
        ("3", "malformed_csv"),
        ("5", "malformed_csv"),
    ]


def test_repeated_ids_keep_the_last_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "repeat.csv", b"id,text,priority\n9,old text,low\n10,other,low\n9,new text,P1\n")
    batch = read_csv_tickets(
        path, ColumnMapping(text_col="text", id_col="id", urgency_col="priority"), source_name="repeat.csv"
    )
    kept = batch.valid.filter(pl.col("ticket_id") == "csv:repeat.csv:9")
    assert kept.select("body", "urgency").row(0) == ("new text", "critical")
    assert batch.rejected.select("row_ref", "reason").rows() == [("2", "duplicate_id")]


def test_export_with_title_priority_created_and_extra_columns(tmp_path: Path) -> None:
    content = (
        "Ticket Subject;Ticket Body;Priority;Opened;Category;Assignee\n"
        "Laptop won't boot;My laptop shows a black screen since this morning.;Urgent;2025-02-03T08:15:00Z;Hardware ;Ana\n"
        "Accès VPN;Bonjour, je n'arrive pas à me connecter au VPN depuis la maison, merci;P3;2025-02-03 14:00;Network;\n"
        "Licence;Need a Visio licence;Whenever;2025/02/04 09:00;Software_Install;Bo\n"
    )
    path = _write(
        tmp_path / "helpdesk_export.csv", content.encode("utf-8-sig")
    )  # with a BOM, as Excel writes
    mapping = ColumnMapping(
        text_col="Ticket Body", title_col="Ticket Subject", urgency_col="Priority", created_col="Opened",
        topic_col="Category", delimiter=";",
    )  # fmt: skip
    batch = read_csv_tickets(path, mapping)
    assert batch.rejected.is_empty()
    valid = batch.valid
    assert valid["urgency"].to_list() == ["critical", "medium", "whenever"]
    # Raw keeps the export's spelling (the display name); staging derives the keys.
    assert valid["topic"].to_list() == ["Hardware", "Network", "Software_Install"]
    assert valid["language"].to_list() == ["en", "fr", "en"]
    assert valid["created_at"].to_list() == [
        datetime(2025, 2, 3, 8, 15, tzinfo=UTC),
        datetime(2025, 2, 3, 14, 0, tzinfo=UTC),
        datetime(2025, 2, 4, 9, 0, tzinfo=UTC),
    ]
    assert [json.loads(extra) for extra in valid["extra"]] == [
        {"Assignee": "Ana"},
        {"Assignee": ""},
        {"Assignee": "Bo"},
    ]
    # Without an id column the id is derived from the row's content: stable across reads. The
    # source is named after the file and a digest of its full path.
    assert batch.source == f"csv:helpdesk_export.csv@{_path_digest(path)}"
    assert all(ticket_id.startswith(batch.source + ":") for ticket_id in valid["ticket_id"])
    assert read_csv_tickets(path, mapping).valid["ticket_id"].to_list() == valid["ticket_id"].to_list()
    assert valid["ticket_id"].n_unique() == 3


def test_shared_dataset_sample_imports(tmp_path: Path, fresh_db: str) -> None:
    if not SHARED_DATASET.exists():
        pytest.skip("shared IT service tickets dataset not available")
    with gzip.open(SHARED_DATASET, "rt", encoding="utf-8") as source:
        head = [next(source) for _ in range(2001)]  # header + 2,000 tickets
    sample = tmp_path / "train_sample.csv.gz"
    with gzip.open(sample, "wt", encoding="utf-8") as target:
        target.writelines(head)
    labels = {line.rsplit(",", 1)[1].strip() for line in head[1:]}

    mapping = ColumnMapping(text_col="text", topic_col="topic", id_col="ticket_id")
    report = ingest_csv(fresh_db, sample, mapping)
    assert (report.read, report.inserted, report.quarantined) == (2000, 2000, 0)
    with connect(fresh_db) as conn:
        topics = {row[0] for row in conn.execute("select distinct topic from raw.tickets")}
        first = conn.execute(
            "select ticket_id, source from raw.tickets order by ticket_id limit 1"
        ).fetchone()
        languages = dict(conn.execute("select language, count(*) from raw.tickets group by 1").fetchall())
    # Labels are the data's own, in their original spelling, never the synthetic topic list.
    assert topics == labels
    source = f"csv:train_sample.csv.gz@{_path_digest(sample)}"
    assert first == (f"{source}:ITS-000002", source)
    # Lower-cased keyword English must stay English (the draft word list this detector replaced
    # called 1.8 % of the shared file French).
    assert languages.get("en", 0) >= 1998, languages


@pytest.fixture(scope="module")
def untouched_db(pg_server_url: str) -> Iterator[str]:
    """One database for all unreadable-file cases: each must leave it empty."""
    dbname = f"ticketops_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'create database "{dbname}"')
    url = _with_database(pg_server_url, dbname)
    migrate(url)
    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{dbname}" with (force)')


@pytest.mark.parametrize(
    ("content", "mapping", "message"),
    [
        (None, ColumnMapping(text_col="text"), "file not found"),
        (b"", ColumnMapping(text_col="text"), "empty file"),
        (
            b"id,body\n1,hello\n",
            ColumnMapping(text_col="text"),
            r"column 'text' \(mapped as text_col\) not found",
        ),
        (b"id,text\n1,hello\n", ColumnMapping(text_col="text", topic_col="label"), "column 'label'"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ColumnMapping(text_col="text"), "binary"),
        (b"\x1f\x8b\x08\x00truncated", ColumnMapping(text_col="text"), "gzip"),
        (b"t\xe9xt,id\nhello,1\n", ColumnMapping(text_col="text", encoding="utf-8"), "another encoding"),
        (
            b"text,id\nhello,1\n",
            ColumnMapping(text_col="text", encoding="klingon"),
            "unknown encoding 'klingon'",
        ),
        # Bytes no code page reads as text: detection gives up with a message instead of guessing.
        (
            b"text,id\n" + bytes(range(0x80, 0x100)) * 4 + b",1\n",
            ColumnMapping(text_col="text"),
            "--encoding",
        ),
    ],
    ids=[
        "missing",
        "empty",
        "no-text-column",
        "no-topic-column",
        "binary",
        "bad-gzip",
        "header-encoding",
        "unknown-encoding",
        "undetectable-encoding",
    ],  # fmt: skip
)
def test_unreadable_files_raise_and_write_nothing(
    tmp_path: Path, untouched_db: str, content: bytes | None, mapping: ColumnMapping, message: str
) -> None:
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceReadError, match=message) as raised:
        ingest_csv(untouched_db, path, mapping)
    assert "input.csv" in str(raised.value)
    with connect(untouched_db) as conn:
        counts = conn.execute(
            "select (select count(*) from raw.tickets), (select count(*) from raw.tickets_rejected)"
        ).fetchone()
    assert counts == (0, 0)
