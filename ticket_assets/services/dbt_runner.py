"""dbt's programmatic runner (``dbtRunner``) in this process, shaped as the dbt process dagster-dbt reads.

dagster-dbt runs every invocation as a ``dbt`` subprocess and turns the JSON log lines on its stdout
into Dagster events. A subprocess pays Python's start and dbt's imports (2-3 s here, BENCHMARKS.md
"Incremental run as a user runs it") on every run, although the run's process has most of dbt
imported already (dagster-dbt imports dbt-core). :class:`InProcessDbt` runs the same command line
with ``dbtRunner`` in a worker thread and offers what dagster-dbt uses of ``subprocess.Popen``:
``args``, ``stdout`` (the same JSON lines: dbt's console logger writes them to a capture stream,
dbt's own hook for programmatic callers, instead of ``sys.stdout``), ``wait``, ``poll``,
``returncode`` and ``send_signal``.

dbt reads its configuration from ``os.environ`` (flags, ``env_var()`` in profiles.yml), so the
invocation's variables are laid over the environment for exactly its duration, and one invocation
runs at a time per process: dbt's flags and event manager are process-global.
"""

from __future__ import annotations

import ctypes
import json
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence

from ticket_assets.settings import scoped_environment

# dbt's global state (flags, event manager, adapter registry) admits one invocation at a time.
_INVOCATION_LOCK = threading.Lock()


def error_line(message: str) -> bytes:
    """A log line shaped as dbt's own error events, so dagster-dbt puts it in the step's error."""
    info = {"level": "error", "msg": message, "name": "MainEncounteredError", "invocation_id": ""}
    return json.dumps({"info": info, "data": {}}).encode()


def exit_code(result) -> tuple[int, bytes | None]:
    """A ``dbtRunner`` result as a ``dbt`` process ends it: the exit code (1 when a node or test
    failed, 2 when dbt raised) and, for an exception, its error line."""
    if result.success:
        return 0, None
    if result.exception is None:
        return 1, None
    return 2, error_line(f"{type(result.exception).__name__}: {result.exception}")


class _LogLines:
    """The invocation's stdout: dbt's console writes text into it, dagster-dbt reads it back as
    lines of bytes until dbt finishes (iterable once, as a pipe)."""

    def __init__(self) -> None:
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._partial = ""
        self._ended = False
        self.closed = False

    def put(self, line: bytes | None) -> None:
        self._lines.put(line)

    def write(self, text: str) -> int:  # dbt's console logger (a logging.StreamHandler)
        *complete, self._partial = (self._partial + text).split("\n")
        for line in complete:
            self._lines.put(line.encode())
        return len(text)

    def flush(self) -> None:
        pass

    def end(self) -> None:
        if self._partial:
            self.write("\n")
        self._lines.put(None)

    def __iter__(self) -> Iterator[bytes]:
        while not self._ended:
            line = self._lines.get()
            if line is None:
                self._ended = True
                return
            yield line

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> _LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessDbt:
    """One dbt command run by ``dbtRunner`` in a worker thread (see the module docstring)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.args = list(args)  # argv as a subprocess would get it: the executable first
        self.stdout = _LogLines()
        self.returncode: int | None = None
        self._thread = threading.Thread(
            target=self._run, args=(dict(env),), name="dbt-in-process", daemon=True
        )
        self._thread.start()

    def _run(self, env: dict[str, str]) -> None:
        code = 2
        try:
            with _INVOCATION_LOCK, scoped_environment(env):
                from dbt.cli.main import dbtRunner
                from dbt_common.events.functions import capture_stdout_logs, stop_capture_stdout_logs

                capture_stdout_logs(self.stdout)
                try:
                    result = dbtRunner().invoke(self.args[1:])
                finally:
                    stop_capture_stdout_logs()
            code, error = exit_code(result)
            if error is not None:
                self.stdout.put(error)
        except BaseException as exc:  # noqa: BLE001 - reported as the invocation's error, not lost
            self.stdout.put(error_line(f"{type(exc).__name__}: {exc}"))
        finally:
            self.returncode = code
            self.stdout.end()

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        return self.poll()

    def send_signal(self, sig: int) -> None:
        """What SIGINT does to a `dbt` process, done to its thread: a KeyboardInterrupt, which dbt
        answers by cancelling its running queries (their transactions roll back) and stopping. The
        thread sees it at its next Python instruction, when a running node finishes at the latest."""
        ident = self._thread.ident
        if ident is None or not self._thread.is_alive():
            return
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
