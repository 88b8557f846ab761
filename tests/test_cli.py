"""The `ticketops` command line against a real PostgreSQL (typer's runner, same process)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import psycopg
from typer.testing import CliRunner

from ticket_assets.cli import app
from ticket_assets.core.paths import REPO_ROOT

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


# The installed command in its own process: what a user sees in a terminal ---------------------------
def _ticketops(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ticket_assets.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def _one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_user_errors_are_one_line_with_exit_code_2(platform_env, fresh_db, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", fresh_db)

    line = _one_clear_line(_ticketops("model", "promote", "999"))
    assert "no version 999" in line and "none registered yet" in line
    assert "must be a number" in _one_clear_line(_ticketops("model", "promote", "abc"))
    assert "no champion to roll back" in _one_clear_line(_ticketops("model", "rollback"))

    missing = tmp_path / "nonexistent.csv"
    line = _one_clear_line(_ticketops("evaluate", str(missing), "--text-col", "t", "--topic-col", "c"))
    assert line == f"error: cannot evaluate {missing}: file not found"
    line = _one_clear_line(_ticketops("evaluate", str(tmp_path), "--text-col", "t", "--topic-col", "c"))
    assert "not a file" in line

    line = _one_clear_line(_ticketops("materialize", "-s", "key:nope"))
    assert "key:nope" in line


def test_every_option_has_help_and_the_readme_names_every_command():
    from typer.main import get_command

    root = get_command(app)
    readme = (REPO_ROOT / "README.md").read_text()
    undocumented, missing_help = [], []

    def walk(command, path):
        if getattr(command, "commands", None):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
            return
        if f"ticketops {' '.join(path)}" not in readme:
            undocumented.append(" ".join(path))
        for param in command.params:
            if param.param_type_name == "option" and not param.help and param.name != "help":
                missing_help.append(f"{' '.join(path)} {param.opts[0]}")
            if param.param_type_name == "option":
                for opt in param.opts:
                    if opt.startswith("--") and opt not in readme:
                        undocumented.append(f"{' '.join(path)} {opt}")

    walk(root, [])
    assert not missing_help, missing_help
    assert not undocumented, undocumented

    shown = _ticketops("ingest", "synthetic", "--help")
    assert shown.returncode == 0
    from ticket_assets.sources.synthetic import SCENARIOS

    flat = " ".join(shown.stdout.split())
    assert all(name in flat for name in SCENARIOS), shown.stdout


def test_outage_burst_command_loads_one_burst_idempotently(platform_env, fresh_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    args = [
        "ingest",
        "outage-burst",
        "--n",
        "12",
        "--minutes",
        "20",
        "--at",
        "2026-01-29T09:00",
        "--seed",
        "3",
    ]
    first = runner.invoke(app, args)
    again = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    with psycopg.connect(fresh_db) as conn:
        count, earliest, latest, services = conn.execute(
            "select count(*), min(created_at), max(created_at), array_agg(distinct extra ->> 'service')"
            " from raw.tickets where source = 'synthetic:outage_burst:seed=3'"
        ).fetchone()
    assert count == 12 and services == ["VPN"]
    assert (
        earliest >= datetime(2026, 1, 29, 9, 0, tzinfo=UTC) and (latest - earliest).total_seconds() <= 20 * 60
    )

    bad = runner.invoke(app, ["ingest", "outage-burst", "--at", "yesterday"])
    assert bad.exit_code == 2 and "--at" in bad.output
