"""Child services (Dagster UI/daemon, the API) started by `ticketops up` and `ticketops demo`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ticket_assets.core.paths import REPO_ROOT


def spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a child in its own session: Ctrl-C reaches the parent once, and the parent stops each
    child's whole process group (dg dev's own children included)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen(
        args, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(processes: list[subprocess.Popen], timeout_s: float = 15.0) -> None:
    """SIGTERM every process group, then SIGKILL whatever is still running after the timeout."""
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
