"""The embedded PostgreSQL the commands start when DATABASE_URL is unset: started, stopped (as
`ticketops up` does on Ctrl-C and `ticketops down` does), started again in the same process, and
a clean exit afterwards (no traceback from the library's exit hook)."""

from __future__ import annotations

import os
import subprocess
import sys

from ticket_assets.core.paths import REPO_ROOT

SCRIPT = """
import psycopg
from ticket_assets.services.postgres import embedded_is_running, start_database, stop_embedded
from ticket_assets.settings import get_settings

settings = get_settings()
for attempt in (1, 2):
    with psycopg.connect(start_database(settings)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert stop_embedded(settings) and not embedded_is_running(settings)
print("ok")
"""


def test_embedded_server_stops_restarts_and_the_process_exits_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env["TICKETOPS_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-3000:]
