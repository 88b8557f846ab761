"""The local Dagster instance's event log (ticket_assets/services/dagster_storage.py): the same
SQLite files and schema as Dagster's own storage, with connections kept open, read by other
processes (the UI, the daemon) as they are written."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from ticket_assets.services.dagster_storage import OPEN_FILES, PooledSqliteEventLogStorage
from ticket_assets.services.environment import DAGSTER_YAML, write_dagster_yaml


def _log(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None, level=20, user_message=message, run_id=run_id, timestamp=time.time()
    )


def _materialization(run_id: str, key: list[str]) -> EventLogEntry:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="__ASSET_JOB",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(asset_key=key, metadata={"rows": 3})
        ),
    )
    return EventLogEntry(
        error_info=None,
        level=20,
        user_message="",
        run_id=run_id,
        timestamp=time.time(),
        dagster_event=event,
        job_name="__ASSET_JOB",
    )


def test_local_instance_uses_the_pooled_event_log(tmp_path):
    write_dagster_yaml(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        # Same place as Dagster's default SQLite storage: runs recorded before stay visible.
        assert instance.event_log_storage._base_dir == str((tmp_path / "history" / "runs").resolve())


def test_dagster_yaml_upgrades_its_own_file_and_leaves_others_alone(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    earlier = DAGSTER_YAML.split("# Dagster's SQLite event log")[0]  # what earlier versions wrote
    (ours / "dagster.yaml").write_text(earlier)
    (theirs / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert "PooledSqliteEventLogStorage" in write_dagster_yaml(ours).read_text()
    assert write_dagster_yaml(theirs).read_text() == "telemetry:\n  enabled: false\n"


def test_events_are_read_back_by_another_process_while_the_writer_stays_open(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(_log("run-a", "first"))
    storage.store_event(_materialization("run-a", ["marts", "training_set"]))
    reader = (
        "import json, sys\n"
        "from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage\n"
        "s = SqliteEventLogStorage(sys.argv[1])\n"
        "logs = s.get_logs_for_run('run-a')\n"
        "key = __import__('dagster').AssetKey(['marts', 'training_set'])\n"
        "mat = s.get_latest_materialization_events([key])[key]\n"
        "print(json.dumps({'messages': [e.user_message for e in logs], 'indexed': mat is not None}))\n"
    )

    def read() -> dict:
        out = subprocess.run(
            [sys.executable, "-c", reader, str(tmp_path)], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = read()
    assert first["messages"][0] == "first" and len(first["messages"]) == 2
    assert first["indexed"]  # the cross-run index got the materialisation too
    storage.store_event(_log("run-a", "second"))  # the writer's connection is still open
    assert read()["messages"][-1] == "second"
    storage.dispose()


def test_open_files_stay_bounded_and_every_run_stays_readable(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    runs = [f"run-{n}" for n in range(OPEN_FILES + 4)]
    for run_id in runs:
        storage.store_event(_log(run_id, run_id))
    assert len(storage._engines) <= OPEN_FILES
    for run_id in runs:  # evicted files reopen on use
        assert [e.user_message for e in storage.get_logs_for_run(run_id)] == [run_id]
    storage.dispose()
    assert storage._engines == {}


def test_wipe_removes_the_run_files_and_storage_goes_on(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(_log("run-a", "before"))
    storage.wipe()
    assert storage.get_logs_for_run("run-a") == []
    storage.store_event(_log("run-a", "after"))
    assert [e.user_message for e in storage.get_logs_for_run("run-a")] == ["after"]
    storage.dispose()


@pytest.mark.parametrize("storage_class", [SqliteEventLogStorage, PooledSqliteEventLogStorage])
def test_same_files_either_way(tmp_path, storage_class):
    """Written by one class, read by the other: switching a home between them loses nothing."""
    writer = storage_class(str(tmp_path))
    writer.store_event(_log("run-a", "kept"))
    writer.dispose()
    other = PooledSqliteEventLogStorage if storage_class is SqliteEventLogStorage else SqliteEventLogStorage
    reader = other(str(tmp_path))
    assert [e.user_message for e in reader.get_logs_for_run("run-a")] == ["kept"]
    reader.dispose()
