"""Write ticket frames to ``raw.tickets`` / ``raw.tickets_rejected`` idempotently, and the ingest entry points.

Each batch is COPYed (CSV, written by polars) into a temporary table, then merged with one
``insert ... on conflict do update ... where <something changed>``: re-running an import inserts
and updates nothing, and ``updated_at`` only moves for rows whose content really changed, which
is what dbt's incremental models key on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import psycopg
from psycopg.types.json import Jsonb

from ticket_assets.services.postgres import connect
from ticket_assets.sources.frame import REJECTED_COLUMNS, REJECTED_SCHEMA, TICKET_COLUMNS, conform
from ticket_assets.sources.outage_burst import generate_outage_burst
from ticket_assets.sources.synthetic import generate_tickets
from ticket_assets.sources.text import text_hash_series

if TYPE_CHECKING:
    from ticket_assets.sources.csv_import import ColumnMapping

Progress = Callable[[int, int], None]


BATCH_ROWS = 100_000  # bounds the CSV buffer (~40 MB) and lets the CLI show progress

_DATA_COLUMNS = [c for c in TICKET_COLUMNS if c != "ticket_id"]
_COLUMN_LIST = ", ".join(TICKET_COLUMNS)
_CHANGED = f"({', '.join(f't.{c}' for c in _DATA_COLUMNS)}) is distinct from ({', '.join(f'excluded.{c}' for c in _DATA_COLUMNS)})"

_TICKETS_STAGE = """
create temp table if not exists tickets_stage (
    ticket_id text, source text, title text, body text, topic text, urgency text, channel text,
    department text, requester text, language text, created_at timestamptz, text_hash text, extra jsonb,
    labels jsonb
) on commit delete rows
"""
_MERGE_TICKETS = f"""
with merged as (
    insert into raw.tickets as t ({_COLUMN_LIST})
    select {_COLUMN_LIST} from tickets_stage
    on conflict (ticket_id) do update set
        {", ".join(f"{c} = excluded.{c}" for c in _DATA_COLUMNS)},
        updated_at = now()
    where {_CHANGED}
    returning (xmax = 0) as inserted
)
select count(*) filter (where inserted), count(*) filter (where not inserted) from merged
"""
_REJECTED_STAGE = """
create temp table if not exists rejected_stage (source text, row_ref text, reason text, raw_record text)
on commit delete rows
"""
_MERGE_REJECTED = """
insert into raw.tickets_rejected as r (source, row_ref, reason, raw_record)
select source, row_ref, reason, raw_record from rejected_stage
on conflict (source, row_ref) do update set
    reason = excluded.reason, raw_record = excluded.raw_record, rejected_at = now()
where (r.reason, r.raw_record) is distinct from (excluded.reason, excluded.raw_record)
"""


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int


@dataclass
class IngestReport:
    read: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)
    source: str | None = None
    encoding: str | None = None  # CSV imports: as given or detected
    delimiter: str | None = None  # CSV imports: as given or sniffed
    repaired: int = 0  # CSV imports: rows whose mojibake was repaired
    load_id: int | None = None  # its row in raw.ingest_loads

    def details(self) -> dict[str, object]:
        """What the load log keeps beside the counts (CSV imports: how the file was read)."""
        details: dict[str, object] = {"quarantine_reasons": self.reasons}
        if self.encoding is not None:
            details.update(encoding=self.encoding, delimiter=self.delimiter, repaired_rows=self.repaired)
        return details


def record_load(conn: psycopg.Connection, report: IngestReport) -> int:
    """Log a load in ``raw.ingest_loads`` (call inside the load's transaction: a committed load is
    always logged, a rolled-back one never); returns its ``load_id``."""
    return conn.execute(
        """
        insert into raw.ingest_loads
            (source, rows_read, inserted, updated, unchanged, quarantined, details)
        values (%s, %s, %s, %s, %s, %s, %s)
        returning load_id
        """,
        (
            report.source,
            report.read,
            report.inserted,
            report.updated,
            report.unchanged,
            report.quarantined,
            Jsonb(report.details()),
        ),
    ).fetchone()[0]


def _load_generated(url: str, frame: pl.DataFrame, source: str, progress: Progress | None) -> IngestReport:
    """Upsert generated tickets and log the load, in one transaction."""
    with connect(url) as conn, conn.transaction():
        result = upsert_tickets(conn, frame, progress=progress)
        report = IngestReport(read=frame.height, quarantined=0, source=source, **vars(result))
        report.load_id = record_load(conn, report)
    return report


def _copy_csv(cursor: psycopg.Cursor, table: str, columns: list[str], frame: pl.DataFrame) -> None:
    # polars quotes empty strings and leaves nulls bare, which is exactly COPY's CSV convention.
    with cursor.copy(f"copy {table} ({', '.join(columns)}) from stdin (format csv)") as copy:
        copy.write(frame.write_csv(include_header=False))


def _complete(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill the derived columns a caller may have left out (hash, empty extra)."""
    if frame["text_hash"].null_count():
        frame = frame.with_columns(
            text_hash=pl.coalesce(pl.col("text_hash"), text_hash_series(frame["title"], frame["body"]))
        )
    return frame.with_columns(pl.col("extra").fill_null("{}"), pl.col("labels").fill_null("{}"))


def upsert_tickets(
    conn: psycopg.Connection,
    df: pl.DataFrame,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> UpsertResult:
    """Merge a ticket frame into ``raw.tickets`` by ``ticket_id`` in one transaction."""
    frame = _complete(conform(df))
    if frame["ticket_id"].null_count():
        raise ValueError("ticket_id must not be null")
    if frame["ticket_id"].is_duplicated().any():
        raise ValueError("ticket_id must be unique within one upsert")
    inserted = updated = 0
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(_TICKETS_STAGE)
        for offset in range(0, frame.height, batch_rows):
            batch = frame.slice(offset, batch_rows)
            cursor.execute("truncate tickets_stage")
            _copy_csv(cursor, "tickets_stage", TICKET_COLUMNS, batch)
            batch_inserted, batch_updated = cursor.execute(_MERGE_TICKETS).fetchone()
            inserted += batch_inserted
            updated += batch_updated
            if progress is not None:
                progress(offset + batch.height, frame.height)
    return UpsertResult(inserted=inserted, updated=updated, unchanged=frame.height - inserted - updated)


def quarantine_rows(conn: psycopg.Connection, rejected_df: pl.DataFrame) -> int:
    """Upsert rejected rows on (source, row_ref); returns how many rows the batch quarantined."""
    if rejected_df.is_empty():
        return 0
    frame = (
        rejected_df.select(REJECTED_COLUMNS).cast(REJECTED_SCHEMA).unique(["source", "row_ref"], keep="last")
    )
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(_REJECTED_STAGE)
        _copy_csv(cursor, "rejected_stage", REJECTED_COLUMNS, frame)
        cursor.execute(_MERGE_REJECTED)
    return frame.height


def ingest_synthetic(
    url: str,
    n: int,
    seed: int,
    scenario: str | None = None,
    start: date | None = None,
    days: int = 90,
    progress: Progress | None = None,
    scenario_start: date | None = None,
) -> IngestReport:
    """Generate ``n`` synthetic tickets and upsert them (same arguments again -> nothing changes)."""
    frame = generate_tickets(
        n, seed, scenario=scenario, start=start, days=days, scenario_start=scenario_start
    )
    return _load_generated(url, frame, "synthetic", progress)


def ingest_outage_burst(
    url: str,
    n: int,
    start: datetime,
    minutes: float,
    seed: int,
    service: str = "VPN",
    topic: str = "network",
    progress: Progress | None = None,
) -> IngestReport:
    """``n`` tickets reporting one ``service`` outage within ``minutes`` of ``start`` (idempotent per seed)."""
    frame = generate_outage_burst(n, start, minutes=minutes, seed=seed, service=service, topic=topic)
    return _load_generated(url, frame, "outage-burst", progress)


def csv_source_name(conn: psycopg.Connection, path: str | Path) -> str:
    """The default source name of a CSV file: ``default_source_name`` unless the file was imported
    before sources were named after their path.

    Such a file's tickets live under ``csv:<file name>``. The first re-import of a file of that
    name adopts the old source (recorded in ``raw.csv_sources``), so its ticket ids stay the same;
    an equally named file from another folder then gets its own ``<file name>@<hash>`` source.
    """
    from ticket_assets.sources.csv_import import default_source_name

    resolved = str(Path(path).resolve())
    legacy = Path(resolved).name
    owner = conn.execute(
        "select resolved_path from raw.csv_sources where source = %s", (f"csv:{legacy}",)
    ).fetchone()
    if owner is not None:
        return legacy if owner[0] == resolved else default_source_name(resolved)
    has_legacy = conn.execute(
        "select exists (select 1 from raw.tickets where source = %s)", (f"csv:{legacy}",)
    ).fetchone()[0]
    return legacy if has_legacy else default_source_name(resolved)


def _register_source(conn: psycopg.Connection, source: str, path: str | Path) -> None:
    conn.execute(
        """
        insert into raw.csv_sources (source, resolved_path) values (%s, %s)
        on conflict (source) do update set resolved_path = excluded.resolved_path, last_imported_at = now()
        """,
        (source, str(Path(path).resolve())),
    )


def ingest_csv(
    url: str,
    path: str | Path,
    mapping: ColumnMapping,
    progress: Progress | None = None,
    source_name: str | None = None,
    read_progress: Progress | None = None,
) -> IngestReport:
    """Import a CSV export: valid rows upserted, malformed rows quarantined, both in one transaction.

    The file is read and validated completely first, so an unreadable file (``SourceReadError``)
    writes nothing. Without ``source_name`` the source is ``csv_source_name``'s. ``read_progress``
    follows the reading (language detection), ``progress`` the writing.
    """
    # Here, not at the top: the CSV reader's text repair and encoding detection cost a tenth of a
    # second to import, which every synthetic load would pay.
    from ticket_assets.sources.csv_import import read_csv_tickets

    if source_name is None:
        with connect(url) as conn:
            source_name = csv_source_name(conn, path)
    batch = read_csv_tickets(path, mapping, source_name=source_name, progress=read_progress)
    with connect(url) as conn, conn.transaction():
        result = upsert_tickets(conn, batch.valid, progress=progress)
        quarantined = quarantine_rows(conn, batch.rejected)
        _register_source(conn, batch.source, path)
        report = IngestReport(
            read=batch.read,
            quarantined=quarantined,
            reasons=batch.reasons(),
            source=batch.source,
            encoding=batch.encoding,
            delimiter=batch.delimiter,
            repaired=batch.repaired,
            **vars(result),
        )
        report.load_id = record_load(conn, report)
    return report
