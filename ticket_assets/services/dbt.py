"""Prepare the dbt manifest ahead of time (never at import of the code location)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"


def _sources_mtime() -> float:
    files = [
        p
        for p in DBT_PROJECT_DIR.rglob("*")
        if p.suffix in {".sql", ".yml", ".yaml"} and "target" not in p.parts and "logs" not in p.parts
    ]
    return max((p.stat().st_mtime for p in files), default=0.0)


def manifest_is_fresh() -> bool:
    return MANIFEST_PATH.exists() and MANIFEST_PATH.stat().st_mtime >= _sources_mtime()


def prepare_manifest(force: bool = False) -> Path:
    """Run ``dbt parse`` when the manifest is missing or older than the project files."""
    if force or not manifest_is_fresh():
        dbt = Path(sys.executable).with_name("dbt")
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        result = subprocess.run(
            [
                str(dbt),
                "parse",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{result.stdout}\n{result.stderr}")
    return MANIFEST_PATH
