"""The partitioned embedding backfill: real Dagster runs, the real int8 model, a real PostgreSQL,
and a real `ticketops backfill embeddings` process killed mid-run and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import dagster as dg
import pytest
from pydantic import SecretStr

from tests.conftest import temporary_database
from tests.support.ml import model_cache_dir
from ticket_assets.defs.keys import TICKET_EMBEDDINGS, TICKET_EMBEDDINGS_BACKFILL
from ticket_assets.ml.embed import model_id_for
from ticket_assets.ml.embedding_backfill import (
    EMBEDDING_PARTITION_KEYS,
    backfill_status,
    bucket_of,
    check_partition_keys,
)
from ticket_assets.services.postgres import connect
from ticket_assets.settings import Settings, child_env, reset_settings_cache

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
TICKETS = 500
MODEL_ID = model_id_for("onnx")


@pytest.fixture(scope="module")
def platform(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A database with a built `marts.training_set` (real ingest and dbt runs) and its settings:
    small write chunks, so a kill lands between commits."""
    from ticket_assets.runner import dagster_instance, materialize
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.services.migrations import migrate

    with temporary_database(pg_server_url, "ticketops_backfill") as url:
        migrate(url)
        settings = Settings(
            data_dir=tmp_path_factory.mktemp("backfill"),
            database_url=SecretStr(url),
            model_cache_dir=model_cache_dir(),
            embed_write_chunk=8,
        )
        settings = prepare_environment(settings, prepare_dbt=False)
        instance = dagster_instance(settings)
        config = {**QUIET, "ops": {"raw__tickets": {"config": {"synthetic_tickets": TICKETS, "seed": 11}}}}
        outcome = materialize(
            "group:ingest or group:dbt", instance=instance, run_config=config, settings=settings
        )
        instance.dispose()
        assert outcome.success, outcome.errors
        yield settings
        reset_settings_cache()


def stored_hashes(settings: Settings) -> set[str]:
    with connect(settings.database_url.get_secret_value()) as conn:
        rows = conn.execute(
            "select text_hash from features.ticket_embeddings where model_id = %s", (MODEL_ID,)
        ).fetchall()
    return {row[0] for row in rows}


def status(settings: Settings):
    with connect(settings.database_url.get_secret_value()) as conn:
        return backfill_status(conn, MODEL_ID)


def clear_store(settings: Settings) -> None:
    with connect(settings.database_url.get_secret_value()) as conn:
        conn.execute("delete from features.ticket_embeddings")
        conn.commit()


def test_partition_keys_cover_every_text_once() -> None:
    hashes = [f"{i:064x}" for i in range(2000)]
    buckets = {key: [h for h in hashes if bucket_of(h) == key] for key in EMBEDDING_PARTITION_KEYS}
    assert sum(len(b) for b in buckets.values()) == len(hashes)
    assert min(len(b) for b in buckets.values()) > 2000 / 16 / 2  # even enough to spread
    assert check_partition_keys(["3", "a", "3"]) == ["3", "a"]
    with pytest.raises(ValueError, match="'g'"):
        check_partition_keys(["g"])


def test_partitions_materialise_and_the_daily_asset_reuses_them(platform: Settings) -> None:
    from ticket_assets.runner import dagster_instance, materialize

    clear_store(platform)
    before = status(platform)
    assert before.stored == 0 and before.total > 0
    with dagster_instance(platform) as instance:
        for key in ("3", "c"):
            outcome = materialize(
                f"key:{TICKET_EMBEDDINGS_BACKFILL.to_user_string()}",
                instance=instance,
                run_config=QUIET,
                settings=platform,
                partition_key=key,
            )
            assert outcome.success, outcome.errors
            assert outcome.materialized == [TICKET_EMBEDDINGS_BACKFILL.to_user_string()]
        stored = stored_hashes(platform)
        # Exactly the two buckets' texts, all of them.
        with connect(platform.database_url.get_secret_value()) as conn:
            two_buckets = backfill_status(conn, MODEL_ID, ["3", "c"])
        assert two_buckets.stored == two_buckets.total == len(stored) > 0
        assert {bucket_of(h) for h in stored} == {"3", "c"}
        partitions = instance.get_materialized_partitions(TICKET_EMBEDDINGS_BACKFILL)
        assert partitions == {"3", "c"}
        event = instance.get_latest_materialization_event(TICKET_EMBEDDINGS_BACKFILL)
        metadata = event.asset_materialization.metadata
        assert metadata["partition"].value == "c" and metadata["encoded"].value > 0

        # The daily graph stays unpartitioned: the group runs without a partition and skips the
        # backfill asset; the daily asset encodes only what the partitions did not store.
        outcome = materialize("group:embeddings", instance=instance, run_config=QUIET, settings=platform)
        assert outcome.success, outcome.errors
        assert outcome.materialized == [TICKET_EMBEDDINGS.to_user_string()]
        daily = outcome.metadata[TICKET_EMBEDDINGS.to_user_string()]
        assert daily["already_embedded"] == len(stored)
        assert daily["encoded"] == before.total - len(stored)
        with pytest.raises(ValueError, match="only partitioned assets"):
            materialize(
                f"key:{TICKET_EMBEDDINGS_BACKFILL.to_user_string()}", instance=instance, settings=platform
            )
    assert status(platform).missing == 0


def _backfill(settings: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ticket_assets.cli", "backfill", "embeddings", *args],
        env=child_env(settings, {"COLUMNS": "200"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )


def test_killed_backfill_resumes_without_re_encoding(platform: Settings) -> None:
    from ticket_assets.runner import dagster_instance

    # Four of the sixteen partitions: every run costs Dagster's start-up, and four are enough to
    # kill mid-backfill and resume across two processes.
    parts = ["0", "5", "a", "f"]
    selection = [arg for key in parts for arg in ("--partition", key)]
    clear_store(platform)
    with connect(platform.database_url.get_secret_value()) as conn:
        total = backfill_status(conn, MODEL_ID, parts).total
    process = _backfill(platform, "--processes", "1", *selection)
    deadline = time.monotonic() + 180
    try:
        while len(stored_hashes(platform)) < total // 4:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the backfill stored nothing in time"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(0.5)  # the kernel has finished the kill; nothing writes any more
    kept = stored_hashes(platform)
    assert total // 4 <= len(kept) < total, "the kill must land mid-backfill"

    with dagster_instance(platform) as instance:
        seen = {r.storage_id for r in _materializations(instance)}
    resumed = _backfill(platform, "--processes", "2", *selection)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "4 partitions on 2 processes x 1 embedding threads" in output
    assert f"{total}/{total} texts stored" in output

    # Everything is stored now; the resumed runs encoded exactly what the kill left missing.
    assert stored_hashes(platform) >= kept and len(stored_hashes(platform)) == total
    assert {bucket_of(h) for h in stored_hashes(platform)} == set(parts)
    with dagster_instance(platform) as instance:
        new = [r for r in _materializations(instance) if r.storage_id not in seen]
    assert {r.partition_key for r in new} == set(parts)
    encoded = sum(r.asset_materialization.metadata["encoded"].value for r in new)
    assert encoded == total - len(kept)
    assert {r.asset_materialization.metadata["threads"].value for r in new} == {1}


def _materializations(instance: dg.DagsterInstance) -> list:
    return list(instance.fetch_materializations(TICKET_EMBEDDINGS_BACKFILL, limit=1000).records)


def test_unknown_partition_is_one_line_exit_2() -> None:
    from typer.testing import CliRunner

    from ticket_assets.cli import app

    # Rejected before any service is touched (no settings or database needed).
    result = CliRunner().invoke(app, ["backfill", "embeddings", "--partition", "3", "--partition", "x"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown embedding partition 'x': partitions are 0..f"
    ]
