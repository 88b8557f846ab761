#!/usr/bin/env bash
# Installs TicketOps into ./.venv. torch comes first and pinned: the CPU build 2.13.0 is what
# sentence-transformers gets; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# The dbt manifest, prepared by dagster-dbt as at image build (the code location loads it, never parses).
PATH="$PWD/.venv/bin:$PATH" .venv/bin/dagster-dbt project prepare-and-package --file ticket_assets/services/dbt.py >/dev/null
echo "installed: $(.venv/bin/ticketops --help >/dev/null && echo ticketops CLI ready)"
