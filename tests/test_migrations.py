"""Schema migrations on a real PostgreSQL: an old database is upgraded, the API refuses an old schema."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import temporary_database
from ticket_assets.services.migrations import (
    SchemaOutdatedError,
    check_schema,
    current_revision,
    head_revision,
    migrate,
)

BASELINE = "0001_baseline"


def _indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {
            row[0]
            for row in conn.execute("select indexname from pg_indexes where schemaname in ('ops', 'raw')")
        }


def test_an_old_database_gets_the_new_revision_and_keeps_its_rows(pg_server_url: str) -> None:
    with temporary_database(pg_server_url, "ticketops_mig") as url:
        migrate(url, BASELINE)
        assert current_revision(url) == BASELINE
        assert not {"feedback_updated_at_idx", "tickets_source_topic_idx"} & _indexes(url)
        with psycopg.connect(url) as conn:
            conn.execute(
                "insert into raw.tickets (ticket_id, source, body, text_hash) values ('t1', 'test', 'body', 'h')"
            )

        migrate(url)

        assert current_revision(url) == head_revision() != BASELINE
        # The raw_tickets asset's per-source counts read this index instead of every row.
        assert {"feedback_updated_at_idx", "tickets_source_topic_idx"} <= _indexes(url)
        with psycopg.connect(url) as conn:
            assert conn.execute("select count(*) from raw.tickets").fetchone()[0] == 1
        migrate(url)  # at head already: nothing to do, no error
        assert check_schema(url) == head_revision()


def test_a_database_from_before_migrations_is_adopted(pg_server_url: str) -> None:
    """Tables created by the old idempotent schema file (no alembic_version) upgrade in place."""
    baseline = importlib.import_module(f"ticket_assets.services.migrations.versions.{BASELINE}")
    with temporary_database(pg_server_url, "ticketops_mig") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(baseline.BASELINE_SQL)
        assert current_revision(url) is None
        migrate(url)
        assert current_revision(url) == head_revision()


def test_check_schema_names_both_revisions_in_one_line(pg_server_url: str) -> None:
    with temporary_database(pg_server_url, "ticketops_mig") as url:
        with pytest.raises(SchemaOutdatedError) as raised:
            check_schema(url)
        assert "no revision" in str(raised.value) and head_revision() in str(raised.value)
        migrate(url, BASELINE)
        with pytest.raises(SchemaOutdatedError, match=BASELINE):
            check_schema(url)


def test_the_api_refuses_to_start_on_an_unmigrated_database(pg_server_url: str, tmp_path: Path) -> None:
    with temporary_database(pg_server_url, "ticketops_mig") as url:
        migrate(url, BASELINE)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "TICKETOPS_DATA_DIR": str(tmp_path),
            "TICKETOPS_API_PORT": "0",
        }
        result = subprocess.run(
            [sys.executable, "-m", "serving"], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr
        assert lines == [
            f"ticketops API not started: database schema is at {BASELINE}, this code needs "
            f"{head_revision()}: run `ticketops migrate` first"
        ]
