"""Real help-desk exports through `ticketops ingest csv`: encodings, delimiters, mojibake, sources.

Everything runs against a real PostgreSQL and the real CLI (typer's runner, same process).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from typer.testing import CliRunner

from ticket_assets.cli import app
from ticket_assets.services.postgres import connect
from ticket_assets.sources.csv_import import (
    ColumnMapping,
    default_source_name,
    is_unreadable,
    read_csv_tickets,
    repair_mojibake,
    sniff_delimiter,
)
from ticket_assets.sources.store import ingest_csv, upsert_tickets

runner = CliRunner()

MULTILINGUAL = [
    ("1", "Imprimante", "Bonjour, mon imprimante ne fonctionne plus depuis ce matin, merci."),
    ("2", "Drucker", "Hallo, mein Drucker im zweiten Stock druckt nicht mehr. Grüße, Jürgen"),
    ("3", "Correo", "Hola, no puedo acceder a mi correo desde esta mañana, señor Muñoz."),
    ("4", "VPN", "Hi, the VPN drops every few minutes since the update, please help."),
]


def _mojibake(text: str) -> str:
    """What an export shows when UTF-8 bytes were decoded as cp1252 ('撤回' -> 'æ’¤å›ž')."""
    return text.encode("utf-8").decode("cp1252", errors="replace")


def _one_line(output: str) -> str:
    """The console wraps long lines at the terminal width."""
    return " ".join(output.split())


def _ingest(path: Path, *options: str):
    return runner.invoke(app, ["ingest", "csv", str(path), "--text-col", "body", *options])


@pytest.fixture()
def cli_db(platform_env, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    return fresh_db


def test_latin1_semicolon_export_imports_from_the_cli(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "latin1_export.csv"
    lines = ["id;subject;body"] + [";".join(row) for row in MULTILINGUAL]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))  # as old Excel writes it

    result = _ingest(path, "--id-col", "id", "--title-col", "subject")

    assert result.exit_code == 0, result.output
    assert "encoding cp1252, delimiter ';'" in _one_line(result.output)
    with psycopg.connect(cli_db) as conn:
        rows = conn.execute("select ticket_id, body, language from raw.tickets order by ticket_id").fetchall()
    source = f"csv:{default_source_name(path)}"
    assert rows == [
        (f"{source}:{i}", body, lang)
        for (i, _, body), lang in zip(MULTILINGUAL, "fr de es en".split(), strict=True)
    ]


def test_explicit_delimiter_and_encoding_are_used(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "tabbed.tsv"
    path.write_bytes("id\tbody\n1\tCafé machine broken, Zoë can't get coffee\n".encode("cp1252"))

    result = _ingest(path, "--id-col", "id", "--delimiter", "tab", "--encoding", "cp1252", "--source", "desk")

    assert result.exit_code == 0, result.output
    with psycopg.connect(cli_db) as conn:
        row = conn.execute("select ticket_id, source, body from raw.tickets").fetchone()
    assert row == ("csv:desk:1", "csv:desk", "Café machine broken, Zoë can't get coffee")


def test_mojibake_is_repaired_counted_and_the_unrepairable_quarantined(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "servicenow.csv"
    bodies = {
        "1": _mojibake("撤回 the e-mail sent to the wrong group"),
        "2": _mojibake("Café crème machine broken on floor 3"),
        "3": "Plain ASCII ticket, nothing to repair",
        "4": "Broken beyond repair: \ufffd\ufffd bytes were lost upstream",
        "5": "Control byte \x07 in the middle",
        # cp1252 has no character for byte 0x81 (from 'Á'): the byte is lost, ftfy cannot undo it.
        "6": _mojibake("Ángel cannot print"),
        "7": _mojibake(_mojibake("Grüße, doubly broken")),  # decoded wrongly twice: still repaired
    }
    assert bodies["1"].startswith("æ’¤å›ž")
    path.write_text("id,body\n" + "".join(f'{i},"{b}"\n' for i, b in bodies.items()), encoding="utf-8")

    result = _ingest(path, "--id-col", "id")

    assert result.exit_code == 0, result.output
    assert "mojibake repaired in 3 row(s)" in _one_line(result.output)
    with psycopg.connect(cli_db) as conn:
        stored = dict(conn.execute("select split_part(ticket_id, ':', 3), body from raw.tickets").fetchall())
        rejected = conn.execute(
            "select row_ref, reason from raw.tickets_rejected order by row_ref"
        ).fetchall()
    assert stored == {
        "1": "撤回 the e-mail sent to the wrong group",
        "2": "Café crème machine broken on floor 3",
        "3": "Plain ASCII ticket, nothing to repair",
        "7": "Grüße, doubly broken",
    }
    # row_ref is the line number: ids 4, 5 and 6 are on lines 5-7.
    assert rejected == [("5", "unreadable_text"), ("6", "unreadable_text"), ("7", "unreadable_text")]
    # The load is logged with the import's facts; the sensor reports it as raw/tickets' materialisation.
    from ticket_assets.defs.ingest import raw_ticket_loads
    from ticket_assets.defs.resources import PostgresResource

    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={"postgres": PostgresResource(database_url=cli_db)}
        )
        result = raw_ticket_loads(context)
    (event,) = result.asset_events
    assert event.asset_key == dg.AssetKey(["raw", "tickets"])
    metadata = {name: value.value for name, value in event.metadata.items()}
    assert metadata["repaired_rows"] == 3 and metadata["encoding"] == "utf-8"
    assert metadata["inserted"] == 4 and metadata["quarantined"] == 3


def test_same_file_name_in_two_folders_stays_apart(cli_db: str, tmp_path: Path) -> None:
    paths = []
    for folder, text in (("emea", "Printer jam in Paris"), ("apac", "Printer jam in Sydney")):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "export.csv"
        path.write_text(f"id,body\n1,{text}\n")
        paths.append(path)
        result = _ingest(path, "--id-col", "id")
        assert result.exit_code == 0, result.output

    with psycopg.connect(cli_db) as conn:
        rows = conn.execute("select source, body from raw.tickets order by body").fetchall()
        registered = dict(conn.execute("select source, resolved_path from raw.csv_sources").fetchall())
    assert rows == [
        (f"csv:{default_source_name(paths[0])}", "Printer jam in Paris"),
        (f"csv:{default_source_name(paths[1])}", "Printer jam in Sydney"),
    ]
    assert registered == {f"csv:{default_source_name(p)}": str(p.resolve()) for p in paths}


def test_a_file_imported_under_its_base_name_keeps_its_ticket_ids(cli_db: str, tmp_path: Path) -> None:
    """Imports made when sources were the file's base name are updated in place, not duplicated."""
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, other = tmp_path / "old" / "export.csv", tmp_path / "new" / "export.csv"
    old.write_text("id,body\n1,VPN down\n2,Outlook crashes\n")
    other.write_text("id,body\n1,Laptop will not boot\n")
    mapping = ColumnMapping(text_col="body", id_col="id")
    with connect(cli_db) as conn:  # what the importer wrote before: source = base name, no registry
        upsert_tickets(conn, read_csv_tickets(old, mapping, source_name="export.csv").valid)

    again = ingest_csv(cli_db, old, mapping)
    assert (again.source, again.inserted, again.unchanged) == ("csv:export.csv", 0, 2)
    elsewhere = ingest_csv(cli_db, other, mapping)
    assert (elsewhere.source, elsewhere.inserted) == (f"csv:{default_source_name(other)}", 1)
    with psycopg.connect(cli_db) as conn:
        ids = [row[0] for row in conn.execute("select ticket_id from raw.tickets order by ticket_id")]
    assert ids == sorted(["csv:export.csv:1", "csv:export.csv:2", f"csv:{default_source_name(other)}:1"])


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        (b"id,body\n1,hello\n", ["--encoding", "klingon"], "unknown encoding 'klingon'"),
        (b"id,body\n1," + bytes(range(0x80, 0x100)) * 4 + b"\n", [], "cannot tell the file's encoding"),
        (b"id,b\xe9dy\n1,hello\n", ["--encoding", "utf-8"], "header is not valid utf-8"),
        (b"id,body\n1,hello\n", ["--delimiter", ";;"], "--delimiter must be one character"),
        (b"id,body\n1,hello\n", ["--source", "  "], "--source must not be blank"),
    ],
    ids=["unknown-encoding", "undetectable", "wrong-encoding", "bad-delimiter", "blank-source"],
)
def test_bad_options_fail_in_one_line_and_write_nothing(
    cli_db: str, tmp_path: Path, content: bytes, options: list[str], message: str
) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    result = _ingest(path, *options)
    assert result.exit_code == 2
    assert message in _one_line(result.output)
    assert "Traceback" not in result.output
    with psycopg.connect(cli_db) as conn:
        exists = conn.execute("select to_regclass('raw.tickets')").fetchone()[0]
        assert not exists or conn.execute("select count(*) from raw.tickets").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("lines", "delimiter"),
    [
        (["id,body", "1,hello", "2,world"], ","),
        (["id;body;note", "1;VPN down, again;x", "2;Mail, slow;y"], ";"),  # commas inside the text
        (["id\tbody", "1\thello, world"], "\t"),
        (["id|body", "1|a;b;c"], "|"),
        (["body", "just one column, with a comma"], ","),
    ],
)
def test_delimiter_sniffing(lines: list[str], delimiter: str) -> None:
    assert sniff_delimiter([line + "\n" for line in lines]) == delimiter


def test_repair_only_touches_mojibake() -> None:
    rows = [["1", _mojibake("Grüße aus München")], ["2", "Grüße aus München"], ["3", "“quoted” &amp; ascii"]]
    fixed, changed = repair_mojibake(rows)
    assert fixed == [["1", "Grüße aus München"], ["2", "Grüße aus München"], ["3", "“quoted” &amp; ascii"]]
    assert changed == [True, False, False]
    assert not is_unreadable("Grüße aus München, 撤回, tab\tand newline\n")
    assert (
        is_unreadable("lost \ufffd byte") and is_unreadable("bell \x07") and is_unreadable("c1 \x85 control")
    )


def test_repair_does_not_re_key_rows_without_an_id_column(tmp_path: Path) -> None:
    """Ids from the row digest are taken on the text as read, so old imports of a file are updated."""
    path = tmp_path / "no_ids.csv"
    broken = _mojibake("Café machine broken")
    path.write_text(f"body,site\n{broken},Lyon\n", encoding="utf-8")
    batch = read_csv_tickets(path, ColumnMapping(text_col="body"), source_name="no_ids.csv")
    digest = hashlib.sha256(f"{broken}\x1fLyon".encode()).hexdigest()[:32]
    assert batch.valid.select("ticket_id", "body").row(0) == (
        f"csv:no_ids.csv:{digest}",
        "Café machine broken",
    )
    assert batch.repaired == 1
