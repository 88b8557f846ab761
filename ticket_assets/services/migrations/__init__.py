"""Schema migrations (Alembic) for the platform's own tables; dbt owns ``staging`` and ``marts``.

:func:`migrate` is the one place the schema is applied: the CLI, the Dagster resources and the test
fixtures call it. :func:`check_schema` is what the API runs instead: it never changes the schema.
"""

from __future__ import annotations

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


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (default: the newest) under an advisory lock."""
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
