"""Import help-desk CSV exports (plain or gzip) through a column mapping.

Row-level problems never stop an import: the row goes to the quarantine frame with a reason code
(``blank_text``, ``unparseable_date``, ``field_count_mismatch``, ``invalid_encoding``, ``malformed_csv``,
``missing_id``, ``duplicate_id``, ``unreadable_text``) and the rest loads. Only a file that cannot be read as a whole (missing, not
text/CSV, no header, a mapped column absent, an unknown or undetectable encoding) raises
``SourceReadError``, before anything is written.

Encoding: ``ColumnMapping.encoding``, or detected when it is None (``detect_encoding``: UTF-8
when the file is UTF-8, a few corrupt lines aside; otherwise charset-normalizer's guess, e.g.
cp1252). The file is decoded one physical line at a time. A line with bytes invalid in that
encoding rejects only the record it belongs to (``invalid_encoding``; the stored raw record shows
U+FFFD for the bad bytes), because guessing another encoding per line would silently corrupt
text. An undecodable header means the whole file is in another encoding, which raises.
Splitting on line breaks before decoding is safe for UTF-8 and single-byte encodings (UTF-16
files look binary and are refused).

Delimiter: ``ColumnMapping.delimiter``, or sniffed when it is None (``sniff_delimiter``).

Mojibake (UTF-8 text once decoded as cp1252, ``CafÃ©`` or ``æ’¤å›ž``) is repaired with ftfy
field by field; ``ImportBatch.repaired`` counts the imported rows it changed. A row whose title or
body is still unreadable afterwards (U+FFFD, control characters, mojibake ftfy cannot undo) is
quarantined as ``unreadable_text``.

Source and ticket ids: the source is ``csv:<name>``; ``<name>`` is the caller's, or by default
``<file name>@<8 hex digits of sha256(resolved path)>`` so equally named files in different
folders stay apart (``sources.store.csv_source_name`` keeps sources imported before this rule).
A ticket's id is ``<source>:<id column>``, or ``<source>:<digest of the row as read>`` without an
id column; the digest is taken before mojibake repair, so repairing never re-keys a row.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import charset_normalizer
import ftfy
import ftfy.badness
import polars as pl

from ticket_assets.core.labels import check_target_name, display_label, normalize_label, normalize_urgency
from ticket_assets.core.language import detect_languages
from ticket_assets.sources.frame import REJECTED_SCHEMA, UTC_DATETIME, conform, empty_rejected
from ticket_assets.sources.text import text_hash_series

MAX_RAW_RECORD_CHARS = 10_000  # keep one pathological row from bloating the quarantine
_SNIFF_BYTES = 8192
DELIMITERS = (",", ";", "\t", "|")
_SNIFF_RECORDS = 200
_DETECT_SAMPLE_BYTES = 256 * 1024  # non-ASCII lines given to charset-normalizer
_CHAOS_TIE = 0.01
_LANGUAGE_BATCH = 2000  # tickets between progress reports
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")

csv.field_size_limit(16 * 1024 * 1024)


LABEL_FIELD = "label:"  # field name prefix of a routing target's column


class SourceReadError(Exception):
    """The file cannot be imported at all; nothing was written."""


@dataclass(frozen=True)
class ColumnMapping:
    text_col: str
    title_col: str | None = None
    topic_col: str | None = None
    urgency_col: str | None = None
    id_col: str | None = None
    created_col: str | None = None
    channel_col: str | None = None
    delimiter: str | None = None  # None: sniffed from the first records
    encoding: str | None = None  # None: detected (see the module docstring)
    date_format: str | None = None  # strptime format; default: ISO 8601 (date, time and offset optional)
    # Routing targets: (target name, CSV column) pairs, e.g. ("assignment_group", "Assigned Group").
    label_cols: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names = [name for name, _ in self.label_cols]
        for name in names:
            check_target_name(name)
        if len(set(names)) != len(names):
            raise ValueError(f"label target names must be distinct, got {names}")

    def mapped(self) -> dict[str, str]:
        """Ticket field -> CSV column for every mapped column."""
        fields = {
            "body": self.text_col,
            "title": self.title_col,
            "topic": self.topic_col,
            "urgency": self.urgency_col,
            "id": self.id_col,
            "created": self.created_col,
            "channel": self.channel_col,
            **{LABEL_FIELD + name: column for name, column in self.label_cols},
        }
        return {field: column for field, column in fields.items() if column}


@dataclass(frozen=True)
class ImportBatch:
    valid: pl.DataFrame  # the ticket frame contract (frame.TICKET_SCHEMA)
    rejected: pl.DataFrame  # source, row_ref, reason, raw_record
    source: str = ""
    encoding: str = "utf-8"  # as given or detected
    delimiter: str = ","  # as given or sniffed
    repaired: int = 0  # imported rows whose text ftfy repaired

    @property
    def read(self) -> int:
        return self.valid.height + self.rejected.height

    def reasons(self) -> dict[str, int]:
        counts = self.rejected.group_by("reason").len().sort("reason")
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))


@dataclass
class _Records:
    """Parsed records, column-wise, with the line each one started on."""

    header: list[str]
    rows: list[list[str]]  # as read: the content digest (ticket id) is taken from these
    lines: list[int]
    raw: list[str]
    rejected: list[tuple[int, str, str]]  # (line, reason, raw record)
    encoding: str
    delimiter: str
    fixed: list[list[str]] = dataclasses.field(default_factory=list)  # rows after mojibake repair
    repaired: list[bool] = dataclasses.field(default_factory=list)  # which rows the repair changed


# --- reading --------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise SourceReadError(f"{path}: file not found")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceReadError(f"{path}: not a readable gzip file ({exc})") from None
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise SourceReadError(
            f"{path}: looks binary (NUL bytes), not a CSV text file (UTF-16 is not supported)"
        )
    return data


_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def detect_encoding(path: Path, data: bytes) -> str:
    """'utf-8' unless the file is clearly in another encoding; then charset-normalizer's guess.

    A file whose non-ASCII lines are mostly valid UTF-8 stays UTF-8: its few undecodable lines
    are corrupt rows to quarantine, not a sign of another encoding (valid multi-byte UTF-8 almost
    never occurs by chance in a legacy encoding).
    """
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    utf8_lines, other_lines = 0, []
    for line in data.splitlines():
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8_lines += bool(_UTF8_MULTIBYTE.search(line))
        except UnicodeDecodeError:
            other_lines.append(line)
    if utf8_lines >= len(other_lines):
        return "utf-8"
    sample = b"\n".join(other_lines)[:_DETECT_SAMPLE_BYTES]
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        raise SourceReadError(
            f"{path}: cannot tell the file's encoding (not UTF-8); pass --encoding, e.g. cp1252 or latin-1"
        )
    best = min(matches, key=lambda match: match.chaos)
    # Short samples read equally well in several code pages (cp1250 turns 'ñ' into 'ń'): cp1252,
    # what Western Windows and Excel write, wins every tie.
    if any(m.encoding == "cp1252" and m.chaos <= best.chaos + _CHAOS_TIE for m in matches):
        return "cp1252"
    return codecs.lookup(best.encoding).name


def _check_encoding(path: Path, encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise SourceReadError(
            f"{path}: unknown encoding {encoding!r} (e.g. utf-8, cp1252, latin-1)"
        ) from None


def sniff_delimiter(lines: list[str]) -> str:
    """The candidate that splits the header into several columns and the most records like it.

    csv.Sniffer guesses from character frequencies and is easily fooled by commas inside free
    text; parsing the first records with each candidate and counting the ones whose width
    matches the header's is slower but rarely wrong. One column whatever the delimiter: ','.
    """
    sample = lines[: _SNIFF_RECORDS * 4]
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        reader = csv.reader(iter(sample), delimiter=delimiter)
        try:
            header = next(reader)
            widths = [len(row) for row, _ in zip(reader, range(_SNIFF_RECORDS), strict=False) if row]
        except (StopIteration, csv.Error):
            continue
        if len(header) < 2:
            continue
        score = (sum(width == len(header) for width in widths) / max(len(widths), 1), len(header))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _decoded_lines(data: bytes, encoding: str, bad_lines: set[int]) -> Iterator[str]:
    """Physical lines decoded one by one; numbers (1-based) of undecodable ones go to ``bad_lines``."""
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            text = line.decode(encoding)
        except UnicodeDecodeError:
            bad_lines.add(number)
            text = line.decode(encoding, errors="replace")
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield text.replace("\x00", "")  # PostgreSQL text cannot hold NUL


def _parse_records(path: Path, data: bytes, mapping: ColumnMapping) -> _Records:
    encoding = _check_encoding(path, mapping.encoding) if mapping.encoding else detect_encoding(path, data)
    bad_lines: set[int] = set()
    lines = list(_decoded_lines(data, encoding, bad_lines))
    delimiter = mapping.delimiter or sniff_delimiter(lines)
    reader = csv.reader(iter(lines), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise SourceReadError(f"{path}: empty file, no header row") from None
    except csv.Error as exc:
        raise SourceReadError(f"{path}: header is not valid CSV ({exc})") from None
    if any(number <= reader.line_num for number in bad_lines):
        raise SourceReadError(
            f"{path}: header is not valid {encoding}; is the file in another encoding? (see --encoding)"
        )
    header = [name.strip() for name in header]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise SourceReadError(f"{path}: the header repeats column(s) {', '.join(map(repr, duplicated))}")
    _check_columns(path, header, mapping)

    records = _Records(
        header=header, rows=[], lines=[], raw=[], rejected=[], encoding=encoding, delimiter=delimiter
    )
    width = len(header)
    last_line = reader.line_num  # lines consumed so far (1-based numbers of the file)
    offset = 0  # lines consumed before the current reader started
    while True:
        first_line = last_line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # Typically an unbalanced quote that would swallow the rest of the file: quarantine
            # just its first line and resume parsing on the next one.
            records.rejected.append((first_line, "malformed_csv", _raw_record(lines, first_line, first_line)))
            offset = last_line = first_line
            reader = csv.reader(iter(lines[offset:]), delimiter=delimiter, strict=True)
            continue
        last_line = offset + reader.line_num
        if not fields:  # blank line between records
            continue
        raw = _raw_record(lines, first_line, last_line)
        if bad_lines and not bad_lines.isdisjoint(range(first_line, last_line + 1)):
            records.rejected.append((first_line, "invalid_encoding", raw))
        elif len(fields) != width:
            records.rejected.append((first_line, "field_count_mismatch", raw))
        else:
            records.rows.append(fields)
            records.lines.append(first_line)
            records.raw.append(raw)
    return records


def _raw_record(lines: list[str], first_line: int, last_line: int) -> str:
    """The record's text as it appears in the file (all of its physical lines)."""
    return "".join(lines[first_line - 1 : last_line]).rstrip("\r\n")[:MAX_RAW_RECORD_CHARS]


def _check_columns(path: Path, header: list[str], mapping: ColumnMapping) -> None:
    options = {
        "body": "text_col",
        "title": "title_col",
        "topic": "topic_col",
        "urgency": "urgency_col",
        "id": "id_col",
        "created": "created_col",
        "channel": "channel_col",
    }
    for field, column in mapping.mapped().items():
        if column not in header:
            shown = ", ".join(header[:20]) + (" ..." if len(header) > 20 else "")
            option = options.get(field) or f"label-col {field.removeprefix(LABEL_FIELD)}"
            raise SourceReadError(
                f"{path}: column {column!r} (mapped as {option}) not found; the header has: {shown}"
            )


# --- validation and shaping -----------------------------------------------------------------


def parse_timestamp(value: str, date_format: str | None = None) -> datetime | None:
    """A UTC datetime, or None when ``value`` is not a date. Naive values are taken as UTC."""
    text = value.strip()
    try:
        if date_format:
            parsed = datetime.strptime(text, date_format)
        else:
            if len(text) >= 10 and text[4] == "/" and text[7] == "/":  # 2025/01/31: unambiguous
                text = text[:4] + "-" + text[5:7] + "-" + text[8:]
            parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _blank_to_null(column: str) -> pl.Expr:
    stripped = pl.col(column).str.strip_chars()
    return pl.when(stripped == "").then(None).otherwise(stripped).alias(column)


def _mapped_labels(values: pl.Series, normalise: Callable[[str], str | None]) -> pl.Series:
    """Normalise labels once per distinct value (exports repeat a handful of labels)."""
    lookup = {value: normalise(value) for value in values.drop_nulls().unique().to_list()}
    return values.replace_strict(lookup, default=None, return_dtype=pl.String)


def repair_mojibake(rows: list[list[str]]) -> tuple[list[list[str]], list[bool]]:
    """Rows with ftfy's encoding repair applied to every field, and which rows it changed.

    Only ``fix_encoding``: the other ftfy fixes (quotes, HTML entities, width) would rewrite text
    that is not broken. ASCII cannot be mojibake, so most fields skip ftfy entirely.
    """
    fixed_rows, changed = [], []
    for row in rows:
        fixed = [field if field.isascii() else ftfy.fix_encoding(field) for field in row]
        fixed_rows.append(fixed)
        changed.append(fixed != row)
    return fixed_rows, changed


def is_unreadable(text: str | None) -> bool:
    """True when text still holds U+FFFD, control characters or mojibake (checked after repair)."""
    if not text or text.isascii() and text.isprintable():
        return False
    return bool(_CONTROL.search(text.replace("\t", " ").replace("\n", " ").replace("\r", " "))) or (
        ftfy.badness.is_bad(text)
    )


def _fields_frame(records: _Records, mapping: ColumnMapping) -> pl.DataFrame:
    """One row per parsed record: the mapped fields (repaired, blank -> null), line, raw text, position."""
    columns = {field: records.header.index(column) for field, column in mapping.mapped().items()}
    frame = pl.DataFrame(
        {
            **{field: [row[i] for row in records.fixed] for field, i in columns.items()},
            "line": records.lines,
            "raw": records.raw,
            "position": range(len(records.rows)),
            "repaired": records.repaired,
        },
        schema={
            **dict.fromkeys(columns, pl.String),
            "line": pl.Int64,
            "raw": pl.String,
            "position": pl.Int64,
            "repaired": pl.Boolean,
        },
    )
    frame = frame.with_columns(_blank_to_null(field) for field in columns)
    for field in ("title", "topic", "urgency", "id", "created", "channel"):
        if field not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(field))
    created = [
        parse_timestamp(value, mapping.date_format) if value is not None else None
        for value in frame["created"].to_list()
    ]
    return frame.with_columns(created_at=pl.Series(created, dtype=UTC_DATETIME))


def default_source_name(path: str | Path) -> str:
    """``<file name>@<8 hex of sha256(resolved path)>``: readable, and distinct per folder."""
    resolved = Path(path).resolve()
    return f"{resolved.name}@{hashlib.sha256(str(resolved).encode('utf-8')).hexdigest()[:8]}"


def read_csv_tickets(
    path: str | Path,
    mapping: ColumnMapping,
    source_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportBatch:
    """Parse and validate a CSV export into valid tickets and quarantined rows. Writes nothing.

    ``progress(done, total)`` follows language detection, the slow step (~0.2-0.3 ms a ticket).
    """
    path = Path(path)
    source = f"csv:{source_name or default_source_name(path)}"
    records = _parse_records(path, _read_bytes(path), mapping)
    records.fixed, records.repaired = repair_mojibake(records.rows)
    frame = _fields_frame(records, mapping).with_columns(
        reason=pl.when(pl.col("body").is_null())
        .then(pl.lit("blank_text"))
        .when(pl.col("created").is_not_null() & pl.col("created_at").is_null())
        .then(pl.lit("unparseable_date"))
        .when(pl.lit(mapping.id_col is not None) & pl.col("id").is_null())
        .then(pl.lit("missing_id"))
        .when(
            pl.col("title")
            .map_elements(is_unreadable, return_dtype=pl.Boolean, skip_nulls=True)
            .fill_null(False)
            | pl.col("body")
            .map_elements(is_unreadable, return_dtype=pl.Boolean, skip_nulls=True)
            .fill_null(False)
        )
        .then(pl.lit("unreadable_text"))
    )
    good = frame.filter(pl.col("reason").is_null())
    good = good.with_columns(
        ticket_id=_ticket_ids(good, records, f"{source}:", by_id=mapping.id_col is not None)
    )
    # Exports repeat a ticket when it changed: the last row wins, earlier ones are quarantined.
    good = good.with_columns(
        reason=pl.when(pl.col("ticket_id").is_last_distinct()).then(None).otherwise(pl.lit("duplicate_id"))
    )
    rejected = pl.concat([frame.filter(pl.col("reason").is_not_null()), good.drop("ticket_id")]).filter(
        pl.col("reason").is_not_null()
    )
    good = good.filter(pl.col("reason").is_null())
    return ImportBatch(
        valid=_tickets(good, records, mapping, source, progress),
        rejected=_rejected(records, rejected, source),
        source=source,
        encoding=records.encoding,
        delimiter=records.delimiter,
        repaired=int(good["repaired"].sum()),
    )


def _ticket_ids(good: pl.DataFrame, records: _Records, prefix: str, by_id: bool) -> pl.Series:
    if by_id:
        return good.select(pl.format(prefix + "{}", pl.col("id"))).to_series()
    # No id column: the row's full content identifies it, so re-importing the file is idempotent.
    digests = [
        hashlib.sha256("\x1f".join(records.rows[i]).encode("utf-8")).hexdigest()[:32]
        for i in good["position"]
    ]
    return pl.Series([prefix + digest for digest in digests], dtype=pl.String)


def _extra_json(good: pl.DataFrame, records: _Records, mapping: ColumnMapping) -> pl.Series:
    """Unmapped columns are kept as a JSON object so nothing from the export is lost."""
    mapped = set(mapping.mapped().values())
    unmapped = [(i, name) for i, name in enumerate(records.header) if name not in mapped]
    if not unmapped:
        return pl.Series(["{}"] * good.height, dtype=pl.String)
    rows = records.fixed
    return pl.Series(
        [
            json.dumps({name: rows[p][i] for i, name in unmapped}, ensure_ascii=False)
            for p in good["position"]
        ],
        dtype=pl.String,
    )


def _labels_json(good: pl.DataFrame, mapping: ColumnMapping) -> pl.Series:
    """Routing labels as a JSON object per row: {target: label key}, blank values left out."""
    names = [name for name, _ in mapping.label_cols]
    if not names:
        return pl.Series(["{}"] * good.height, dtype=pl.String)
    keys = {name: _mapped_labels(good[LABEL_FIELD + name], normalize_label).to_list() for name in names}
    return pl.Series(
        [
            json.dumps({name: keys[name][i] for name in names if keys[name][i] is not None})
            for i in range(good.height)
        ],
        dtype=pl.String,
    )


def _languages(texts: list[str], progress: Callable[[int, int], None] | None) -> list[str | None]:
    languages: list[str | None] = []
    for offset in range(0, len(texts), _LANGUAGE_BATCH):
        languages += detect_languages(texts[offset : offset + _LANGUAGE_BATCH])
        if progress is not None:
            progress(len(languages), len(texts))
    return languages


def _tickets(
    good: pl.DataFrame,
    records: _Records,
    mapping: ColumnMapping,
    source: str,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    titles, bodies = good["title"], good["body"]
    languages = _languages(
        [f"{t} {b}" if t else b for t, b in zip(titles.to_list(), bodies.to_list(), strict=True)], progress
    )
    tickets = pl.DataFrame(
        {
            "ticket_id": good["ticket_id"],
            "source": pl.Series([source] * good.height, dtype=pl.String),
            "title": titles,
            "body": bodies,
            # The export's own spelling: dbt derives the key (normalise_label) and keeps this as
            # the display name people see.
            "topic": _mapped_labels(good["topic"], display_label),
            "urgency": _mapped_labels(good["urgency"], normalize_urgency),
            "channel": _mapped_labels(good["channel"], normalize_label),
            "language": pl.Series(languages, dtype=pl.String),
            "created_at": good["created_at"],
            "text_hash": text_hash_series(titles, bodies),
            "extra": _extra_json(good, records, mapping),
            "labels": _labels_json(good, mapping),
        }
    )
    return conform(tickets)


def _rejected(records: _Records, rejected_rows: pl.DataFrame, source: str) -> pl.DataFrame:
    parse_level = pl.DataFrame(
        {
            "line": [line for line, _, _ in records.rejected],
            "reason": [reason for _, reason, _ in records.rejected],
            "raw_record": [raw for _, _, raw in records.rejected],
        },
        schema={"line": pl.Int64, "reason": pl.String, "raw_record": pl.String},
    )
    value_level = rejected_rows.select("line", "reason", pl.col("raw").alias("raw_record"))
    rejected = pl.concat([parse_level, value_level]).sort("line")
    if rejected.is_empty():
        return empty_rejected()
    return rejected.select(
        pl.lit(source).alias("source"),
        pl.col("line").cast(pl.String).alias("row_ref"),
        "reason",
        "raw_record",
    ).cast(REJECTED_SCHEMA)
