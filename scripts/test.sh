#!/usr/bin/env bash
# Runs the test suite against a real PostgreSQL: DATABASE_URL when set, an embedded server otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# dbt and dagster of this environment first: dagster-dbt's manifest preparer runs the dbt on PATH.
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -m pytest "$@"
