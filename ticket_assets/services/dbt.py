"""The dbt project and how its manifest is prepared: by dagster-dbt's ``DbtProject`` preparer.

``dagster dev``/``dg dev`` re-parse at load (``prepare_if_dev``); install, CI and the image build run
``dagster-dbt project prepare-and-package --file ticket_assets/services/dbt.py``; the ``ticketops``
commands call :func:`prepare_manifest` (``dbt parse``, which itself skips what did not change).
dagster-dbt's preparer runs the ``dbt`` on PATH: the CLI and scripts/test.sh put this
environment's ``bin`` first, the image has it on PATH.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dagster_dbt import DbtProject

from ticket_assets.core.paths import DBT_MANIFEST, DBT_PROJECT_DIR

# dbt next to this interpreter, for the run-time resource: works from an unactivated venv too.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
assert dbt_project.manifest_path == DBT_MANIFEST, "core.paths.DBT_MANIFEST must follow the DbtProject"


def prepare_manifest() -> Path:
    """Parse the project now, as ``prepare-and-package`` does (dbt's partial parsing keeps it quick)."""
    dbt_project.preparer.prepare(dbt_project)
    return dbt_project.manifest_path
