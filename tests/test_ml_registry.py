"""Registry, promotion gate and the training pipeline against a real MLflow SQLite store and Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import pytest

from tests.support.dbt import run_dbt
from tests.support.ml import corpus, ml_settings, tiny_config, trained
from ticket_assets.core.paths import REPO_ROOT
from ticket_assets.ml import pipeline, registry
from ticket_assets.ml.dataset import TrainingData
from ticket_assets.ml.evaluate import evaluate_model, majority_baseline_metrics
from ticket_assets.ml.train import train_triage_model
from ticket_assets.settings import Settings
from ticket_assets.sources.store import ingest_synthetic


@dataclass
class Registered:
    settings: Settings
    url: str
    version: str
    metrics: dict


@pytest.fixture(scope="module")
def registered(pg_url: str) -> Registered:
    """The shared trained model, logged and registered once (version 1, alias challenger)."""
    world = trained()
    data = world.corpus
    settings = ml_settings(Path(tempfile.mkdtemp(prefix="ticketops-mlreg-")), pg_url, "ticket-triage-regtest")
    evaluation = evaluate_model(world.outcome.model, data.test, data.test_embeddings, data.embedding_model_id)
    version = registry.log_training_run(
        world.outcome.model,
        evaluation.metrics,
        evaluation.figures,
        params={"train": tiny_config().as_params()},
        data_version={
            "training_set_rows": data.frame.height,
            "training_set_sha256": "1a2b3c4d" + "0" * 56,
            "max_event_at": str(data.frame["event_at"].max()),
        },
        settings=settings,
        reports={"training": world.outcome.as_dict()},
        db_url=pg_url,
        datasets={"train": data.train, "holdout": data.test},
    )
    return Registered(settings, pg_url, version.version, evaluation.metrics)


def _events(url: str, name: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select alias, from_version, to_version, actor from ops.model_alias_events "
            "where model_name = %s order by id",
            (name,),
        ).fetchall()


def test_registered_version_is_the_challenger_with_its_data_version(registered: Registered) -> None:
    name = registered.settings.model_name
    assert registry.get_alias_version(name, registry.CHALLENGER, registered.settings) == registered.version
    assert registry.get_alias_version(name, registry.CHAMPION, registered.settings) is None
    [listed] = [
        v for v in registry.list_versions(name, registered.settings) if v["version"] == registered.version
    ]
    assert registry.CHALLENGER in listed["aliases"]
    assert listed["data_version"]["training_set_rows"] == str(corpus().frame.height)
    assert listed["metrics"]["topic.macro_f1"] == pytest.approx(
        registered.metrics["topic"]["macro_f1"], abs=1e-6
    )
    assert ("challenger", None, int(registered.version), "training") in _events(registered.url, name)


def test_the_run_says_what_it_is_and_the_ui_opens_on_runs(registered: Registered) -> None:
    from ticket_assets.ml.dataset import content_hash

    settings, name = registered.settings, registered.settings.model_name
    client = registry.configure_mlflow(settings)
    # The MLflow 3 UI shows an experiment without this tag as GenAI traces, not training runs.
    experiment = client.get_experiment_by_name(name)
    assert experiment.tags[registry.EXPERIMENT_KIND_TAG] == "custom_model_development"
    version = client.get_model_version(name, registered.version)
    run = client.get_run(version.run_id)
    rows = f"{corpus().frame.height:,} rows"
    chosen = trained().outcome.model.metadata["chosen"]["topic"]
    assert run.info.run_name == f"{name} v{registered.version} · {chosen} · {rows} · data 1a2b3c4d"

    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{name}-train", f"{name}-holdout"}
    train = inputs[f"{name}-train"]
    assert train.dataset.digest == content_hash(corpus().train)[:16]
    assert {t.key: t.value for t in train.tags}["mlflow.data.context"] == "train"
    assert json.loads(train.dataset.profile)["num_rows"] == corpus().train.height
    assert "topic" in train.dataset.schema

    assert "predicts the topic" in client.get_registered_model(name).description
    description = version.description
    assert description.startswith("Predicts: topic") and rows in description
    assert "topic.macro_f1" in description and description.endswith("Gate: not judged yet.")
    registry.record_gate_verdict(settings, registered.version, False, "macro-F1 0.41 < baseline + 0.05")
    registry.record_gate_verdict(settings, registered.version, True, "beats the baseline")
    again = client.get_model_version(name, registered.version).description
    assert again.endswith("Gate: passed: beats the baseline") and again.count("Gate:") == 1


def test_run_artifacts_are_in_the_data_dir_store(registered: Registered) -> None:
    from mlflow import MlflowClient

    settings = registered.settings
    client = registry.configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.model_name)
    assert experiment.artifact_location == settings.mlflow_artifact_root.resolve().as_uri()
    run_id = client.get_model_version(settings.model_name, registered.version).run_id
    run = MlflowClient(settings.resolved_mlflow_uri).get_run(run_id)
    assert run.data.metrics["topic.macro_f1"] == pytest.approx(registered.metrics["topic"]["macro_f1"])
    assert "topic.per_class.printer.recall" in run.data.metrics
    assert run.data.tags["data.training_set_rows"] == str(corpus().frame.height)
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for folder in ("figures", "metrics") for a in client.list_artifacts(run_id, folder)
    }
    assert {"figures/confusion_matrix_topic.png", "metrics/holdout.json", "reports"} <= artifacts
    assert (settings.mlflow_artifact_root / run_id / "artifacts" / "figures").is_dir()


def test_fresh_process_loads_the_version_and_predicts_the_same(registered: Registered) -> None:
    world = trained()
    data = world.corpus
    texts = data.test["text"].to_list()[:25]
    expected = world.outcome.model.predict(texts, data.test_embeddings[:25])
    settings = registered.settings
    script = """
import json, sys
import mlflow, pandas as pd
from ticket_assets.ml import registry
from ticket_assets.ml.predict import embedder_settings
from ticket_assets.settings import get_settings
name, version = sys.argv[1], sys.argv[2]
texts = json.loads(sys.stdin.read())
mlflow.set_tracking_uri(get_settings().resolved_mlflow_uri)
frame = mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(pd.DataFrame({"text": texts}))
model, info = registry.load_model_version(name, version, get_settings())
with embedder_settings(get_settings()):
    unwrapped = [p.topic for p in model.predict(texts)]
print(json.dumps({"pyfunc": frame.to_dict(orient="list"), "unwrapped": unwrapped, "version": info.version}))
"""
    env = {
        **os.environ,
        "TICKETOPS_DATA_DIR": str(settings.data_dir),
        "TICKETOPS_MODEL_CACHE_DIR": str(settings.resolved_model_cache_dir),
        "TICKETOPS_MODEL_NAME": settings.model_name,
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", script, settings.model_name, registered.version],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # nothing from the working directory may be needed
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == registered.version
    assert result["pyfunc"]["topic"] == [p.topic for p in expected]
    assert result["pyfunc"]["urgency"] == [p.urgency for p in expected]
    assert np.allclose(
        result["pyfunc"]["topic_confidence"], [p.topic_confidence for p in expected], atol=1e-4
    )
    assert result["unwrapped"] == [p.topic for p in expected]


def test_gate_rejects_a_worse_model_and_the_champion_stays(registered: Registered) -> None:
    settings, url, name = registered.settings, registered.url, registered.settings.model_name
    data = trained().corpus
    registry.promote(registered.version, "test", "first champion", url=url, settings=settings)

    # A model trained on shuffled labels has learnt nothing real.
    rng = np.random.default_rng(3)
    shuffled = data.train.with_columns(
        topic=pl.Series(rng.permutation(data.train["topic"].to_numpy())),
        urgency=pl.Series(rng.permutation(data.train["urgency"].to_numpy())),
    )
    worse = train_triage_model(shuffled, data.train_embeddings, data.embedding_model_id, tiny_config())
    worse_metrics = evaluate_model(worse.model, data.test, data.test_embeddings, with_figures=False).metrics
    challenger = registry.log_training_run(
        worse.model,
        worse_metrics,
        {},
        {},
        {"training_set_rows": data.frame.height},
        settings=settings,
        db_url=url,
    )
    training_data = TrainingData(
        data.train, data.test, data.train_embeddings, data.test_embeddings, data.embedding_model_id
    )
    baseline = majority_baseline_metrics(data.train, data.test)
    champion = pipeline.score_champion(training_data, registered.version, settings)
    decision = pipeline.judge(worse_metrics, baseline, champion)

    assert champion.version == registered.version
    assert not decision.passed
    assert any("macro-F1" in reason and "champion" in reason for reason in decision.reasons)
    assert decision.comparisons["topic"]["champion_macro_f1"] == pytest.approx(
        registered.metrics["topic"]["macro_f1"]
    )
    assert registry.get_alias_version(name, registry.CHAMPION, settings) == registered.version
    assert registry.get_alias_version(name, registry.CHALLENGER, settings) == challenger.version


def _use_in_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from ticket_assets.settings import reset_settings_cache

    monkeypatch.setenv("TICKETOPS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("TICKETOPS_MODEL_NAME", settings.model_name)
    monkeypatch.setenv("TICKETOPS_MODEL_CACHE_DIR", str(settings.resolved_model_cache_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(settings.data_dir / "dagster_home"))
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    reset_settings_cache()
    monkeypatch.setattr("ticket_assets.settings._current", None)  # reset again when the test ends


def _champion_metadata(settings: Settings) -> dict:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(settings.data_dir / "dagster_home"))
    event = instance.get_latest_materialization_event(dg.AssetKey("champion_model"))
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def test_cli_promote_then_rollback_run_the_champion_asset(
    registered: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ticket_assets.cli import app

    settings, url, name = registered.settings, registered.url, registered.settings.model_name
    champion = registry.get_alias_version(name, registry.CHAMPION, settings)
    challenger = registry.get_alias_version(name, registry.CHALLENGER, settings)
    if champion is None:
        registry.promote(registered.version, "test", "first champion", url=url, settings=settings)
        champion = registered.version
    if challenger in (None, champion):  # no other test registered a second version
        data = trained().corpus
        challenger = registry.log_training_run(
            trained().outcome.model,
            registered.metrics,
            {},
            {},
            {"training_set_rows": data.frame.height},
            settings=settings,
            db_url=url,
        ).version
    _use_in_cli(settings, monkeypatch)
    cli = CliRunner()

    promoted = cli.invoke(app, ["model", "promote", challenger, "--reason", "manual override"])
    assert promoted.exit_code == 0, promoted.output
    assert f"previous champion: {champion}" in promoted.output
    assert registry.get_alias_version(name, registry.CHAMPION, settings) == challenger
    metadata = _champion_metadata(settings)
    assert (metadata["champion_version"], metadata["previous_champion"]) == (challenger, champion)
    assert metadata["action"] == "promote"

    restored = cli.invoke(app, ["model", "rollback", "--reason", "bad answers in production"])
    assert restored.exit_code == 0, restored.output
    assert registry.get_alias_version(name, registry.CHAMPION, settings) == champion
    metadata = _champion_metadata(settings)
    assert (metadata["champion_version"], metadata["action"]) == (champion, "rollback")

    unknown = cli.invoke(app, ["model", "promote", "999"])
    assert unknown.exit_code == 2  # a user error: one line, exit code 2
    assert unknown.output.strip() == f"error: model '{name}' has no version 999 (versions: 1, 2)"
    assert registry.get_alias_version(name, registry.CHAMPION, settings) == champion

    events = _events(url, name)
    assert events[-2:] == [
        ("champion", int(champion), int(challenger), "cli:alice"),
        ("champion", int(challenger), int(champion), "cli:alice"),
    ]
    listed = {v["version"]: v for v in registry.list_versions(name, settings)}
    assert registry.CHAMPION in listed[champion]["aliases"]
    assert listed[challenger]["previous_champion"] == champion


def test_rollback_without_a_previous_champion_is_refused(registered: Registered) -> None:
    settings = ml_settings(registered.settings.data_dir, registered.url, "ticket-triage-never-promoted")
    with pytest.raises(registry.NoPreviousChampionError):
        registry.rollback("bob", "nothing to go back to", url=registered.url, settings=settings)


def test_evaluate_file_scores_a_labelled_csv(registered: Registered, tmp_path: Path) -> None:
    data = trained().corpus
    path = tmp_path / "labelled.csv.gz"
    data.test.select(body="text", label="topic", priority="urgency").write_csv(path, compression="gzip")
    from ticket_assets.ml.evaluate import evaluate_file

    metrics = evaluate_file(
        registered.settings,
        path,
        text_col="body",
        topic_col="label",
        urgency_col="priority",
        alias=registered.version,
    )
    assert metrics["model"]["version"] == registered.version
    assert metrics["n_holdout"] == data.test.height
    assert metrics["topic"]["macro_f1"] == pytest.approx(registered.metrics["topic"]["macro_f1"], abs=0.02)
    with pytest.raises(KeyError):
        evaluate_file(registered.settings, path, text_col="nope", topic_col="label")

    # An export spells labels its own way: 'Access Password' is the model's access_password.
    spelled = tmp_path / "spelled.csv"
    data.test.select(
        body="text", label=pl.col("topic").str.replace_all("_", " ").str.to_titlecase()
    ).write_csv(spelled)
    mapped = evaluate_file(
        registered.settings, spelled, text_col="body", topic_col="label", alias=registered.version
    )
    assert mapped["topic"]["macro_f1"] == pytest.approx(metrics["topic"]["macro_f1"])
    assert mapped["label_mapping"]["topic"]["unmapped"] == {}

    from ticket_assets.ml.evaluate import LabelMismatchError

    foreign = tmp_path / "foreign.csv"
    data.test.head(10).select(body="text", label=pl.lit("Payroll")).write_csv(foreign)
    with pytest.raises(LabelMismatchError, match="none of the 10 topics"):
        evaluate_file(
            registered.settings, foreign, text_col="body", topic_col="label", alias=registered.version
        )


def test_pipeline_trains_from_the_dbt_training_mart_and_gates_from_what_training_recorded(
    fresh_db: str, tmp_path: Path
) -> None:
    """Raw tickets -> a real ``dbt build`` -> marts.training_set -> the stages the training assets run."""
    ingest_synthetic(fresh_db, n=400, seed=31)
    run_dbt(fresh_db, tmp_path / "dbt", "build")
    settings = ml_settings(tmp_path / "data", fresh_db, "ticket-triage-pipeline")

    config = tiny_config(candidates=("tfidf", "stack"))
    data = pipeline.load_data(settings, fresh_db)
    candidate = pipeline.train_and_evaluate(data, config)

    def register(champion: str | None) -> registry.ModelVersionInfo:
        """The candidate as a new version, with ``champion`` scored on its holdout as training does."""
        scored = pipeline.score_champion(data, champion, settings)
        version = pipeline.register(candidate, data, settings, fresh_db, config, champion=scored).version
        return registry.version_info(registry.configure_mlflow(settings), settings.model_name, version)

    first = register(None)
    decision, evidence = pipeline.gate_decision(first, None, settings, fresh_db)
    assert evidence == pipeline.RECORDED
    assert decision.passed and decision.comparisons["topic"]["against"] == "baseline"
    registry.promote(first.version, "training", decision.reasons[0], url=fresh_db, settings=settings)

    with psycopg.connect(fresh_db) as conn:
        n_test, n_texts = conn.execute(
            "select count(*) filter (where split = 'test'), count(distinct text_hash) from marts.training_set"
        ).fetchone()
        stored = conn.execute("select count(*) from features.ticket_embeddings").fetchone()[0]
        aliases = [row[0] for row in conn.execute("select alias from ops.model_alias_events order by id")]
    metrics = candidate.evaluation.metrics
    assert metrics["n_holdout"] == n_test > 0
    assert stored == n_texts  # missing vectors were encoded and kept
    assert aliases == ["challenger", "champion"]
    # The generator's routing target reaches the model through dbt: trained, gated, tiered.
    assert "assignment_group" in metrics and "assignment_group" in decision.comparisons
    served, _ = registry.load_model_version(settings.model_name, first.version, settings)
    assert served.routing_targets == ["assignment_group"]
    assert {row["target"] for row in served.metadata["tiers"]} == {"topic", "urgency", "assignment_group"}
    assert metrics["assignment_group"]["tiers"]["n"] == metrics["n_holdout"]

    # A challenger trained against that champion: the champion was scored on its holdout at training,
    # and the recorded verdict is the one a full re-scoring gives.
    second = register(first.version)
    recorded, evidence = pipeline.gate_decision(second, first.version, settings, fresh_db)
    rescored = pipeline.rescored_gate(second, first.version, settings, fresh_db)
    assert evidence == pipeline.RECORDED
    assert recorded.passed and rescored.passed
    assert recorded.comparisons["topic"]["against"] == "champion"
    for target, comparison in rescored.comparisons.items():
        for key in ("challenger_macro_f1", "champion_macro_f1", "macro_f1_delta"):
            assert recorded.comparisons[target][key] == pytest.approx(comparison[key], abs=1e-9)

    # A record about another champion (the champion moved since training) is not used: the gate
    # then scores both again, as rescored_gate above.
    assert pipeline.recorded_gate(second, None, settings) is None
