"""Schema migrations (Alembic) for the platform's own tables; dbt owns ``staging`` and ``marts``.

:func:`migrate` is the one place the schema is applied: the CLI, the Dagster resources and the test
fixtures call it. :func:`check_schema` is what the API runs instead: it never changes the schema.
"""

from __future__ import annotations

import ast
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent
# One lock id for every process that migrates (CLI, Dagster run, tests) so DDL never races.
MIGRATION_LOCK_ID = 742001


class SchemaOutdatedError(RuntimeError):
    """The database is not at the code's schema revision."""


def _config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision: read from the files when they declare it plainly (Alembic's script
    loading costs a quarter of a second on every command, run and API start), else Alembic's."""
    if (head := _declared_head()) is not None:
        return head
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migration revisions"
    return head


def _engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    # The URL may be libpq-style (unix socket in ?host=): let psycopg parse it, not SQLAlchemy.
    return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=NullPool)


def current_revision(url: str) -> str | None:
    with psycopg.connect(url, connect_timeout=10) as conn:
        if conn.execute("select to_regclass('public.alembic_version')").fetchone()[0] is None:
            return None
        row = conn.execute("select version_num from public.alembic_version").fetchone()
        return row[0] if row else None


def _declared_head() -> str | None:
    """The newest revision as the files in ``versions/`` declare it (``revision``/``down_revision``),
    read without importing Alembic; None when the files do not name exactly one head in that plain
    form (Alembic then decides)."""
    revisions: dict[str, object] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        names: dict[str, object] = {}
        for node in ast.parse(path.read_text()).body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            target = node.target if isinstance(node, ast.AnnAssign) else target
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and node.value:
                try:
                    names[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    return None
        if "revision" not in names:
            continue  # not a revision file (__init__.py)
        if not isinstance(names["revision"], str) or "down_revision" not in names:
            return None
        revisions[names["revision"]] = names["down_revision"]
    parents: set[object] = set()
    for down in revisions.values():
        parents |= set(down) if isinstance(down, (tuple, list)) else {down}
    heads = [rev for rev in revisions if rev not in parents]
    return heads[0] if len(heads) == 1 else None


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (default: the newest) under an advisory lock.

    A database already at the head is left as it is without starting Alembic (imports and script
    loading cost a third of a second on every command and run): its version row is written in the
    same transaction as the migration that reaches it."""
    if revision == "head" and current_revision(url) == head_revision():
        return
    from alembic import command

    engine = _engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"select pg_advisory_lock({MIGRATION_LOCK_ID})")
            connection.commit()
            try:
                config = _config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                connection.exec_driver_sql(f"select pg_advisory_unlock({MIGRATION_LOCK_ID})")
                connection.commit()
    finally:
        engine.dispose()


def check_schema(url: str) -> str:
    """Raise :class:`SchemaOutdatedError` (one clear line) unless the database is at the head revision."""
    head = head_revision()
    current = current_revision(url)
    if current != head:
        raise SchemaOutdatedError(
            f"database schema is at {current or 'no revision'}, this code needs {head}: "
            "run `ticketops migrate` first"
        )
    return current
