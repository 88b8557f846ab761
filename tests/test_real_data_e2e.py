"""Real tickets end to end: a stratified sample of the public IT-service dataset (no dates, labels in
their original spelling) → import → the whole asset graph → `ticketops evaluate` on tickets the
platform never saw → the API → drift_report: no drift on in-domain traffic, drift on foreign
(synthetic) traffic. Skips where ../shared is absent.

The tests run in file order on one platform (one materialisation keeps the module to minutes).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ticket_assets.ml.splits import stratified_hash_split
from ticket_assets.settings import get_settings

pytestmark = pytest.mark.slow

SHARED_DATASET = Path(__file__).resolve().parents[2] / "shared/datasets/it-service-tickets/train.csv.gz"
SAMPLE_SHARE = 0.11  # ~4,200 of 38,269 tickets, every label in its own proportion
EVALUATE_SHARE = 0.18  # of the sample, kept out of the platform for `ticketops evaluate` and the API
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
BATCH = 32  # the API accepts up to 32 tickets per call


class RealPlatform:
    def __init__(self, url, settings, instance, imported, unseen, data_dir) -> None:
        self.url, self.settings, self.instance = url, settings, instance
        self.imported, self.unseen, self.data_dir = imported, unseen, data_dir

    def drift_report(self) -> dict:
        from ticket_assets.definitions import build_definitions

        result = (
            build_definitions(self.settings)
            .resolve_job_def("drift_monitoring")
            .execute_in_process(instance=self.instance, run_config=QUIET)
        )
        assert result.success
        event = self.instance.get_latest_materialization_event(dg.AssetKey("drift_report"))
        return {key: value.value for key, value in event.asset_materialization.metadata.items()}

    def predictions(self) -> int:
        with psycopg.connect(self.url) as conn:
            return conn.execute("select count(*) from ops.predictions").fetchone()[0]


def _stratified_sample(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.group_by("topic", maintain_order=True)
        .map_groups(lambda group: group.sample(fraction=SAMPLE_SHARE, seed=7))
        .sort("ticket_id")
    )


@pytest.fixture(scope="module")
def real(tmp_path_factory, pg_server_url):
    if not SHARED_DATASET.exists():
        pytest.skip(f"shared IT-service dataset not available at {SHARED_DATASET}")
    from tests.conftest import temporary_database
    from tests.support.platform import platform_environment
    from ticket_assets.runner import materialize
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.sources.csv_import import ColumnMapping
    from ticket_assets.sources.store import ingest_csv

    sample = _stratified_sample(pl.read_csv(SHARED_DATASET))
    split = stratified_hash_split(sample["ticket_id"].to_list(), sample["topic"].to_list(), EVALUATE_SHARE)
    sample = sample.with_columns(part=pl.Series(split))
    imported = sample.filter(pl.col("part") == "train").drop("part")
    unseen = sample.filter(pl.col("part") == "test").drop("part")
    data_dir = tmp_path_factory.mktemp("real")
    imported.write_csv(data_dir / "import.csv")
    unseen.write_csv(data_dir / "unseen.csv")

    with temporary_database(pg_server_url, "ticketops_real") as url, platform_environment(data_dir, url):
        settings = prepare_environment(get_settings())
        report = ingest_csv(
            url,
            data_dir / "import.csv",
            ColumnMapping(text_col="text", topic_col="topic", id_col="ticket_id"),
        )
        assert report.inserted == imported.height
        with dg.instance_for_test() as instance:
            outcome = materialize(None, instance=instance, run_config=QUIET)
            assert outcome.success, outcome.failed_steps
            yield RealPlatform(url, settings, instance, imported, unseen, data_dir)


def test_undated_export_gets_a_stratified_hash_split_and_keeps_its_spelling(real: RealPlatform) -> None:
    with psycopg.connect(real.url) as conn:
        rows = conn.execute(
            "select topic, topic_display, split, split_rule from marts.training_set"
        ).fetchall()
    assert {rule for *_, rule in rows} == {"hash"}
    assert {key: display for key, display, *_ in rows}["hr_support"] == "HR Support"
    overall = Counter(key for key, *_ in rows)
    held_out = Counter(key for key, _, split, _ in rows if split == "test")
    # The holdout has the data's label mix (the time rule on one load time would not).
    for topic, n in overall.items():
        assert held_out[topic] == round(n * 0.2), topic
    event = real.instance.get_latest_materialization_event(dg.AssetKey("ticket_classifier"))
    assert event.asset_materialization.metadata["split_rule"].value == "hash (stratified by topic)"


def test_evaluate_maps_the_files_labels_and_reports_the_training_metrics(real: RealPlatform) -> None:
    from ticket_assets.cli import app

    result = CliRunner().invoke(
        app, ["evaluate", str(real.data_dir / "unseen.csv"), "--text-col", "text", "--topic-col", "topic"]
    )
    assert result.exit_code == 0, result.output
    stdout = result.stdout
    metrics = json.loads(stdout[stdout.index("{") :])
    assert metrics["n_holdout"] == real.unseen.height
    assert metrics["label_mapping"]["topic"] == {"matched_rows": real.unseen.height, "unmapped": {}}
    topic = metrics["topic"]
    assert topic["macro_f1"] > 0.75, topic["macro_f1"]
    assert set(topic["per_class"]) == {
        "access", "administrative_rights", "hardware", "hr_support", "internal_project", "miscellaneous",
        "purchase", "storage",
    }  # fmt: skip
    assert len(topic["confusion_matrix"]) == 8
    assert metrics["display_names"]["administrative_rights"] == "Administrative rights"
    assert "confusion matrix" in result.stderr and "HR Support" in result.stderr

    # A file whose labels the model does not know fails in one clear line.
    foreign = real.data_dir / "foreign.csv"
    real.unseen.head(20).with_columns(topic=pl.lit("Payroll")).write_csv(foreign)
    refused = CliRunner().invoke(
        app, ["evaluate", str(foreign), "--text-col", "text", "--topic-col", "topic"]
    )
    assert refused.exit_code == 2
    assert "none of the 20 topics" in refused.stderr and "Traceback" not in refused.output
    assert len(refused.stderr.strip().splitlines()) == 1


def test_in_domain_traffic_is_no_drift_and_foreign_traffic_is(real: RealPlatform) -> None:
    from serving.app import create_app
    from ticket_assets.sources.synthetic import generate_tickets

    with TestClient(create_app(real.settings)) as client:
        before = real.predictions()
        texts = real.unseen["text"].to_list()
        names: set[str] = set()
        for offset in range(0, len(texts), BATCH):
            response = client.post(
                "/v1/triage", json={"tickets": [{"text": t} for t in texts[offset : offset + BATCH]]}
            )
            assert response.status_code == 200, response.text
            names.update(result["topic_name"] for result in response.json()["results"])
        assert "HR Support" in names and "hr_support" not in names
        answer = client.post("/v1/answer", json={"ticket": {"text": texts[0]}}).json()
        assert answer["triage"]["topic_name"] == real_display(answer["triage"]["topic"], real)
    assert real.predictions() >= before + len(texts)

    in_domain = real.drift_report()
    assert in_domain["verdict"] == "no_drift", in_domain["reason"]

    synthetic = generate_tickets(400, seed=5)
    with TestClient(create_app(real.settings)) as client:
        for offset in range(0, synthetic.height, BATCH):
            chunk = synthetic.slice(offset, BATCH)
            response = client.post(
                "/v1/triage",
                json={
                    "tickets": [
                        {"title": t, "text": b} for t, b in zip(chunk["title"], chunk["body"], strict=True)
                    ]
                },
            )
            assert response.status_code == 200, response.text
    foreign = real.drift_report()
    assert foreign["verdict"] == "drift", foreign["reason"]


def real_display(key: str, real: RealPlatform) -> str:
    with psycopg.connect(real.url) as conn:
        return conn.execute(
            "select topic_display from marts.training_set where topic = %s"
            " group by topic_display order by count(*) desc limit 1",
            (key,),
        ).fetchone()[0]


def test_unchanged_data_trains_nothing_until_forced(real: RealPlatform, monkeypatch) -> None:
    from ticket_assets.ml.registry import list_versions
    from ticket_assets.runner import materialize
    from ticket_assets.settings import reset_settings_cache

    def versions() -> list[str]:
        return [v["version"] for v in list_versions(real.settings.model_name, real.settings)]

    before = versions()
    outcome = materialize("key:ticket_classifier", instance=real.instance, run_config=QUIET)
    assert outcome.success, outcome.failed_steps
    assert versions() == before
    monkeypatch.setenv("TICKETOPS_FORCE_TRAIN", "1")
    reset_settings_cache()
    try:
        forced = materialize("key:ticket_classifier", instance=real.instance, run_config=QUIET)
    finally:
        monkeypatch.delenv("TICKETOPS_FORCE_TRAIN")
        reset_settings_cache()
    assert forced.success, forced.failed_steps
    assert len(versions()) == len(before) + 1
    event = real.instance.get_latest_materialization_event(dg.AssetKey("ticket_classifier"))
    assert event.asset_materialization.metadata["training"].value == "trained (forced)"
