#!/usr/bin/env bash
# Offline validation of everything under deploy/ and .github/workflows/ (no cluster, no Docker
# engine, no network). Exits non-zero on the first failure. Tools: deploy/requirements-check.txt.
#   bash deploy/check.sh
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
# Console scripts (hadolint, check-jsonschema) live next to the interpreter.
BIN_DIR="$("$PYTHON" -c 'import os, sys; print(os.path.dirname(sys.executable))')"
export PATH="$BIN_DIR:$PATH"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.33.0}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "yamllint"
"$PYTHON" -m yamllint --strict -c deploy/yamllint.yaml deploy .github/workflows

step "hadolint"
hadolint --failure-threshold info deploy/docker/Dockerfile

step "GitHub workflow schema"
check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

command -v kubectl >/dev/null || { echo "kubectl not found: the overlays are rendered with \`kubectl kustomize\` (kustomize v5)" >&2; exit 1; }
step "kubectl kustomize + Kubernetes ${KUBERNETES_VERSION} schemas (strict)"
for overlay in deploy/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    kubectl kustomize "$overlay" > "$out/$name.yaml"
    "$PYTHON" -m kubernetes_validate --strict --quiet -k "$KUBERNETES_VERSION" "$out/$name.yaml"
    echo "$name: $(grep -c '^kind:' "$out/$name.yaml") objects valid"
done
"$PYTHON" -m kubernetes_validate --strict --quiet -k "$KUBERNETES_VERSION" deploy/k8s/base/secrets.template.yaml
echo "secrets template valid"

step "Dagster instance from Helm values"
"$PYTHON" deploy/dagster_instance.py deploy/helm/dagster-values.yaml --namespace ticketops > "$out/dagster.yaml"
"$PYTHON" - "$out/dagster.yaml" <<'PY'
import sys

import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config_schema

result = validate_config(dagster_instance_config_schema(), yaml.safe_load(open(sys.argv[1])))
if not result.success:
    sys.exit("\n".join(error.message for error in result.errors))
print("dagster.yaml valid for dagster", __import__("dagster").__version__)
PY

step "all deploy checks passed"
