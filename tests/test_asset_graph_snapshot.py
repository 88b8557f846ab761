"""Snapshot of the asset graph: keys, dependencies, groups, kinds, owners and automation.

An intended change is recorded with ``UPDATE_SNAPSHOTS=1 pytest tests/test_asset_graph_snapshot.py``
and reviewed in the diff; anything else that changes the graph fails here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def describe_graph() -> dict:
    from ticket_assets.definitions import build_definitions
    from ticket_assets.settings import get_settings

    defs = build_definitions(get_settings())

    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        condition = node.automation_condition
        assets[key.to_user_string()] = {
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "automation": condition.get_label() or type(condition).__name__ if condition else None,
            "checks": sorted(check.name for check in node.check_keys),
            "has_description": bool(node.description),
            "materializable": node.is_materializable,
        }
    sensors = sorted(sensor.name for sensor in defs.sensors or [])
    schedules = sorted(schedule.name for schedule in defs.schedules or [])
    jobs = sorted(job.name for job in defs.jobs or [])
    return {"assets": assets, "sensors": sensors, "schedules": schedules, "jobs": jobs}


def test_asset_graph_matches_snapshot() -> None:
    current = describe_graph()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), "no snapshot yet: run with UPDATE_SNAPSHOTS=1 and commit it"
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, "asset graph changed; if intended, re-run with UPDATE_SNAPSHOTS=1 and review"


def test_every_materializable_asset_is_documented_and_owned() -> None:
    for key, node in describe_graph()["assets"].items():
        if not node["materializable"]:
            continue
        assert node["has_description"], f"{key} has no description"
        assert node["owners"], f"{key} has no owner"
        assert node["kinds"], f"{key} has no kinds"
        assert node["group"] in {
            "ingest",
            "dbt",
            "embeddings",
            "knowledge_base",
            "data_profile",
            "training",
            "monitoring",
            "memory",
            "serving",
        }, key
