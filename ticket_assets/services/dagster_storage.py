"""Dagster's SQLite event log, with one connection kept per database file instead of one per event.

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine and opens a new SQLite
connection for every event it stores (and twice for an asset or check event: the run's file and
the cross-run index), 5-30 ms each here, so a small run spends more time recording its ~60 events
than running dbt's models (BENCHMARKS.md "Incremental run as a user runs it"). This storage is the
same class, files and schema; only ``_connect`` keeps an engine with one pooled connection per
file, for the few files a process writes (the run's, the index), and still takes Dagster's lock
around every use. A process reading many runs (the UI) keeps at most :data:`OPEN_FILES` of them
open. The local instance's ``dagster.yaml`` names it (ticket_assets/services/environment.py).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, QueuePool

# Files with an open connection per process: a run writes two; the UI reads a few runs at a time.
OPEN_FILES = 8


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with its connections kept open (see the module docstring)."""

    def __init__(self, base_dir: str, inst_data=None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The file's engine; called under Dagster's ``_db_lock``, which guards ``_engines`` too."""
        if self._engines_pid != os.getpid():
            # A forked child must not share the parent's SQLite connections.
            self._engines = OrderedDict()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=0,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
            while len(self._engines) > OPEN_FILES:
                _, evicted = self._engines.popitem(last=False)
                evicted.dispose()
        else:
            self._engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            if shard not in self._initialized_dbs:
                # Dagster's schema set-up opens connections of its own: a one-off engine, as upstream.
                setup = create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=NullPool,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                )
                self._initdb(setup)
                setup.dispose()
                self._initialized_dbs.add(shard)
            engine = self._engine(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _dispose_engines(self) -> None:
        with self._db_lock:
            engines, self._engines = list(self._engines.values()), OrderedDict()
        for engine in engines:
            engine.dispose()

    def wipe(self) -> None:
        # Wiping deletes the files: their open connections go first.
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._dispose_engines()
