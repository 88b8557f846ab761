"""The settings object is the one reader of the environment; child processes get the same settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from ticket_assets.demo import demo_settings
from ticket_assets.settings import Settings, child_env, scoped_environment


def _settings_in_child(env: dict[str, str]) -> dict:
    code = (
        "import json; from ticket_assets.settings import Settings; s = Settings();"
        "print(json.dumps({'db': s.database_url.get_secret_value(), 'cron': s.drift_cron,"
        " 'labels': s.retrain_min_labels, 'keys': [k.get_secret_value() for k in s.api_keys],"
        " 'quick': s.train_quick, 'data': str(s.data_dir), 'home': str(s.resolved_dagster_home),"
        " 'executor': s.executor}))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_child_process_reads_exactly_the_parents_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr("postgresql://u:p@db.example:5432/ticketops"),
        drift_cron="* * * * *",
        retrain_min_labels=7,
        api_keys=[SecretStr("k1"), SecretStr("k2")],
        train_quick=True,
        executor="k8s",
    )
    child = _settings_in_child(child_env(settings))
    assert child == {
        "db": "postgresql://u:p@db.example:5432/ticketops",
        "cron": "* * * * *",
        "labels": 7,
        "keys": ["k1", "k2"],
        "quick": True,
        "data": str((tmp_path / "data").resolve()),
        "home": str((tmp_path / "data" / "dagster_home").resolve()),
        "executor": "k8s",
    }


def test_demo_pace_applies_only_where_the_environment_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETOPS_RETRAIN_MIN_LABELS", "321")
    monkeypatch.delenv("TICKETOPS_DRIFT_CRON", raising=False)
    settings = demo_settings(Settings())
    assert settings.retrain_min_labels == 321  # set explicitly: kept
    assert settings.drift_cron == "* * * * *"  # unset: the demo's minute cadence


def test_scoped_environment_puts_every_variable_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("TICKETOPS_TEST_KEPT", "before")
    monkeypatch.delenv("TICKETOPS_TEST_NEW", raising=False)
    monkeypatch.delenv("TICKETOPS_TEST_EXPORTED", raising=False)
    with scoped_environment(
        {"TICKETOPS_TEST_KEPT": "during", "TICKETOPS_TEST_NEW": "x"}, restore=["TICKETOPS_TEST_EXPORTED"]
    ):
        assert os.environ["TICKETOPS_TEST_KEPT"] == "during"
        os.environ["TICKETOPS_TEST_EXPORTED"] = "set by a library"
    assert os.environ["TICKETOPS_TEST_KEPT"] == "before"
    assert "TICKETOPS_TEST_NEW" not in os.environ
    assert "TICKETOPS_TEST_EXPORTED" not in os.environ
