"""A dbt process started and parsed ahead of the dbt step, for a command that will run the graph.

A run's dbt step spends 1-2 s before dbt's first node (flags, project, profile, adapter, reading
the parse state, writing the manifest) on top of the Python imports of the run's process; a warm
dbt process that has parsed the project reaches its first node 0.2 s after its command
(BENCHMARKS.md "Incremental run as a user runs it"). ``ticketops materialize`` starts one with
:func:`start` while it imports Dagster (the second core does the worker's imports and parse), and
the dbt step takes it with :func:`take`: a real ``subprocess.Popen``, given to dagster-dbt as its
dbt process (the same JSON log lines on stdout, SIGINT to stop it). The step falls back to dbt in
its own thread (:mod:`ticket_assets.services.dbt_runner`) when no worker was started, it died, or
it parsed for another project state or connection than the step's.

One command per worker, read as one JSON line on stdin; EOF (an unused worker, its parent gone)
ends it. On Linux the worker also gets SIGINT when its parent dies, so a killed run's dbt cancels
its queries (their transactions roll back) instead of building on alone.

    python -m ticket_assets.services.dbt_worker PARENT_PID    # started by start(), not by hand
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ticket_assets.core.paths import DBT_PROJECT_DIR
from ticket_assets.services.dbt_parse import keep_partial_parse, partial_parse_file, project_fingerprint

_spare: _Worker | None = None


class _Worker:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.fingerprint = project_fingerprint(env)
        cache = partial_parse_file(env)
        worker_env = {
            **os.environ,
            **env,
            "DBT_PROJECT_DIR": str(DBT_PROJECT_DIR),
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            **({"DBT_PARTIAL_PARSE_FILE_PATH": str(cache)} if cache.exists() else {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(os.getpid())],  # the parent's pid
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # dbt's JSON log lines only; warnings go to the run's stderr
            env=worker_env,
            cwd=str(DBT_PROJECT_DIR),
        )

    def discard(self) -> None:
        """End an untaken worker without waiting for it (it may be importing dbt or parsing):
        EOF on stdin ends a waiting one, SIGINT one still parsing (it removes its files)."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            self.process.send_signal(signal.SIGINT)
        if self.process.stdout:
            self.process.stdout.close()


def start(env: Mapping[str, str]) -> None:
    """Start this process's spare worker for the connection in ``env`` (dbt's TICKETOPS_PG_*)."""
    global _spare
    discard()
    _spare = _Worker(env)


def discard() -> None:
    """End the spare worker if no step took it (at exit, or before starting another)."""
    global _spare
    spare, _spare = _spare, None
    if spare is not None:
        spare.discard()


atexit.register(discard)


def take(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen | None:
    """The spare worker running ``argv`` (``dbt`` first) with the step's ``env``, or None when there
    is none that parsed for this project state and connection (the caller runs dbt itself)."""
    global _spare
    spare, _spare = _spare, None
    if spare is None:
        return None
    if spare.process.poll() is not None or spare.fingerprint != project_fingerprint(env):
        spare.discard()
        return None
    try:
        spare.process.stdin.write(json.dumps({"argv": list(argv), "env": dict(env)}).encode() + b"\n")
        spare.process.stdin.close()
    except OSError:  # it died after the check
        spare.discard()
        return None
    spare.process.args = list(argv)  # what dagster-dbt shows as the command
    return spare.process


def _die_with_parent(parent: int | None) -> None:
    """SIGINT when the parent dies (Linux): dbt stops as it does on Ctrl-C."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)
    if parent is not None and os.getppid() != parent:  # the parent died before the call above
        os.kill(os.getpid(), signal.SIGINT)


def _main() -> int:
    _die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import capture_stdout_logs, stop_capture_stdout_logs

    from ticket_assets.services.dbt_runner import exit_code

    parse_target = Path(tempfile.mkdtemp(prefix="ticketops-dbt-parse-"))
    try:
        # The parse's own log lines are not the command's: stdout is what dagster-dbt reads.
        with open(os.devnull, "w") as sink:
            capture_stdout_logs(sink)
            try:
                parsed = dbtRunner().invoke(
                    ["parse", "--target-path", str(parse_target), "--log-path", str(parse_target)]
                )
            finally:
                stop_capture_stdout_logs()
        line = sys.stdin.readline()
        if not line:
            return 0
        command = json.loads(line)
        env = command["env"]
        os.environ.update(env)
        manifest = parsed.result if parsed.success else None
        if manifest is not None and "DBT_TARGET_PATH" in env:
            # Where the step looks for the parse state dbt saved, to keep it for the next run.
            keep_partial_parse(parse_target, Path(env["DBT_TARGET_PATH"]) / "partial_parse.msgpack")
        code, error = exit_code(dbtRunner(manifest=manifest).invoke(command["argv"][1:]))
        if error is not None:
            sys.stdout.buffer.write(error + b"\n")
        return code
    finally:
        shutil.rmtree(parse_target, ignore_errors=True)


if __name__ == "__main__":
    try:
        code = _main()
    except KeyboardInterrupt:  # discarded, or its parent died: nothing to report
        code = 130
    # dbt has written its artifacts and the log lines are flushed: skip the interpreter's teardown
    # (half a second of freeing dbt's heap) that the step would wait for.
    sys.stdout.flush()
    os._exit(code)
