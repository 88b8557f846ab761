"""The OpenAPI document against the live server: schemathesis with every check, 0 failures allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serving.app import create_app
from tests.support.api import API_KEYS, ApiWorld, running_server


def test_schemathesis_finds_no_difference_between_the_schema_and_the_server(
    world: ApiWorld, tmp_path: Path
) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    with running_server(create_app(world.settings)) as server:
        command = [
            str(schemathesis),
            "run",
            f"{server.base_url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"X-API-Key: {API_KEYS[0]}",
            "--max-examples",
            os.environ.get("TICKETOPS_SCHEMATHESIS_EXAMPLES", "40"),
            "--seed",
            "11",
            "--phases",
            "examples,coverage,fuzzing",
            "--suppress-health-check",
            "too_slow,data_too_large",
            "--no-color",
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = run.stdout[-12000:] + run.stderr[-3000:]
    assert run.returncode == 0, report
    assert "No issues found" in run.stdout or " 0 failures" in run.stdout or "passed" in run.stdout, report
