"""The dbt process started ahead of the dbt step (ticket_assets/services/dbt_worker.py): taken by a
real Dagster run's dbt step when it parsed for the step's project and connection, refused
otherwise, and never outliving the process that started it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.api import wait_for
from ticket_assets.core.paths import REPO_ROOT
from ticket_assets.services import dbt_worker
from ticket_assets.services.postgres import dbt_env


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}  # exited (a zombie until whoever adopted it reaps it)


@pytest.fixture(autouse=True)
def _no_spare_left():
    yield
    dbt_worker.discard()


def test_the_dbt_step_runs_in_the_worker_started_ahead(platform_env, fresh_db, monkeypatch):
    from tests.test_dbt_project import assert_marts_match_raw
    from ticket_assets.runner import dagster_instance, materialize
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.settings import get_settings, reset_settings_cache
    from ticket_assets.sources.store import ingest_synthetic

    monkeypatch.setenv("DATABASE_URL", fresh_db)
    reset_settings_cache()
    ingest_synthetic(fresh_db, n=300, seed=1)
    settings = prepare_environment(get_settings(), warm_dbt=True)
    assert dbt_worker._spare is not None
    pid = dbt_worker._spare.process.pid
    with dagster_instance(settings) as instance:
        outcome = materialize("group:ingest or group:dbt", instance=instance, settings=settings)
        messages = [entry.user_message or "" for entry in instance.all_logs(outcome.run_id)]
    assert outcome.success, outcome.errors
    assert any(f"pid {pid}" in message for message in messages), "the step did not take the worker"
    assert dbt_worker._spare is None and _ended(pid)
    assert "marts/training_set" in outcome.materialized
    assert_marts_match_raw(fresh_db)


def test_a_worker_parsed_for_another_database_is_not_used(fresh_db):
    env = dbt_env(fresh_db)
    dbt_worker.start({**env, "TICKETOPS_PG_DBNAME": "another_database"})
    process = dbt_worker._spare.process
    assert dbt_worker.take(["dbt", "build"], env) is None
    # Ended (discarded without waiting), not left parsing or waiting for a command.
    assert wait_for(lambda: process.poll() is not None, timeout_s=30)
    assert dbt_worker.take(["dbt", "build"], env) is None  # one spare, used or refused once


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_an_unused_worker_ends_with_the_process_that_started_it(fresh_db, ending):
    """A command that never reaches a dbt step (or is killed before it) leaves no dbt process."""
    script = (
        "import sys, time\n"
        "from ticket_assets.services import dbt_worker\n"
        "from ticket_assets.services.postgres import dbt_env\n"
        "dbt_worker.start(dbt_env(sys.argv[1]))\n"
        "print(dbt_worker._spare.process.pid, flush=True)\n"
        "if sys.argv[2] == 'sigkill':\n"
        "    time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, fresh_db, ending], stdout=subprocess.PIPE, cwd=REPO_ROOT
    )
    pid = int(parent.stdout.readline())
    if ending == "sigkill":
        parent.kill()  # no atexit: the worker learns it from the kernel (SIGINT on its parent's death)
    parent.wait(60)
    parent.stdout.close()
    assert wait_for(lambda: _ended(pid), timeout_s=60), "the dbt worker outlived its parent"
