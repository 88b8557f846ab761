"""``ticketops``: start the platform, run the asset graph, load tickets, manage models."""

from __future__ import annotations

import atexit
import functools
import gc
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ticket_assets.services.processes import spawn, stop

app = typer.Typer(
    help="TicketOps: a Dagster asset-graph platform that triages and answers IT support tickets.",
    no_args_is_help=True,
    add_completion=False,
)
ingest_app = typer.Typer(
    help="Load tickets into raw.tickets (idempotent: re-running adds nothing).", no_args_is_help=True
)
model_app = typer.Typer(help="Inspect and move the registered model's aliases.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
app.add_typer(model_app, name="model")
demo_app = typer.Typer(help="Guided end-to-end stories on the running platform.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
backfill_app = typer.Typer(help="Fill a store in partitions, in parallel processes.", no_args_is_help=True)
app.add_typer(backfill_app, name="backfill")

console = Console()
# One line on stderr for user errors (exit code 2); tracebacks are for bugs.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _scenario_names() -> str:
    from ticket_assets.sources.scenarios import SCENARIOS

    return ", ".join(sorted(SCENARIOS))


_SCENARIO_NAMES = _scenario_names()


def _user_error(message: str) -> typer.Exit:
    err_console.print(f"[red]error[/]: {message}")
    return typer.Exit(2)


def _environment(migrate_schema: bool = True, prepare_dbt: bool = False, warm_dbt: bool = False):
    """Services for one command; the dbt manifest only for commands that load the asset graph, and
    a dbt process parsing ahead for those that will run it (``materialize``)."""
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.settings import get_settings

    # dagster-dbt's manifest preparer and the child services run `dbt`/`dagster` from PATH: this
    # environment's bin first, so an unactivated virtualenv works like an activated one.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    with console.status("Preparing services (PostgreSQL, schema, dbt manifest)…"):
        return prepare_environment(
            get_settings(), migrate_schema=migrate_schema, prepare_dbt=prepare_dbt, warm_dbt=warm_dbt
        )


@contextmanager
def _loading():
    """No garbage collection while modules and definitions load, then none of what they made.

    Loading Dagster, dbt and the asset graph allocates hundreds of thousands of long-lived objects;
    the collector would walk the growing heap several times over (most of a second) and find
    almost nothing to free. Afterwards the loaded objects are frozen (``gc.freeze``): collections
    skip them until :func:`_command_heap` ends (what loading left unreachable waits until then)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextmanager
def _command_heap():
    """Around a command that uses :func:`_loading`: when it ends, frozen objects become ordinary
    again (a process that goes on, such as a test calling commands, collects them as usual), and
    the process's exit skips its last garbage collection.

    That collection walks the whole heap (after a run: the asset graph, the dbt manifest, the run's
    events), which takes longer than a small run itself, to free memory the process is giving back
    anyway. Nothing durable depends on it: the commands close their Dagster instance and commit
    their database work, atexit handlers still run (logging is flushed; this one, registered last,
    runs first) and the standard streams are flushed as always."""
    try:
        yield
    finally:
        gc.unfreeze()
        global _FREEZE_AT_EXIT
        if not _FREEZE_AT_EXIT:
            atexit.register(gc.freeze)
            _FREEZE_AT_EXIT = True


_FREEZE_AT_EXIT = False


def _with_command_heap(command):
    """Run a command inside :func:`_command_heap` (Typer reads the wrapped signature)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        with _command_heap():
            return command(*args, **kwargs)

    return run


# Options that several commands share.
ForceTrain = Annotated[
    bool, typer.Option("--force-train", help="Train even when data, code and config equal the champion's.")
]
TextCol = Annotated[str, typer.Option("--text-col", help="Column with the ticket text/body.")]
Reason = Annotated[str, typer.Option(help="Why (recorded in ops.model_alias_events).")]


def _force_training(force: bool) -> None:
    """--force-train: the settings (read on first use, by this process and its children) carry it."""
    if force:
        from ticket_assets.settings import reset_settings_cache

        os.environ["TICKETOPS_FORCE_TRAIN"] = "1"
        reset_settings_cache()


def _progress(on: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=on or console,
    )


def _progress_callback(progress: Progress, description: str):
    task_id = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task_id, completed=done, total=total)

    return update


def _print_ingest_report(report) -> None:
    table = Table(title="Ingest")
    for column in ("read", "inserted", "updated", "unchanged", "quarantined"):
        table.add_column(column, justify="right")
    table.add_row(
        *(str(getattr(report, c)) for c in ("read", "inserted", "updated", "unchanged", "quarantined"))
    )
    console.print(table)
    for reason, count in sorted(report.reasons.items()):
        console.print(f"  quarantined: {count} × {reason}")
    # Dagster learns of the load from the log (sensor raw_ticket_loads): no Dagster import here.
    console.print(f"  logged as load {report.load_id} in raw.ingest_loads")


def _print_outcome(outcome) -> None:
    table = Table(title=f"Run {outcome.run_id[:8]}")
    table.add_column("asset / check")
    table.add_column("result")
    for key in outcome.materialized:
        table.add_row(key, "[green]materialized")
    for key, passed in outcome.checks.items():
        table.add_row(f"check {key}", "[green]passed" if passed else "[red]failed")
    for step in outcome.failed_steps:
        table.add_row(step, "[red]step failed")
    console.print(table)


# --------------------------------------------------------------------------------------------
@app.command()
def prepare() -> None:
    """Start/locate services, migrate the schema and prepare the dbt manifest."""
    settings = _environment(prepare_dbt=True)
    console.print(f"[green]ready[/]: data directory {settings.data_dir}")


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision (the API only checks it)."""
    from ticket_assets.services.migrations import current_revision
    from ticket_assets.services.postgres import database_url

    settings = _environment()
    console.print(f"[green]schema at {current_revision(database_url(settings))}")


@app.command()
@_with_command_heap
def materialize(
    select: Annotated[
        str | None, typer.Option("--select", "-s", help="Asset selection, e.g. 'key:marts/*' or 'group:dbt'.")
    ] = None,
    force_train: ForceTrain = False,
) -> None:
    """Run the asset graph headless; exits non-zero when any step fails."""
    _force_training(force_train)
    with _loading():
        settings = _environment(prepare_dbt=True, warm_dbt=True)
        import dagster as dg

        from ticket_assets.definitions import build_definitions
        from ticket_assets.runner import dagster_instance
        from ticket_assets.runner import materialize as run

        defs = build_definitions(settings)
    try:
        # Closed before exit: the run's events are in its storage, nothing is left open.
        with dagster_instance(settings) as instance:
            with console.status(f"Materialising {select or 'the whole asset graph'}…"):
                outcome = run(select, instance=instance, defs=defs)
    except (ValueError, dg.DagsterError) as exc:
        if select is None:
            raise
        raise _user_error(f"invalid selection {select!r}: {_first_line(exc)}") from None
    _print_outcome(outcome)
    if not outcome.success:
        console.print(
            f"[red]run {outcome.run_id} failed[/]: {', '.join(outcome.failed_steps) or 'see the Dagster UI'}"
        )
        raise typer.Exit(1)


@backfill_app.command("embeddings")
def backfill_embeddings(
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            "-p",
            min=1,
            help="Worker processes, each running partitions in turn; they share TICKETOPS_EMBED_THREADS.",
        ),
    ] = 1,
    partition: Annotated[
        list[str] | None,
        typer.Option("--partition", help="Only this partition (0-9, a-f); repeatable. Default: all 16."),
    ] = None,
) -> None:
    """Embed every training-set ticket not stored yet, in hash-bucket partitions of
    `ticket_embeddings_backfill` run in parallel; a rerun resumes where a killed one stopped."""
    from ticket_assets.ml.embedding_backfill import EMBEDDING_PARTITION_KEYS, check_partition_keys

    try:
        keys = check_partition_keys(partition or list(EMBEDDING_PARTITION_KEYS))
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    settings = _environment(prepare_dbt=True)
    from concurrent.futures.process import BrokenProcessPool

    from ticket_assets.backfill import run_embedding_backfill, threads_per_process, training_set_exists

    if not training_set_exists(settings):
        raise _user_error("marts.training_set does not exist yet: run `ticketops materialize` first")
    threads = threads_per_process(settings, processes)
    console.print(
        f"backfill: {len(keys)} partitions on {min(processes, len(keys))} processes x {threads} embedding threads"
    )
    with _progress() as progress:
        task = progress.add_task("embedding tickets", total=None)
        started = time.monotonic()
        first: list[int] = []

        def on_status(status, finished) -> None:
            first[:] = first or [status.stored]
            rate = (status.stored - first[0]) / max(time.monotonic() - started, 1e-9)
            progress.update(
                task,
                total=status.total,
                completed=status.stored,
                description=f"embedding tickets ({len(finished)}/{len(keys)} partitions, {rate:.0f}/s)",
            )

        try:
            outcome = run_embedding_backfill(
                settings, processes=processes, partitions=keys, on_status=on_status
            )
        except BrokenProcessPool:
            err_console.print(
                "[red]error[/]: a backfill worker died (killed or out of memory); what it stored is kept, "
                "run the command again to resume"
            )
            raise typer.Exit(1) from None
    table = Table(title="Embedding backfill")
    for column in ("partition", "encoded", "already stored", "seconds", "run"):
        table.add_column(column, justify="right")
    for result in outcome.results:
        table.add_row(
            result.partition,
            str(result.encoded),
            str(result.already_embedded),
            f"{result.seconds:.1f}",
            result.run_id[:8] if result.success else f"[red]{result.run_id[:8]} failed",
        )
    console.print(table)
    console.print(
        f"encoded {outcome.encoded} in {outcome.seconds:.1f}s ({outcome.per_second:.0f}/s); "
        f"{outcome.status.stored}/{outcome.status.total} texts stored"
    )
    if not outcome.success:
        for result in outcome.results:
            for error in result.errors:
                err_console.print(f"[red]partition {result.partition}[/]: {error}")
        raise typer.Exit(1)


@ingest_app.command("synthetic")
@_with_command_heap
def ingest_synthetic(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of tickets.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same tickets).")] = 42,
    scenario: Annotated[
        str | None, typer.Option("--scenario", help=f"Drift scenario: one of {_SCENARIO_NAMES}.")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="First day, YYYY-MM-DD.")] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="Days covered.")] = 90,
) -> None:
    """Generate realistic synthetic tickets (optionally with a drift scenario) into raw.tickets."""
    from ticket_assets.sources.store import ingest_synthetic as run
    from ticket_assets.sources.synthetic import SCENARIOS

    if scenario is not None and scenario not in SCENARIOS:
        console.print(f"[red]unknown scenario {scenario!r}[/]; choose one of: {', '.join(sorted(SCENARIOS))}")
        raise typer.Exit(2)
    try:
        start_date = date.fromisoformat(start) if start else None
    except ValueError:
        console.print(f"[red]--start must be YYYY-MM-DD, got {start!r}")
        raise typer.Exit(2) from None
    with _loading():
        settings = _environment()
    from ticket_assets.services.postgres import database_url

    with _progress() as progress:
        report = run(
            database_url(settings),
            n=n,
            seed=seed,
            scenario=scenario,
            start=start_date,
            days=days,
            progress=_progress_callback(progress, "synthetic tickets"),
        )
    _print_ingest_report(report)


@ingest_app.command("outage-burst")
@_with_command_heap
def ingest_outage_burst(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of tickets reporting the outage.")] = 40,
    minutes: Annotated[
        float, typer.Option("--minutes", min=0.1, help="Minutes the reports are spread over.")
    ] = 20.0,
    service: Annotated[
        str, typer.Option("--service", help="The service that is down (in the text).")
    ] = "VPN",
    topic: Annotated[str, typer.Option("--topic", help="Topic label of the tickets.")] = "network",
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="When the first report comes in, ISO 8601 (UTC unless it has an offset); default: "
            "--minutes ago, so the next major_incidents run (latest hour) sees the whole burst.",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option("--seed", help="Random seed; ticket ids are outage-SEED-i (same seed: same tickets)."),
    ] = 42,
) -> None:
    """Generate an outage burst (many people reporting one outage within minutes) into raw.tickets."""
    from datetime import UTC, datetime, timedelta

    from ticket_assets.sources.store import ingest_outage_burst as run

    try:
        start = datetime.fromisoformat(at) if at else datetime.now(UTC) - timedelta(minutes=minutes)
    except ValueError:
        raise _user_error(f"--at must be an ISO 8601 time such as 2026-01-29T09:00, got {at!r}") from None
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    with _loading():
        settings = _environment()
    from ticket_assets.services.postgres import database_url

    with _progress() as progress:
        report = run(
            database_url(settings),
            n=n,
            start=start,
            minutes=minutes,
            seed=seed,
            service=service,
            topic=topic,
            progress=_progress_callback(progress, "outage-burst tickets"),
        )
    _print_ingest_report(report)
    console.print(
        f"{n} {service} outage reports from {start:%Y-%m-%d %H:%M} UTC over {minutes:g} min; "
        "`ticketops materialize -s key:major_incidents` detects them."
    )


_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


@ingest_app.command("csv")
@_with_command_heap
def ingest_csv(
    path: Annotated[Path, typer.Argument(help="CSV file (plain or .gz).")],
    text_col: TextCol,
    title_col: Annotated[
        str | None, typer.Option("--title-col", help="Column with the subject/title.")
    ] = None,
    topic_col: Annotated[
        str | None, typer.Option("--topic-col", help="Column with the topic label (category, group).")
    ] = None,
    urgency_col: Annotated[
        str | None, typer.Option("--urgency-col", help="Column with the priority (P1, urgent, high ...).")
    ] = None,
    id_col: Annotated[
        str | None,
        typer.Option("--id-col", help="Column with the export's ticket id (default: a digest of the row)."),
    ] = None,
    created_col: Annotated[
        str | None, typer.Option("--created-col", help="Column with the creation date/time (ISO 8601).")
    ] = None,
    channel_col: Annotated[
        str | None, typer.Option("--channel-col", help="Column with the channel (email, phone ...).")
    ] = None,
    label_col: Annotated[
        list[str] | None,
        typer.Option(
            "--label-col",
            help="A routing target as NAME=COLUMN, e.g. assignment_group='Assigned Group' (repeatable): "
            "trained, gated and served like topic and urgency.",
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter",
            help="Field separator: one character, or tab/comma/semicolon/pipe (default: sniffed).",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="File encoding, e.g. utf-8, cp1252, latin-1 (default: detected; UTF-8 when it is).",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Source name: tickets are 'csv:NAME:<id>' (default: file name@hash of its full path).",
        ),
    ] = None,
) -> None:
    """Import a CSV export with a column mapping; malformed rows go to raw.tickets_rejected."""
    from ticket_assets.sources.csv_import import ColumnMapping, SourceReadError
    from ticket_assets.sources.store import ingest_csv as run

    if delimiter is not None:
        delimiter = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1:
            console.print(
                f"[red]--delimiter must be one character (or tab, semicolon ...), got {delimiter!r}"
            )
            raise typer.Exit(2)
    if source is not None and not source.strip():
        console.print("[red]--source must not be blank")
        raise typer.Exit(2)
    label_cols = []
    for item in label_col or []:
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column:
            console.print(f"[red]--label-col must be NAME=COLUMN, got {item!r}")
            raise typer.Exit(2)
        label_cols.append((name.strip(), column))
    try:
        mapping = ColumnMapping(
            text_col=text_col,
            title_col=title_col,
            topic_col=topic_col,
            urgency_col=urgency_col,
            id_col=id_col,
            created_col=created_col,
            channel_col=channel_col,
            delimiter=delimiter,
            encoding=encoding,
            label_cols=tuple(label_cols),
        )
    except ValueError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    with _loading():
        settings = _environment()
    from ticket_assets.services.postgres import database_url

    try:
        with _progress() as progress:
            report = run(
                database_url(settings),
                path,
                mapping,
                read_progress=_progress_callback(progress, f"{path.name}: checking rows"),
                progress=_progress_callback(progress, f"{path.name}: writing"),
                source_name=source.strip() if source else None,
            )
    except SourceReadError as exc:
        console.print(f"[red]cannot import {path}[/]: {exc}")
        raise typer.Exit(2) from None
    _print_ingest_report(report)
    console.print(
        f"  source {report.source}, encoding {report.encoding}, delimiter {report.delimiter!r}, "
        f"mojibake repaired in {report.repaired} row(s)"
    )


# --------------------------------------------------------------------------------------------
@app.command()
def up(
    seed_tickets: Annotated[
        int, typer.Option("--seed-tickets", help="Synthetic tickets to seed into an empty store.")
    ] = 5000,
    materialize_first: Annotated[
        bool,
        typer.Option("--materialize/--no-materialize", help="Materialise the whole graph before serving."),
    ] = True,
    serve_ui: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the Dagster UI and the API afterwards.")
    ] = True,
    force_train: ForceTrain = False,
) -> None:
    """The main job: services, seed data, materialise the whole graph, then serve the Dagster UI and the API."""
    _force_training(force_train)
    from ticket_assets.services.postgres import database_url, embedded_is_running, stop_embedded
    from ticket_assets.settings import get_settings

    embedded_was_running = get_settings().database_url is not None or embedded_is_running(get_settings())
    settings = _environment(prepare_dbt=True)
    url = database_url(settings)

    from ticket_assets.services.postgres import connect

    with connect(url) as conn:
        existing = conn.execute("select count(*) from raw.tickets").fetchone()[0]
    if existing == 0 and seed_tickets > 0:
        from ticket_assets.sources.store import ingest_synthetic as run_synthetic

        with _progress() as progress:
            report = run_synthetic(
                url,
                n=seed_tickets,
                seed=42,
                progress=_progress_callback(progress, "seeding synthetic tickets"),
            )
        _print_ingest_report(report)

    if materialize_first:
        from ticket_assets.runner import dagster_instance
        from ticket_assets.runner import materialize as run

        with console.status("Materialising the whole asset graph (first run loads models and trains)…"):
            outcome = run(
                None, instance=dagster_instance(settings), tags={"ticketops/trigger": "ticketops up"}
            )
        _print_outcome(outcome)
        if not outcome.success:
            console.print("[yellow]some steps failed; the UI shows why.[/]")

    if not serve_ui:
        return
    from ticket_assets.settings import child_env

    env = child_env(settings)
    logs = settings.data_dir / "logs"
    processes = [
        spawn(
            # `dg dev` loads the project's code location from [tool.dg] in pyproject.toml.
            [
                str(Path(sys.executable).with_name("dg")),
                "dev",
                "-h",
                "127.0.0.1",
                "-p",
                str(settings.dagster_port),
            ],
            logs / "dagster.log",
            env,
        ),
    ]
    console.print(f"Dagster UI  → http://127.0.0.1:{settings.dagster_port}  (logs: {logs / 'dagster.log'})")
    processes.append(spawn([sys.executable, "-m", "ticket_assets.cli", "serve"], logs / "api.log", env))
    console.print(
        f"API         → http://{settings.api_host}:{settings.api_port}/docs  (logs: {logs / 'api.log'})"
    )
    console.print("Press Ctrl-C to stop.")

    stopping = False

    def handle_signal(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, handle_signal)
    signal.signal(signal.SIGTERM, handle_signal)
    try:
        while not stopping:
            if any(p.poll() is not None for p in processes):
                console.print("[red]a service exited; see the logs above. Stopping.[/]")
                break
            time.sleep(0.5)
    finally:
        console.print("Stopping…")
        stop(processes)
        if not embedded_was_running and stop_embedded(settings):
            console.print("Stopped the embedded PostgreSQL.")
        console.print("[green]stopped cleanly[/]")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Serve the triage/answer API alone (on a database `ticketops migrate` has upgraded)."""
    settings = _environment(migrate_schema=False)
    from serving.app import serve as run_server

    run_server(settings, host=host, port=port)


@app.command()
def down() -> None:
    """Stop the embedded PostgreSQL server (data stays in the data directory)."""
    from ticket_assets.services.postgres import stop_embedded
    from ticket_assets.settings import get_settings

    stopped = stop_embedded(get_settings())
    console.print("stopped the embedded PostgreSQL" if stopped else "the embedded PostgreSQL was not running")


# --------------------------------------------------------------------------------------------
@model_app.command("list")
def model_list() -> None:
    """Registered versions with their aliases and holdout metrics."""
    settings = _environment()
    from ticket_assets.ml import registry

    registry.configure_mlflow(settings)
    versions = registry.list_versions(settings.model_name, settings)
    table = Table(title=f"Model {settings.model_name}")
    for column in ("version", "aliases", "macro_f1", "most_urgent_recall", "created", "data version"):
        table.add_column(column)
    for v in versions:
        metrics = v.get("metrics", {})
        data = v.get("data_version", {})
        table.add_row(
            v["version"],
            ", ".join(v["aliases"]),
            _fmt(metrics.get("topic.macro_f1")),
            _fmt(metrics.get("urgency.most_urgent_recall")),
            str(v.get("created_at") or "")[:16],
            f"{data.get('training_set_rows', '?')} rows to {str(data.get('max_event_at', '?'))[:10]}",
        )
    console.print(table)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="Model version to serve.")],
    reason: Reason = "manual promotion",
) -> None:
    """Move the `champion` alias to VERSION (the API hot-reloads it) through the `champion_model` asset."""
    settings = _environment(prepare_dbt=True)
    version = _known_version(version, settings)
    champion = _move_champion(settings, "promote", version=version, reason=reason)
    console.print(f"previous champion: {champion['previous_champion']}")
    console.print(f"[green]champion → version {champion['champion_version']}")


@model_app.command("rollback")
def model_rollback(
    reason: Reason = "manual rollback",
) -> None:
    """Move `champion` back to the previous champion through the `champion_model` asset."""
    settings = _environment(prepare_dbt=True)
    from ticket_assets.ml import registry

    current = registry.get_alias_version(settings.model_name, registry.CHAMPION, settings)
    if current is None:
        raise _user_error(f"{settings.model_name} has no champion to roll back")
    champion = _move_champion(settings, "rollback", reason=reason)
    console.print(f"[green]champion → version {champion['champion_version']}")


def _move_champion(settings, action: str, *, version: str | None = None, reason: str) -> dict:
    """Run Dagster's promotion path (the `champion_model` asset); its metadata, or exit 1 with why."""
    from ticket_assets.runner import dagster_instance, move_champion

    outcome = move_champion(
        dagster_instance(settings), action, version=version, reason=reason, actor=_actor()
    )
    champion = outcome.metadata.get("champion_model")
    if not outcome.success or champion is None:
        console.print(f"[red]{'; '.join(outcome.errors) or f'{action} failed (run {outcome.run_id})'}")
        raise typer.Exit(1)
    return champion


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _known_version(version: str, settings) -> str:
    """VERSION as the registry names it, or a user error saying which versions exist."""
    from ticket_assets.ml import registry

    if not version.isdigit():
        raise _user_error(f"model version must be a number, got {version!r}")
    known = [v["version"] for v in registry.list_versions(settings.model_name, settings)]
    if str(int(version)) not in known:
        listed = ", ".join(sorted(known, key=int)) if known else "none registered yet"
        raise _user_error(f"model {settings.model_name!r} has no version {version} (versions: {listed})")
    return str(int(version))


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


@app.command()
def evaluate(
    path: Annotated[Path, typer.Argument(help="Labelled CSV (plain or .gz).")],
    text_col: TextCol,
    topic_col: Annotated[str, typer.Option("--topic-col", help="Column with the true topic label.")],
    urgency_col: Annotated[
        str | None, typer.Option("--urgency-col", help="Column with the true priority (scored when given).")
    ] = None,
    alias: Annotated[str, typer.Option(help="Alias or version to score.")] = "champion",
) -> None:
    """Score a labelled file with the champion: accuracy, macro-F1, per-class metrics and the confusion
    matrix (as the training asset reports them), then the whole result as JSON on stdout."""
    if not path.exists():
        raise _user_error(f"cannot evaluate {path}: file not found")
    if not path.is_file():
        raise _user_error(f"cannot evaluate {path}: not a file")
    settings = _environment()
    from mlflow.exceptions import MlflowException

    from ticket_assets.ml import registry
    from ticket_assets.ml.evaluate import evaluate_file

    registry.configure_mlflow(settings)
    err = Console(stderr=True)
    try:
        with _progress(err) as progress:
            metrics = evaluate_file(
                settings,
                path,
                text_col=text_col,
                topic_col=topic_col,
                urgency_col=urgency_col,
                alias=alias,
                progress=lambda step: _progress_callback(progress, step),
            )
    except FileNotFoundError as exc:
        raise _user_error(f"cannot evaluate {path}: file not found ({exc.filename or exc})") from None
    except (KeyError, ValueError) as exc:
        raise _user_error(f"cannot evaluate {path}: {_first_line(exc)}") from None
    except MlflowException as exc:
        raise _user_error(f"cannot evaluate with model {alias!r}: {_first_line(exc)}") from None
    _print_evaluation(metrics, err)
    print(json.dumps(metrics, indent=2, default=str))


def _print_evaluation(metrics: dict, err: Console) -> None:
    """The training asset's tables, on stderr so stdout stays one JSON document."""
    names = metrics.get("display_names", {})
    model = metrics["model"]
    for target, mapping in metrics.get("label_mapping", {}).items():
        if mapping["unmapped"]:
            listed = ", ".join(f"{label} ({n})" for label, n in mapping["unmapped"].items())
            err.print(f"[yellow]{target} labels the model cannot map[/]: {listed}", highlight=False)
    summary = Table(title=f"{model['name']} v{model['version']} on {Path(metrics['file']).name}")
    for column in ("target", "n", "accuracy", "macro-F1", "ECE"):
        summary.add_column(column)
    for target in ("topic", "urgency"):
        if target in metrics:
            m = metrics[target]
            summary.add_row(
                target, str(m["n"]), f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}"
            )
    err.print(summary)
    for target in ("topic", "urgency"):
        if target not in metrics:
            continue
        m = metrics[target]
        shown = [names.get(label, label) if target == "topic" else label for label in m["labels"]]
        per_class = Table(title=f"{target}: per class")
        for column in ("class", "precision", "recall", "F1", "support"):
            per_class.add_column(column)
        for label, name in zip(m["labels"], shown, strict=True):
            v = m["per_class"][label]
            per_class.add_row(
                name, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", str(v["support"])
            )
        err.print(per_class)
        confusion = Table(title=f"{target}: confusion matrix (rows true, columns predicted)")
        confusion.add_column("")
        for index in range(len(shown)):
            confusion.add_column(str(index), justify="right")
        for index, (name, row) in enumerate(zip(shown, m["confusion_matrix"], strict=True)):
            confusion.add_row(f"{index} {name}", *(str(value) for value in row))
        err.print(confusion)


@demo_app.command("drift")
def demo_drift(
    scenario: Annotated[
        str, typer.Option(help=f"Drift scenario of the period-B traffic: one of {_SCENARIO_NAMES}.")
    ] = "new_topic_surge",
    traffic: Annotated[int, typer.Option(min=200, help="Period-B tickets sent through the API.")] = 600,
    feedback_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of tickets agents correct.")
    ] = 0.7,
) -> None:
    """Train on period A, send drifted period-B traffic through the API, and watch the platform detect the
    drift, retrain on the agents' feedback, gate, promote and hot-reload, with no manual step."""
    from ticket_assets.demo import run_drift_demo
    from ticket_assets.sources.synthetic import SCENARIOS

    if scenario not in SCENARIOS:
        console.print(f"[red]unknown scenario {scenario!r}[/]; choose one of: {', '.join(sorted(SCENARIOS))}")
        raise typer.Exit(2)
    try:
        run_drift_demo(
            scenario=scenario,
            traffic=traffic,
            feedback_share=feedback_share,
            echo=lambda line: console.print(line, highlight=False),
        )
    except RuntimeError as exc:
        console.print(f"[red]demo stopped[/]: {exc}")
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
