"""Where the repository's parts live; the package keeps its checkout layout (editable install, image)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# Where dagster-dbt's DbtProject (ticket_assets/services/dbt.py) prepares the manifest.
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
KB_DIR = REPO_ROOT / "kb"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
