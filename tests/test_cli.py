"""The `ticketops` command line against a real PostgreSQL (typer's runner, same process)."""

from __future__ import annotations

import psycopg
from typer.testing import CliRunner

from ticket_assets.cli import app

runner = CliRunner()


def test_ingest_commands_load_idempotently_and_report_quarantine(
    platform_env, fresh_db, monkeypatch, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    first = runner.invoke(app, ["ingest", "synthetic", "--n", "60", "--seed", "5"])
    again = runner.invoke(app, ["ingest", "synthetic", "--n", "60", "--seed", "5"])
    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output

    export = tmp_path / "export.csv"
    export.write_text(
        "id,subject,body,priority,created\n"
        "A-1,VPN down,The VPN drops every few minutes,P1,2025-03-01T09:00:00Z\n"
        "A-2,,   ,P3,2025-03-01T10:00:00Z\n"
        "A-3,Printer,Paper jam on floor 2,P4,not a date\n"
    )
    imported = runner.invoke(
        app,
        [
            "ingest",
            "csv",
            str(export),
            "--text-col",
            "body",
            "--title-col",
            "subject",
            "--urgency-col",
            "priority",
            "--id-col",
            "id",
            "--created-col",
            "created",
        ],
    )
    assert imported.exit_code == 0, imported.output
    assert "quarantined" in imported.output
    with psycopg.connect(fresh_db) as conn:
        assert (
            conn.execute("select count(*) from raw.tickets where source like 'synthetic%'").fetchone()[0]
            == 60
        )
        assert conn.execute("select urgency from raw.tickets where ticket_id like 'csv:%'").fetchall() == [
            ("critical",)
        ]
        reasons = {r[0] for r in conn.execute("select reason from raw.tickets_rejected").fetchall()}
    assert reasons == {"blank_text", "unparseable_date"}


def test_unreadable_file_fails_clearly_and_writes_nothing(platform_env, fresh_db, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    missing_column = tmp_path / "tickets.csv"
    missing_column.write_text("id,description\n1,hello\n")

    result = runner.invoke(app, ["ingest", "csv", str(missing_column), "--text-col", "body"])

    assert result.exit_code == 2
    assert "body" in result.output
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("select count(*) from raw.tickets").fetchone()[0] == 0


def test_unknown_scenario_is_rejected_before_touching_the_store(platform_env):
    result = runner.invoke(app, ["ingest", "synthetic", "--n", "10", "--scenario", "nope"])
    assert result.exit_code == 2
    assert "new_topic_surge" in result.output
