"""The environment of a platform of its own, for tests whose Dagster runs, API and child processes
read their settings from it (no tests here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Configured services a developer's shell may carry: the test platform runs on embedded defaults.
EXTERNAL = ("MLFLOW_TRACKING_URI", "QDRANT_URL", "LLM_BASE_URL", "TICKETOPS_API_KEYS")


@contextmanager
def platform_environment(data_dir: Path, url: str, **extra: str) -> Iterator[None]:
    """Data directory, database, Dagster home and quick training (plus ``extra`` variables) for the
    block; the previous environment and settings afterwards."""
    from ticket_assets.settings import reset_settings_cache

    with pytest.MonkeyPatch.context() as mp:
        variables = {
            "TICKETOPS_DATA_DIR": str(data_dir),
            "DATABASE_URL": url,
            "DAGSTER_HOME": str(data_dir / "dh"),
            "TICKETOPS_TRAIN_QUICK": "1",
            **extra,
        }
        for key, value in variables.items():
            mp.setenv(key, value)
        for key in EXTERNAL:
            mp.delenv(key, raising=False)
        reset_settings_cache()
        try:
            yield
        finally:
            reset_settings_cache()
