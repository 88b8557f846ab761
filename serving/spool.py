"""Local write-ahead spool: an acknowledged prediction or feedback survives a crash of the API process.

A request appends its rows here and only replies once they are on disk (``fsync``). Appends from
concurrent requests are written and synced together (group commit), so 32 clients pay about one
``fsync`` per group instead of one each. The prediction log writer releases rows once they are in
PostgreSQL (or in a dead-letter table); a segment whose rows are all released is truncated or deleted.
At start the server replays what is left, and ``request_id`` uniqueness makes the replay idempotent.

Layout: ``<dir>/slot-<n>/<seq>.jsonl``. Each process locks one slot (``flock``), so several uvicorn
workers never share a file; a starting process also adopts the segments of slots nobody holds (a
worker that crashed or a deployment that now runs fewer workers).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"


class SpoolError(RuntimeError):
    """Rows could not be made durable (disk full, I/O error): the request must not be acknowledged."""


class Spool:
    """Append-only segments with group commit. Public methods run on the event loop thread."""

    def __init__(self, directory: Path, *, segment_bytes: int = 8 * 1024 * 1024) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._slot: Path | None = None
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._current = 0
        self._current_size = 0
        self._outstanding: dict[int, int] = {}  # segment -> rows not yet released
        self._pending: list[tuple[bytes, int, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.appended_total = 0
        self.syncs_total = 0

    # Start: lock a slot, collect what earlier processes left ---------------------------------
    def open(self) -> list[tuple[int, dict[str, Any]]]:
        """Lock a slot and return the records to replay as (segment, record), oldest first."""
        self.directory.mkdir(parents=True, exist_ok=True)
        n = 0
        while self._slot is None:
            slot = self.directory / f"slot-{n}"
            fd = _try_lock(slot)
            if fd is not None:
                self._slot, self._lock_fd = slot, fd
            n += 1
        self._adopt_orphans()
        replay: list[tuple[int, dict[str, Any]]] = []
        segments = sorted(self._segments())
        for seq in segments:
            count = 0
            for record in _read_segment(self._path(seq)):
                replay.append((seq, record))
                count += 1
            if count:
                self._outstanding[seq] = count
            else:
                self._path(seq).unlink(missing_ok=True)
        self._current = (segments[-1] + 1) if segments else 0
        self._open_current()
        if replay:
            log.warning("spool: replaying %d rows left by an earlier process in %s", len(replay), self._slot)
        return replay

    def _adopt_orphans(self) -> None:
        assert self._slot is not None
        taken = {int(p.stem) for p in self._slot.glob(f"*{SUFFIX}") if p.stem.isdigit()}
        for other in sorted(self.directory.glob("slot-*")):
            if other == self._slot:
                continue
            fd = _try_lock(other)
            if fd is None:  # a live process owns it
                continue
            try:
                for path in sorted(other.glob(f"*{SUFFIX}"), key=lambda p: int(p.stem)):
                    seq = max(taken, default=-1) + 1
                    path.rename(self._path(seq))
                    taken.add(seq)
            finally:
                os.close(fd)
        _fsync_dir(self._slot)

    def _segments(self) -> Iterator[int]:
        assert self._slot is not None
        for path in self._slot.glob(f"*{SUFFIX}"):
            if path.stem.isdigit():
                yield int(path.stem)

    def _path(self, seq: int) -> Path:
        assert self._slot is not None
        return self._slot / f"{seq:012d}{SUFFIX}"

    def _open_current(self) -> None:
        self._fd = os.open(self._path(self._current), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._current_size = os.fstat(self._fd).st_size
        self._outstanding.setdefault(self._current, 0)
        assert self._slot is not None
        _fsync_dir(self._slot)

    # Request side ----------------------------------------------------------------------------
    async def append(self, records: list[dict[str, Any]]) -> int:
        """Write the records durably; returns the segment to release them from later."""
        if self._closing or self._task is None:
            raise SpoolError("the spool is closed")
        data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((data, len(records), done))
        self._wake.set()
        return await done

    def release(self, segment: int, rows: int = 1) -> None:
        """The rows are in PostgreSQL now; their segment may be truncated once nothing is left in it."""
        left = self._outstanding.get(segment, 0) - rows
        self._outstanding[segment] = max(left, 0)
        if left <= 0:
            self._wake.set()  # the flusher compacts between writes

    @property
    def outstanding(self) -> int:
        return sum(self._outstanding.values())

    # Flusher -----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._fd is None:
            self.open()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="spool-flusher")

    async def stop(self) -> None:
        """Finish pending appends and close; unreleased rows stay on disk for the next start."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._outstanding.get(self._current, 0) == 0:
            self._path(self._current).unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                group, self._pending = self._pending, []
                await self._commit(group)
            if self._compaction_due():
                # ftruncate + fsync (or a rotation's directory fsync): never on the event loop.
                await anyio.to_thread.run_sync(self._compact)
            if self._closing and not self._pending:
                return

    async def _commit(self, group: list[tuple[bytes, int, asyncio.Future[int]]]) -> None:
        data = b"".join(chunk for chunk, _, _ in group)
        segment = self._current
        try:
            await anyio.to_thread.run_sync(self._write, data)
        except OSError as exc:
            log.error("spool: write failed (%s)", exc)
            for _, _, done in group:
                if not done.done():
                    done.set_exception(SpoolError(f"could not write the spool: {exc}"))
            return
        self.syncs_total += 1
        rows = sum(n for _, n, _ in group)
        self.appended_total += rows
        self._outstanding[segment] = self._outstanding.get(segment, 0) + rows
        for _, _, done in group:
            if not done.done():  # a cancelled request: its rows are durable anyway
                done.set_result(segment)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        # fdatasync: the appended bytes and the new length reach the disk; no other metadata needed.
        os.fdatasync(self._fd)
        self._current_size += len(data)

    def _compaction_due(self) -> bool:
        if self._current_size >= self._segment_bytes:
            return True
        return any(
            left <= 0 and (seq != self._current or self._current_size > 0)
            for seq, left in self._outstanding.items()
        )

    def _compact(self) -> None:
        """Between writes only: drop fully released segments, rotate a large current one."""
        for seq, left in list(self._outstanding.items()):
            if left > 0:
                continue
            if seq == self._current:
                if self._current_size and self._fd is not None:
                    os.ftruncate(self._fd, 0)
                    os.fsync(self._fd)
                    self._current_size = 0
            else:
                self._path(seq).unlink(missing_ok=True)
                del self._outstanding[seq]
        if self._current_size >= self._segment_bytes and self._fd is not None:
            os.close(self._fd)
            self._current += 1
            self._open_current()


def _try_lock(slot: Path) -> int | None:
    slot.mkdir(parents=True, exist_ok=True)
    fd = os.open(slot / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_segment(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete record; a torn last line (crash mid-write, never acknowledged) is skipped."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                log.warning("spool: ignoring a torn record at the end of %s", path.name)
                return
            try:
                record = json.loads(line)
            except ValueError:
                log.error("spool: %s line %d is not a record; skipped", path.name, number)
                continue
            yield record
