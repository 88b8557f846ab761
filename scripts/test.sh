#!/usr/bin/env bash
# Runs the test suite against a real PostgreSQL: DATABASE_URL when set, an embedded server otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest "$@"
