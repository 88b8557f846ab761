"""The dbt project against a real PostgreSQL: `dbt build` as a subprocess, marts checked in Python.

Expectations are recomputed here from raw.tickets with an independent Python implementation of
the staging rules (dedupe, split, volumes), so an incremental build is compared with what a full
rebuild must produce.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.support.dbt import run_dbt
from ticket_assets.core.labels import normalize_label
from ticket_assets.core.paths import REPO_ROOT
from ticket_assets.ml.splits import stratified_hash_split, time_split_usable

SHARED_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "it-service-tickets" / "train.csv.gz"
TEST_FRACTION = Decimal("0.2")
LEVELS = ("low", "medium", "high", "critical")
TICKET_COLUMNS = (
    "ticket_id", "source", "title", "body", "topic", "urgency", "channel", "department", "language",
    "created_at", "text_hash",
)  # fmt: skip


# Helpers ---------------------------------------------------------------------------------------


def content_hash(title: str | None, body: str) -> str:
    return hashlib.sha256(f"{title or ''}\n{body}".encode()).hexdigest()


def ticket(
    ticket_id: str, body: str, *, title: str | None = None, created_at: datetime | None = None, **labels
) -> dict:
    row = {column: None for column in TICKET_COLUMNS}
    row.update(ticket_id=ticket_id, source="test", title=title, body=body, created_at=created_at, **labels)
    row["text_hash"] = content_hash(title, body)
    return row


def insert(url: str, rows: list[dict]) -> None:
    placeholders = ", ".join(["%s"] * len(TICKET_COLUMNS))
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            f"insert into raw.tickets ({', '.join(TICKET_COLUMNS)}) values ({placeholders})",
            [tuple(row[column] for column in TICKET_COLUMNS) for row in rows],
        )


def fetch(url: str, sql: str) -> list[dict]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        return cursor.execute(sql).fetchall()


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["ticket_id"]: row for row in rows}


# Independent expectations ------------------------------------------------------------------------


def expected_urgency_map() -> dict[str, str]:
    """Synonyms staging must map; the ingestion's alias table when available keeps the two in step."""
    mapping = {
        "p1": "critical",
        "urgent": "critical",
        "p2": "high",
        "p3": "medium",
        "normal": "medium",
        "p4": "low",
    }
    mapping.update({level: level for level in LEVELS})
    try:
        from ticket_assets.core.labels import URGENCY_ALIASES
    except ImportError:
        return mapping
    mapping.update({alias: level for alias, level in URGENCY_ALIASES.items() if level in LEVELS})
    return mapping


@dataclass(frozen=True)
class Expected:
    canonical: dict[str, str]  # ticket_id -> canonical ticket_id of its text_hash group
    training_ids: set[str]
    test_ids: set[str]
    daily_counts: Counter


def expected_from_raw(url: str) -> Expected:
    raw = fetch(url, "select *, coalesce(created_at, ingested_at) as event_at from raw.tickets")
    groups: dict[str, list[dict]] = {}
    for row in raw:
        groups.setdefault(row["text_hash"], []).append(row)
    canonical = {}
    for members in groups.values():
        first = min(members, key=lambda row: (row["event_at"], row["ticket_id"].encode()))
        canonical.update({row["ticket_id"]: first["ticket_id"] for row in members})

    def has_text(row: dict) -> bool:
        return bool((row["title"] or "").strip() or row["body"].strip())

    labelled = [
        row for row in raw
        if canonical[row["ticket_id"]] == row["ticket_id"] and (row["topic"] or "").strip() and has_text(row)
    ]  # fmt: skip
    # The time rule applies when the dates are usable; every other row takes the stratified hash split.
    time_rule = time_split_usable([row["created_at"] for row in labelled])
    dated = sorted(
        (row for row in labelled if time_rule and row["created_at"] is not None),
        key=lambda row: (row["event_at"], row["ticket_id"].encode()),
    )
    n_test = math.floor(len(dated) * TEST_FRACTION + Decimal("0.5"))
    test_ids = {row["ticket_id"] for row in dated[len(dated) - n_test :]}
    hashed = [row for row in labelled if not (time_rule and row["created_at"] is not None)]
    splits = stratified_hash_split(
        [row["ticket_id"] for row in hashed], [normalize_label(row["topic"]) for row in hashed], TEST_FRACTION
    )
    test_ids |= {row["ticket_id"] for row, split in zip(hashed, splits, strict=True) if split == "test"}
    daily = Counter(row["event_at"].astimezone(UTC).date() for row in raw)
    return Expected(canonical, {row["ticket_id"] for row in labelled}, test_ids, daily)


def assert_marts_match_raw(url: str) -> None:
    expected = expected_from_raw(url)
    staged = by_id(fetch(url, "select ticket_id, is_duplicate, duplicate_of from staging.stg_tickets"))
    assert set(staged) == set(expected.canonical)
    for ticket_id, row in staged.items():
        canonical = expected.canonical[ticket_id]
        assert row["is_duplicate"] == (canonical != ticket_id), ticket_id
        assert row["duplicate_of"] == (None if canonical == ticket_id else canonical), ticket_id

    training = by_id(fetch(url, "select ticket_id, split from marts.training_set"))
    assert set(training) == expected.training_ids
    assert {ticket_id for ticket_id, row in training.items() if row["split"] == "test"} == expected.test_ids

    volumes = fetch(url, "select day, sum(n_tickets)::int as n from marts.daily_ticket_volumes group by day")
    assert Counter({row["day"]: row["n"] for row in volumes}) == expected.daily_counts


def assert_serving_builds_the_same_text(rows: list[dict], staged: dict[str, dict]) -> None:
    """The API builds the classifier input from title + body itself: it must match training's text."""
    try:
        from ticket_assets.core.text import model_text
    except ImportError:
        return
    for row in rows:
        assert model_text(row["title"], row["body"]) == staged[row["ticket_id"]]["text"], row["ticket_id"]


# Data ------------------------------------------------------------------------------------------

TOPICS = ["Network", "hardware", " Access ", "HR Support", "e-mail"]
URGENCIES = ["low", "P1", "Normal", "urgent", "p4", "High", "whenever", None, ""]
CHANNELS = ["email", "Portal", "phone ", None]


def synthetic_rows(n: int, *, seed: int, start: datetime, prefix: str) -> list[dict]:
    """Ticket-shaped rows with messy labels and whitespace; every 9th repeats an earlier text."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        created = start + timedelta(hours=rng.randint(0, 24 * 30))
        if i % 9 == 8:
            source_row = rows[rng.randrange(len(rows))]
            title, body = source_row["title"], source_row["body"]
        else:
            title = rng.choice([None, "", f"Issue {i}", f" VPN  drops {i} "])
            body = f"Ticket {prefix}{i}:\t{rng.choice(['cannot log in', 'printer jam', 'laptop slow'])}  please help"
        rows.append(
            ticket(
                f"{prefix}{i:04d}",
                body,
                title=title,
                created_at=created,
                topic=rng.choice([*TOPICS, None]) if i % 10 else None,
                urgency=rng.choice(URGENCIES),
                channel=rng.choice(CHANNELS),
                department="IT",
                language="en",
            )  # fmt: skip
        )
    return rows


# Tests -----------------------------------------------------------------------------------------


@pytest.fixture()
def tickets_db(fresh_db: str) -> str:
    return fresh_db


def test_build_cleans_dedupes_splits_and_updates_incrementally(tickets_db: str, tmp_path: Path) -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    rows = synthetic_rows(180, seed=7, start=start, prefix="S")
    aliases = sorted(expected_urgency_map())
    rows += [
        # Upper-cased (ASCII only: case mapping of accents depends on the server's locale).
        ticket(
            f"U{i:03d}",
            f"urgency alias {alias}",
            topic="network",
            created_at=start,
            urgency=f" {alias.upper()} " if alias.isascii() else alias,
        )  # fmt: skip
        for i, alias in enumerate(aliases)
    ]
    rows += [
        ticket(
            "CLEAN1",
            "  Line one\r\n\tline\u00a0two \x07 zero\u200bwidth end\ufeff  ",
            title="  Printer \t on floor 3 ",
            topic="  HR - Support ",
            urgency=" whenever ",
            channel="Web-Form",
            created_at=start,
        ),  # fmt: skip
        ticket("CLEAN2", "body only", title="   ", topic="Network", created_at=start),
        ticket("BLANK", " \t ", title=None, topic="Network", created_at=start),
        ticket(
            "LONELY", "the only ticket of its day", topic="Network", created_at=start - timedelta(days=50)
        ),
    ]
    insert(tickets_db, rows)
    run_dbt(tickets_db, tmp_path, "build")

    staged = by_id(fetch(tickets_db, "select * from staging.stg_tickets"))
    clean = staged["CLEAN1"]
    assert clean["title"] == "Printer on floor 3"
    assert clean["body"] == "Line one line two zerowidth end"
    assert clean["text"] == "Printer on floor 3. Line one line two zerowidth end"
    assert_serving_builds_the_same_text(
        [row for row in rows if row["ticket_id"] in {"CLEAN1", "CLEAN2", "S0001", "S0002"}], staged
    )
    assert (clean["topic"], clean["channel"]) == ("hr_support", "web_form")
    assert (clean["urgency"], clean["urgency_raw"]) == (None, "whenever")
    assert staged["CLEAN2"]["title"] is None and staged["CLEAN2"]["text"] == "body only"
    assert staged["BLANK"]["text"] == ""
    for i, alias in enumerate(aliases):
        assert staged[f"U{i:03d}"]["urgency"] == expected_urgency_map()[alias], alias
    assert {row["topic"] for row in staged.values()} == {
        None,
        "network",
        "hardware",
        "access",
        "hr_support",
        "e_mail",
    }

    assert_marts_match_raw(tickets_db)
    training = fetch(tickets_db, "select * from marts.training_set")
    assert "BLANK" not in {row["ticket_id"] for row in training}
    test_share = sum(row["split"] == "test" for row in training) / len(training)
    assert 0.15 < test_share < 0.25
    newest_train = max(row["event_at"] for row in training if row["split"] == "train")
    assert newest_train <= min(row["event_at"] for row in training if row["split"] == "test")
    dim_topics = fetch(tickets_db, "select * from marts.dim_topics")
    assert {row["topic"]: row["n_labelled"] for row in dim_topics} == Counter(
        row["topic"] for row in training
    )
    assert sum(row["share"] for row in dim_topics) == pytest.approx(1.0, abs=1e-5)

    # Second load: new tickets on new days, a late copy of an existing text that claims to be
    # older (it must take over as canonical) and an edited ticket that leaves its duplicate group.
    duplicated = min(
        (row for row in staged.values() if row["is_duplicate"]), key=lambda row: row["ticket_id"]
    )
    canonical_before = duplicated["duplicate_of"]
    original = next(row for row in rows if row["ticket_id"] == canonical_before)
    late_copy = ticket(
        "LATE-COPY", original["body"], title=original["title"], topic="Network",
        created_at=staged[canonical_before]["event_at"] - timedelta(days=3),
    )  # fmt: skip
    new_rows = synthetic_rows(40, seed=8, start=start + timedelta(days=40), prefix="N")
    insert(tickets_db, [*new_rows, late_copy])
    with psycopg.connect(tickets_db) as conn:
        conn.execute(
            "update raw.tickets set body = 'edited body', text_hash = 'edited', updated_at = now() where ticket_id = %s",
            (duplicated["ticket_id"],),
        )
        # A corrected created_at moves a ticket to another day and leaves its old day empty.
        conn.execute(
            "update raw.tickets set created_at = created_at - interval '10 days', updated_at = now()"
            " where ticket_id = 'LONELY'"
        )
    output = run_dbt(tickets_db, tmp_path, "build")
    staging_line = next(
        line for line in output.splitlines() if "OK created" in line and "staging.stg_tickets" in line
    )
    assert "INSERT 0" in staging_line, "stg_tickets should have run incrementally"

    assert_marts_match_raw(tickets_db)
    after = by_id(fetch(tickets_db, "select * from staging.stg_tickets"))
    assert len(after) == len(rows) + len(new_rows) + 1
    assert after["LATE-COPY"]["is_duplicate"] is False
    assert after[canonical_before]["duplicate_of"] == "LATE-COPY"
    assert after[duplicated["ticket_id"]]["is_duplicate"] is False
    assert after[duplicated["ticket_id"]]["body"] == "edited body"
    training_ids = {row["ticket_id"] for row in fetch(tickets_db, "select ticket_id from marts.training_set")}
    assert {row["ticket_id"] for row in new_rows if row["topic"]} & training_ids

    # The enforced contracts: keys in "C" (the incremental's joins use their indexes) and the rules
    # PostgreSQL holds on every write. A table built before its contract gets them on its next build.
    keys = fetch(
        tickets_db,
        "select table_name, column_name, collation_name from information_schema.columns"
        " where (table_name, column_name) in (('stg_tickets', 'ticket_id'), ('stg_tickets', 'text_hash'),"
        " ('stg_tickets', 'duplicate_of'), ('training_set', 'ticket_id'), ('training_set', 'text_hash'))",
    )
    assert len(keys) == 5 and {row["collation_name"] for row in keys} == {"C"}
    # Autovacuum follows each load on the incremental models (macros/training_set.sql), and a
    # table that lost the setting gets it back on its next build.
    assert autovacuum_options(tickets_db) == {
        "stg_tickets": AUTOVACUUM_OPTIONS,
        "training_set": AUTOVACUUM_OPTIONS,
    }
    with psycopg.connect(tickets_db, autocommit=True) as conn:
        conn.execute(
            "alter table staging.stg_tickets alter column text drop not null,"
            " drop constraint stg_tickets_urgency_known,"
            " reset (autovacuum_vacuum_scale_factor, autovacuum_vacuum_insert_scale_factor)"
        )
    run_dbt(tickets_db, tmp_path, "build", "--select", "stg_tickets")
    assert autovacuum_options(tickets_db)["stg_tickets"] == AUTOVACUUM_OPTIONS
    with psycopg.connect(tickets_db, autocommit=True) as conn:
        for bad in ("text = null", "urgency = 'whenever'"):
            with pytest.raises((psycopg.errors.NotNullViolation, psycopg.errors.CheckViolation)):
                conn.execute(f"update staging.stg_tickets set {bad} where ticket_id = 'CLEAN2'")


AUTOVACUUM_OPTIONS = {"autovacuum_vacuum_scale_factor=0.01", "autovacuum_vacuum_insert_scale_factor=0.01"}


def autovacuum_options(url: str) -> dict[str, set[str]]:
    rows = fetch(
        url,
        "select c.relname, coalesce(c.reloptions, '{}') as options from pg_class as c"
        " where c.relname in ('stg_tickets', 'training_set') and c.relkind = 'r'",
    )
    return {row["relname"]: {o for o in row["options"] if o.startswith("autovacuum_")} for row in rows}


def dateless_rows() -> list[dict]:
    """Tickets with only id, text and topic: the shared dataset's first rows, or a stand-in of that shape."""
    if SHARED_DATASET.exists():
        import polars as pl

        sample = pl.read_csv(SHARED_DATASET, n_rows=1500)
        return [
            ticket(row["ticket_id"], row["text"], topic=row["topic"]) for row in sample.iter_rows(named=True)
        ]
    topics = ["Hardware", "HR Support", "Access", "Miscellaneous", "Storage", "Purchase", "Internal Project",
              "Administrative rights"]  # fmt: skip
    return [
        ticket(f"ITS-{i:06d}", f"keyword text number {i} for {topics[i % 8]}", topic=topics[i % 8])
        for i in range(400)
    ]


def _corrected(url: str, text: str, true_topic: str, served_at: datetime) -> None:
    """One served prediction of ``text`` that an agent corrected to ``true_topic``."""
    import uuid

    request_id = uuid.uuid4()
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into ops.predictions (request_id, call_request_id, created_at, endpoint, text, text_sha256,"
            " text_chars, topic, topic_confidence, probabilities, low_confidence, model_name, model_version,"
            " latency_ms) values (%s, %s, %s, 'triage', %s, 'x', %s, 'network', 0.9, '{}', false, 'm', '1', 5)",
            (request_id, request_id, served_at, text, len(text)),
        )
        conn.execute(
            "insert into ops.feedback (request_id, true_topic) values (%s, %s)", (request_id, true_topic)
        )


def test_dim_topics_counts_every_training_row_feedback_included(tickets_db: str, tmp_path: Path) -> None:
    """dim_topics counts staged and feedback rows apart (a partial index, a prefix scan): the sum must
    stay training_set's class balance, on a full build and after an incremental one, and a topic
    only agents introduced gets its first and last seen from its feedback."""
    start = datetime(2025, 3, 1, tzinfo=UTC)
    insert(tickets_db, synthetic_rows(120, seed=11, start=start, prefix="F"))
    served = start + timedelta(days=40)
    _corrected(tickets_db, "Badge reader at gate 2 rejects every badge", "facilities", served)
    _corrected(tickets_db, "Laptop fan very loud after the update", "hardware", served)
    run_dbt(tickets_db, tmp_path, "build")

    def balance() -> tuple[dict, Counter, list[dict]]:
        topics = {row["topic"]: row for row in fetch(tickets_db, "select * from marts.dim_topics")}
        training = fetch(tickets_db, "select ticket_id, topic, event_at from marts.training_set")
        return topics, Counter(row["topic"] for row in training), training

    topics, expected, training = balance()
    assert {topic: row["n_labelled"] for topic, row in topics.items()} == expected
    assert expected["facilities"] == 1 and topics["facilities"]["n_tickets"] == 0
    assert topics["facilities"]["first_seen"] == topics["facilities"]["last_seen"] == served
    assert sum(row["share"] for row in topics.values()) == pytest.approx(1.0, abs=1e-5)

    # Incremental: new tickets, and a second correction for the new topic a day later.
    insert(tickets_db, synthetic_rows(40, seed=12, start=start + timedelta(days=31), prefix="G"))
    _corrected(tickets_db, "Turnstile does not open for visitors", "facilities", served + timedelta(days=1))
    run_dbt(tickets_db, tmp_path, "build")
    topics, expected, training = balance()
    assert {topic: row["n_labelled"] for topic, row in topics.items()} == expected
    assert expected["facilities"] == 2
    assert (topics["facilities"]["first_seen"], topics["facilities"]["last_seen"]) == (
        served,
        served + timedelta(days=1),
    )
    assert sum(1 for row in training if row["ticket_id"].startswith("feedback:")) == 3


def test_dataset_without_urgency_or_dates_builds_with_hash_split(tickets_db: str, tmp_path: Path) -> None:
    rows = dateless_rows()
    insert(tickets_db, rows)
    output = run_dbt(tickets_db, tmp_path, "build")
    assert "ERROR=0" in output and "WARN=0" in output

    # The split depends on md5(ticket_id) only (checked here), so it survives rebuilds and reloads.
    assert_marts_match_raw(tickets_db)
    training = fetch(tickets_db, "select * from marts.training_set")
    assert len(training) == len({row["text_hash"] for row in rows})
    assert all(row["urgency"] is None and row["created_at"] is None for row in training)
    assert 0.14 < sum(row["split"] == "test" for row in training) / len(training) < 0.26
    dim_topics = fetch(tickets_db, "select * from marts.dim_topics")
    assert {row["topic"] for row in dim_topics} == {
        "hardware", "hr_support", "access", "miscellaneous", "storage", "purchase", "internal_project",
        "administrative_rights",
    }  # fmt: skip
    assert sum(row["n_tickets"] for row in dim_topics) == len(rows)
    # Stratified by topic: every topic holds out round(n * 0.2) of its rows; people see the spelling.
    by_topic = Counter(row["topic"] for row in training)
    held_out = Counter(row["topic"] for row in training if row["split"] == "test")
    assert held_out == {topic: round(n * 0.2) for topic, n in by_topic.items()}
    assert {row["topic"]: row["topic_display"] for row in training}["hr_support"] == "HR Support"
    assert {row["split_rule"] for row in training} == {"hash"}


def test_degenerate_dates_take_the_stratified_hash_split(tickets_db: str, tmp_path: Path) -> None:
    """An export that stamped (almost) every row with one time: a time split would hold out the
    last ticket ids, so every row takes the hash split; real dates added later switch it back."""
    stamp = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    topics = ["Hardware"] * 5 + ["Access"] * 3 + ["Rare Group"] * 2  # skewed by id order
    rows = [
        ticket(f"T{i:04d}", f"ticket {i} about {topics[i % 10]}", topic=topics[i % 10],
               created_at=stamp if i % 10 else stamp + timedelta(days=i))
        for i in range(300)
    ]  # fmt: skip
    insert(tickets_db, rows)
    run_dbt(tickets_db, tmp_path, "build")
    assert_marts_match_raw(tickets_db)
    training = fetch(tickets_db, "select topic, split, split_rule from marts.training_set")
    assert {row["split_rule"] for row in training} == {"hash"}
    held_out = Counter(row["topic"] for row in training if row["split"] == "test")
    assert held_out == {"hardware": 30, "access": 18, "rare_group": 12}

    # Real dates arrive: the incremental run moves every dated row onto the time rule.
    dated = [
        ticket(f"D{i:04d}", f"dated ticket {i}", topic="Hardware", created_at=stamp + timedelta(hours=i))
        for i in range(400)
    ]
    insert(tickets_db, dated)
    run_dbt(tickets_db, tmp_path, "build")
    assert_marts_match_raw(tickets_db)
    rules = Counter(
        row["split_rule"] for row in fetch(tickets_db, "select split_rule from marts.training_set")
    )
    assert rules == {"time": 700}


@pytest.mark.parametrize(
    ("stamped", "others", "share", "rule"),
    [
        (50, 50, 0.5, "time"),  # exactly the share: still usable
        (51, 49, 0.5, "hash"),
        (21, 79, 0.2, "hash"),  # a share under one half: the stamp is not the median date
        (20, 80, 0.2, "time"),
        (1, 2, 0.5, "time"),
        (60, 40, 0.6, "time"),  # over one half: the rule counts only the median date's run
        (61, 39, 0.6, "hash"),
    ],
)
def test_time_rule_is_exact_at_the_degenerate_share(
    tickets_db: str, tmp_path: Path, stamped: int, others: int, share: float, rule: str
) -> None:
    """The rule compares the largest run of one created_at with the share of all dated tickets: exact
    at and around the limit, wherever the stamp lies among the other dates."""
    stamp = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    rows = [ticket(f"S{i:03d}", f"stamped {i}", topic="Access", created_at=stamp) for i in range(stamped)]
    rows += [
        ticket(
            f"O{i:03d}",
            f"dated {i}",
            topic="Access",
            created_at=stamp + timedelta(hours=i - others // 3, minutes=30),
        )
        for i in range(others)
    ]  # the stamp sits a third of the way through the other dates
    insert(tickets_db, rows)
    run_dbt(tickets_db, tmp_path, "run", "--select", "+training_set", "--vars",
            f"{{degenerate_time_share: {share}}}")  # fmt: skip
    rules = {row["split_rule"] for row in fetch(tickets_db, "select split_rule from marts.training_set")}
    assert rules == {rule}
    # What the rule reads: one partial index on exactly its rows.
    (index,) = fetch(
        tickets_db,
        "select indexdef from pg_indexes where schemaname = 'staging' and indexname like 'stg\\_tickets\\_dated\\_%'",
    )
    assert "(created_at) WHERE" in index["indexdef"] and "is_duplicate" in index["indexdef"]


def test_daily_predictions_share_the_logged_trust_signals(tickets_db: str, tmp_path: Path) -> None:
    from dataclasses import replace

    from serving.prediction_log import INSERT_SQL, _as_params
    from tests.support.api import sample_prediction_row

    logged = [
        replace(sample_prediction_row(), needs_review=True, out_of_scope=True, escalated=False),
        replace(sample_prediction_row(), needs_review=False, out_of_scope=False, escalated=True),
        replace(sample_prediction_row(), needs_review=False, out_of_scope=False, escalated=False),
        sample_prediction_row(),  # logged before the trust columns: null, left out of the shares
    ]
    with psycopg.connect(tickets_db) as conn:
        conn.cursor().executemany(INSERT_SQL, [_as_params(row) for row in logged])
    run_dbt(tickets_db, tmp_path, "build", "--select", "daily_predictions")
    [day] = fetch(tickets_db, "select * from marts.daily_predictions")
    assert day["n_predictions"] == 4
    assert float(day["needs_review_share"]) == pytest.approx(1 / 3)
    assert float(day["out_of_scope_share"]) == pytest.approx(1 / 3)
    assert float(day["escalated_share"]) == pytest.approx(1 / 3)


def test_manifest_is_prepared_again_only_when_what_dbt_parses_changes(tmp_path: Path) -> None:
    from ticket_assets.services import dbt as dbt_service
    from ticket_assets.services import dbt_parse

    profile = {"TICKETOPS_PG_HOST": "db", "TICKETOPS_PG_DBNAME": "a", "TICKETOPS_PG_PASSWORD": "x"}
    fingerprint = dbt_parse.project_fingerprint(profile)
    # The password and the per-run test watermark do not change what dbt parses; the database does.
    assert dbt_parse.project_fingerprint({**profile, "TICKETOPS_PG_PASSWORD": "y"}) == fingerprint
    assert (
        dbt_parse.project_fingerprint({**profile, "TICKETOPS_DBT_TESTS_SINCE": "2025-01-01"}) == fingerprint
    )
    assert dbt_parse.project_fingerprint({**profile, "TICKETOPS_PG_DBNAME": "b"}) != fingerprint
    assert dbt_parse.partial_parse_file(profile) != dbt_parse.partial_parse_file(
        {**profile, "TICKETOPS_PG_DBNAME": "b"}
    )
    assert "x" not in dbt_parse.partial_parse_file(profile).name

    manifest = dbt_service.prepare_manifest()
    stamp = manifest.stat().st_mtime_ns
    assert dbt_service.prepare_manifest() == manifest
    assert manifest.stat().st_mtime_ns == stamp, "an unchanged project must not be parsed again"

    # Another parse behind its back (e.g. `dagster-dbt project prepare-and-package`): prepared again.
    os.utime(manifest, ns=(stamp + 10**9, stamp + 10**9))
    dbt_service.prepare_manifest()
    assert manifest.stat().st_mtime_ns != stamp + 10**9
