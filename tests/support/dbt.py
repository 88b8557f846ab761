"""The real dbt CLI on the project, for tests that need the marts dbt builds (no tests here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ticket_assets.core.paths import REPO_ROOT
from ticket_assets.services.postgres import dbt_env

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def run_dbt(url: str, work_dir: Path, *args: str) -> str:
    """Run the dbt CLI on the project with its own target/log paths (concurrent runs never clash)."""
    env = {**os.environ, **dbt_env(url), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    command = [
        str(Path(sys.executable).with_name("dbt")), *args, "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(work_dir / "target"),
        "--log-path", str(work_dir / "logs"),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    return result.stdout
