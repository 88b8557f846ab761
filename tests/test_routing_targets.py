"""Routing targets (assignment group, queue...): CSV import -> raw -> dbt -> training set -> model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from tests.support.dbt import run_dbt
from tests.support.ml import synthetic_training_set, tiny_config
from ticket_assets.cli import app
from ticket_assets.ml.dataset import load_training_set, with_routing_columns
from ticket_assets.ml.evaluate import evaluate_model, majority_baseline_metrics
from ticket_assets.ml.gate import evaluate_gate
from ticket_assets.ml.train import train_triage_model
from ticket_assets.sources.synthetic import ASSIGNMENT_GROUPS, TOPIC_GROUPS, generate_tickets

runner = CliRunner()


@pytest.fixture()
def cli_db(platform_env, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    return fresh_db


def test_csv_label_col_reaches_the_training_set_through_dbt(cli_db: str, tmp_path: Path) -> None:
    groups = {"Network": "Network Team", "Hardware": "Deskside Support"}
    lines = ["id,subject,body,category,Assigned Group,Queue"]
    for i in range(12):
        topic = "Network" if i % 2 else "Hardware"
        queue = "" if i == 3 else f"Q{i % 3}"  # a blank label is no label
        lines.append(
            f"{i},Ticket {i},Problem number {i} with my {topic.lower()},{topic},{groups[topic]},{queue}"
        )
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n")

    result = runner.invoke(
        app,
        [
            "ingest", "csv", str(path), "--text-col", "body", "--title-col", "subject", "--id-col", "id",
            "--topic-col", "category", "--label-col", "assignment_group=Assigned Group", "--label-col", "queue=Queue",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    with psycopg.connect(cli_db) as conn:
        raw = dict(conn.execute("select ticket_id, labels from raw.tickets").fetchall())
        extra = conn.execute("select extra from raw.tickets limit 1").fetchone()[0]
    assert len(raw) == 12
    assert {json.dumps(v, sort_keys=True) for v in raw.values()} >= {
        json.dumps({"assignment_group": "network_team", "queue": "q1"}, sort_keys=True)
    }
    assert [v for v in raw.values() if "queue" not in v] == [{"assignment_group": "network_team"}]
    assert "Assigned Group" not in extra and "Queue" not in extra  # mapped columns are not extras

    run_dbt(cli_db, tmp_path, "build")
    with psycopg.connect(cli_db) as conn:
        frame = load_training_set(conn)
    assert frame.height == 12
    by_topic = dict(zip(frame["topic"].to_list(), frame["assignment_group"].to_list(), strict=True))
    assert by_topic == {"network": "network_team", "hardware": "deskside_support"}
    assert frame["queue"].null_count() == 1
    assert set(frame["queue"].drop_nulls()) == {"q0", "q1", "q2"}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("assignment_group", "NAME=COLUMN"),
        ("Topic=category", "lower-case"),
        ("urgency=category", "built-in column"),
        ("queue=Missing", "mapped as label-col queue"),
    ],
)
def test_bad_label_col_is_one_clear_line(cli_db: str, tmp_path: Path, option: str, message: str) -> None:
    path = tmp_path / "export.csv"
    path.write_text("body,category\nmy screen is dark,Hardware\n")
    result = runner.invoke(app, ["ingest", "csv", str(path), "--text-col", "body", "--label-col", option])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def _frame_with_groups(n: int = 400, seed: int = 5):
    frame = synthetic_training_set(n, seed)
    labels = generate_tickets(n, seed=seed).select("ticket_id", "labels")
    return with_routing_columns(frame.join(labels, on="ticket_id", how="left"))


def test_synthetic_assignment_group_follows_topic_and_department_with_some_noise() -> None:
    tickets = with_routing_columns(generate_tickets(2000, seed=3))
    groups = tickets["assignment_group"].to_list()
    assert set(groups) <= set(ASSIGNMENT_GROUPS)
    expected = [TOPIC_GROUPS[t] for t in tickets["topic"].to_list()]
    agreement = np.mean([g == e for g, e in zip(groups, expected, strict=True)])
    assert 0.80 < agreement < 0.97  # mostly the topic's team, not always
    executive = tickets.filter(
        (tickets["department"] == "Executive Office") & tickets["topic"].is_in(["hardware", "printer"])
    )
    assert (executive["assignment_group"] == "vip_support").mean() > 0.8


def test_routing_target_is_trained_evaluated_and_gated_like_topic() -> None:
    frame = _frame_with_groups()
    train, test = frame.filter(frame["split"] == "train"), frame.filter(frame["split"] == "test")
    outcome = train_triage_model(train, None, None, tiny_config())
    model = outcome.model
    assert list(model.targets) == ["topic", "urgency", "assignment_group"]
    assert model.routing_targets == ["assignment_group"]

    metrics = evaluate_model(model, test, None, with_figures=False).metrics
    baseline = majority_baseline_metrics(train, test, list(model.targets))
    assert metrics["assignment_group"]["macro_f1"] > baseline["assignment_group"]["macro_f1"]
    decision = evaluate_gate(metrics, None, baseline)
    assert any(reason.startswith("assignment_group:") for reason in decision.reasons)

    # The champion had the target: a challenger without it fails the gate.
    without = {k: v for k, v in metrics.items() if k != "assignment_group"}
    failed = evaluate_gate(without, metrics, baseline)
    assert not failed.passed
    assert "assignment_group: the champion predicts it, the challenger does not" in failed.reasons

    [prediction] = model.predict([test["text"][0]])
    routed = prediction.routing["assignment_group"]
    assert routed["label"] in model.labels("assignment_group")
    assert routed["confidence"] == pytest.approx(max(routed["probabilities"].values()))


def test_a_routing_target_with_too_few_labels_is_not_trained() -> None:
    frame = _frame_with_groups()
    train = frame.filter(frame["split"] == "train")
    # Only 30 tickets keep their group: under min_routing_labels (50).
    sparse = train.with_columns(
        assignment_group=train["assignment_group"].scatter(list(range(30, train.height)), None),
        labels=train["labels"].scatter(list(range(30, train.height)), None),
    )
    outcome = train_triage_model(sparse, None, None, tiny_config())
    assert "assignment_group" not in outcome.model.targets
