"""The dbt project and how its manifest is prepared: by dagster-dbt's ``DbtProject`` preparer.

``dagster dev``/``dg dev`` re-parse at load (``prepare_if_dev``); install, CI and the image build run
``dagster-dbt project prepare-and-package --file ticket_assets/services/dbt.py``; the ``ticketops``
commands call :func:`prepare_manifest`, which starts dbt only when a file dbt parses (or the
connection it parses for) changed since the manifest was prepared.
dagster-dbt's preparer runs the ``dbt`` on PATH: the CLI and scripts/test.sh put this
environment's ``bin`` first, the image has it on PATH.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dagster_dbt import DbtProject

from ticket_assets.core.paths import DBT_MANIFEST, DBT_PROJECT_DIR
from ticket_assets.services.dbt_parse import project_fingerprint

# dbt next to this interpreter, for the run-time resource: works from an unactivated venv too.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
assert dbt_project.manifest_path == DBT_MANIFEST, "core.paths.DBT_MANIFEST must follow the DbtProject"
_PARSE_KEY = DBT_MANIFEST.parent / "ticketops-parse.key"


def _manifest_stamp() -> str:
    stat = dbt_project.manifest_path.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def prepare_manifest() -> Path:
    """Parse the project now, as ``prepare-and-package`` does, unless nothing dbt parses changed
    since this function last prepared the manifest (starting dbt costs seconds even when its
    partial parsing then skips every file)."""
    fingerprint = project_fingerprint()
    if dbt_project.manifest_path.exists() and _PARSE_KEY.exists():
        if _PARSE_KEY.read_text() == f"{fingerprint}\n{_manifest_stamp()}":
            return dbt_project.manifest_path
    dbt_project.preparer.prepare(dbt_project)
    _PARSE_KEY.write_text(f"{fingerprint}\n{_manifest_stamp()}")
    return dbt_project.manifest_path
