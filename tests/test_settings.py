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


def test_resources_name_secrets_from_the_environment_and_take_code_settings_literally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dagster as dg

    from ticket_assets.defs.resources import resources_for

    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db.internal/ticketops")
    monkeypatch.setenv("TICKETOPS_ALERT_WEBHOOK_URL", "https://hooks.example/T0")
    monkeypatch.setenv("TICKETOPS_RETRAIN_MIN_LABELS", "77")
    resources = resources_for(Settings())
    postgres, alerts, platform = resources["postgres"], resources["alerts"], resources["platform"]
    # Config shown in the UI refers to the variables; the values are resolved when the run starts.
    assert (
        isinstance(postgres.database_url, dg.EnvVar) and postgres.database_url.env_var_name == "DATABASE_URL"
    )
    assert isinstance(alerts.webhook_url, dg.EnvVar)
    assert "s3cret" not in platform.values and "hooks.example" not in platform.values
    with dg.build_resources({"postgres": postgres, "platform": platform}) as built:
        assert built.postgres.url() == "postgresql://app:s3cret@db.internal/ticketops"
        assert built.platform.get().retrain_min_labels == 77

    # Settings built in code (tests, the CLI after resolving services) are taken as given.
    given = Settings().model_copy(
        update={
            "database_url": SecretStr("postgresql://postgres@127.0.0.1:5432/other"),
            "retrain_min_labels": 5,
        }
    )
    resources = resources_for(given)
    assert resources["postgres"].database_url == "postgresql://postgres@127.0.0.1:5432/other"
    with dg.build_resources({"platform": resources["platform"]}) as built:
        assert built.platform.get().retrain_min_labels == 5
