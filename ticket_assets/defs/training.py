"""Training area: classifier → blocking promotion gate → champion alias.

``ticket_classifier`` trains, evaluates and registers a new MLflow model version with alias
``challenger``, with the champion of the time scored on the same holdout. ``promotion_gate`` (a
*blocking* asset check) applies the gate rules to those recorded figures (scoring both again only
when the champion has moved since); only when it passes does ``champion_model`` run and
move the ``champion`` alias (logged in ``ops.model_alias_events``). A failing gate leaves production
untouched, records why in the check's metadata and alerts on-call.
"""

import json
from typing import Literal

import dagster as dg

from ticket_assets.defs.config import config_class, to_plain
from ticket_assets.defs.embeddings import progress_logger
from ticket_assets.defs.k8s import TRAINING_RUN_TAGS, TRAINING_STEP_TAGS
from ticket_assets.defs.keys import CHAMPION_MODEL, KB_CHUNKS, TICKET_EMBEDDINGS, TRAINING_SET
from ticket_assets.defs.metadata import markdown_table, png_markdown
from ticket_assets.defs.resources import (
    AlertsResource,
    MlflowResource,
    PlatformSettingsResource,
    PostgresResource,
)
from ticket_assets.ml import registry
from ticket_assets.ml.gate import GateConfig, GateVerdict, gated_targets
from ticket_assets.ml.train_config import TrainConfig
from ticket_assets.settings import Settings

CLASSIFIER = dg.AssetKey("ticket_classifier")
OWNERS = ["team:ml-platform"]
GATE_TAG = "ticketops.gate"


# Train even when data, code and config equal the champion's; TICKETOPS_FORCE_TRAIN=1 sets it too.
ClassifierConfig = config_class(
    TrainConfig,
    "ClassifierConfig",
    "Training settings (see ticket_assets.ml.train).",
    force_train=(bool, False),
)


GateSettings = config_class(GateConfig, "GateSettings", "Promotion gate margins (see ticket_assets.ml.gate).")


class ChampionConfig(dg.Config):
    """``gate`` (default): promote the challenger whose gate verdict passed. ``promote``: make
    ``version`` the champion by hand; ``rollback``: back to the champion it replaced."""

    action: Literal["gate", "promote", "rollback"] = "gate"
    version: str | None = None
    reason: str | None = None
    actor: str | None = None


def train_config(config: ClassifierConfig, settings: Settings) -> TrainConfig:
    """The run's training config: the tier targets and training bounds from the settings; quick (TICKETOPS_TRAIN_QUICK):
    small grids and 2 CV folds."""
    overrides: dict = {
        "tier_auto_precision": settings.tier_auto_precision,
        "tier_suggest_precision": settings.tier_suggest_precision,
        "tier_min_examples": settings.tier_min_examples,
        "max_fit_rows": settings.train_max_rows,
        "knn_max_per_class": settings.train_knn_max_per_class,
    }
    if settings.train_quick:
        overrides |= {
            "cv_folds": 2,
            "tfidf_c_grid": (0.3,),
            "embedding_c_grid": (4.0,),
            "max_features": 50_000,
        }
    return to_plain(config, TrainConfig, **overrides)


def tier_table(rows: list[dict]) -> dg.TableMetadataValue:
    """The held-out tier table (``ml.tiers``) as a Dagster table."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "target": row["target"],
                    "class": row["label"],
                    "tier": row["tier"],
                    "threshold": "–" if row["threshold"] is None else round(row["threshold"], 4),
                    "precision": "–" if row["precision"] is None else round(row["precision"], 4),
                    "coverage": round(row["coverage"], 4),
                    "n": row["n"],
                }
            )
            for row in rows
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("target", "string"),
                dg.TableColumn("class", "string"),
                dg.TableColumn("tier", "string"),
                dg.TableColumn(
                    "threshold", "string", description="lowest confidence in the tier ('–': none)"
                ),
                dg.TableColumn("precision", "string", description="held-out precision at the threshold"),
                dg.TableColumn("coverage", "float", description="share of the class's held-out predictions"),
                dg.TableColumn("n", "int", description="held-out predictions of the class"),
            ]
        ),
    )


def metrics_table(metrics: dict) -> str:
    rows = []
    for target in gated_targets(metrics):
        if target in metrics:
            m = metrics[target]
            rows.append(
                (
                    target,
                    f"{m['accuracy']:.3f}",
                    f"{m['macro_f1']:.3f}",
                    f"{m['ece']:.3f}",
                    f"{m['most_urgent_recall']:.3f}" if "most_urgent_recall" in m else "–",
                )
            )
    return markdown_table(["target", "accuracy", "macro-F1", "ECE", "most-urgent recall"], rows)


def per_class_table(target_metrics: dict) -> str:
    rows = [
        (label, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", v["support"])
        for label, v in target_metrics["per_class"].items()
    ]
    return markdown_table(["class", "precision", "recall", "F1", "support"], rows)


def slices_table(target_metrics: dict) -> str:
    rows = []
    for slice_name, values in target_metrics.get("slices", {}).items():
        for value, m in values.items():
            rows.append(
                (
                    slice_name,
                    value,
                    m.get("n", m.get("support", "")),
                    f"{m['accuracy']:.3f}" if "accuracy" in m else "–",
                    f"{m['macro_f1']:.3f}" if "macro_f1" in m else "–",
                )
            )
    return markdown_table(["slice", "value", "n", "accuracy", "macro-F1"], rows)


def candidates_table(training: dict) -> str:
    rows = []
    for target, report in training.get("targets", {}).items():
        for name, result in report["candidates"].items():
            rows.append(
                (
                    target,
                    name,
                    f"{result['cv_macro_f1']:.3f}",
                    f"{result['cv_accuracy']:.3f}",
                    "✓" if name == report["chosen"] else "",
                )
            )
    return markdown_table(["target", "candidate", "CV macro-F1", "CV accuracy", "chosen"], rows)


def kb_topic_map_table(model_metadata: dict) -> str:
    names = model_metadata.get("topic_display", {})
    shares = model_metadata.get("kb_topic_shares", {})
    rows = [
        (names.get(label, label), kb_topic or "– (no preference)", f"{shares.get(label, 0.0):.2f}")
        for label, kb_topic in model_metadata.get("kb_topic_map", {}).items()
    ]
    return markdown_table(["label", "preferred KB topic", "share of its tickets"], rows)


@dg.asset(
    key=CLASSIFIER,
    deps=[TRAINING_SET, TICKET_EMBEDDINGS, KB_CHUNKS],
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    owners=OWNERS,
    op_tags=TRAINING_STEP_TAGS,
    description=(
        "Topic and (when labels exist) urgency classifier trained on `marts.training_set`: TF-IDF, embedding "
        "and stacked candidates compared by cross-validation, calibrated, scored on the mart's holdout (time "
        "split, or a label-stratified hash split for undated exports) and registered in MLflow as a new version "
        "with alias `challenger`, carrying its label display names and learned KB topic map. Skipped (no new "
        "version) when data, code and config equal the champion's, unless forced."
    ),
)
def ticket_classifier(
    context: dg.AssetExecutionContext,
    config: ClassifierConfig,
    postgres: PostgresResource,
    platform: PlatformSettingsResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    from ticket_assets.ml import pipeline
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.rag.index import load_stored_chunks

    settings = platform.get()
    mlflow.configure()
    url = postgres.url()
    # champion_model promotes only if the champion is still this one (two runs racing promote once).
    base_champion = registry.get_alias_version(settings.model_name, registry.CHAMPION, settings)
    data = pipeline.load_data(settings, url)
    cfg = train_config(config, settings)
    with postgres.connect() as conn:
        chunks = load_stored_chunks(conn)
    version = pipeline.data_version_of(data, cfg, [chunk.chunk_id for chunk in chunks])
    unchanged = pipeline.unchanged_champion(version, settings)
    if unchanged is not None and not (config.force_train or settings.force_train):
        # Nothing the model depends on changed: a new version would be a copy. The gate then judges
        # the champion itself (challenger = champion) and champion_model leaves the alias as it is.
        reason = (
            f"skipped: data, code and config equal champion v{unchanged}'s "
            f"(fingerprint {version['training_fingerprint'][:12]}); force with force_train / --force-train"
        )
        registry.set_alias(
            settings.model_name,
            registry.CHALLENGER,
            unchanged,
            "ticket_classifier",
            reason,
            url,
            settings=settings,
        )
        context.log.info(reason)
        return dg.MaterializeResult(
            metadata={
                "training": reason,
                "model_name": settings.model_name,
                "model_version": unchanged,
                "mlflow_model_version": dg.MetadataValue.url(
                    registry.mlflow_version_url(settings.mlflow_ui_url, settings.model_name, unchanged)
                ),
                "training_fingerprint": version["training_fingerprint"],
                "split_rule": version.get("split_rule", ""),
                "train_rows": data.train.height,
                "holdout_rows": data.test.height,
            }
        )
    context.log.info(f"training on {data.train.height} tickets, holdout {data.test.height}")
    fits = progress_logger(context, "training: model fits")
    candidate = pipeline.train_and_evaluate(data, cfg, lambda what, done, total: fits(done, total, what))
    context.log.info(f"evaluated on {data.test.height} held-out tickets; learning the KB topic map")
    pipeline.attach_kb_topic_map(candidate.outcome.model, data, chunks, get_embedder(settings))
    champion = pipeline.score_champion(data, base_champion, settings)  # recorded for the gate
    context.log.info("logging the run and registering the version in MLflow")
    registered = pipeline.register(candidate, data, settings, url, cfg, version, champion)
    mlflow.client().set_model_version_tag(
        registered.name, registered.version, registry.BASE_CHAMPION_TAG, base_champion or "none"
    )
    metrics = candidate.evaluation.metrics
    training = candidate.outcome.as_dict()
    context.log.info(f"registered {registered.name} v{registered.version} as challenger")

    metadata: dict[str, object] = {
        "model_name": registered.name,
        "model_version": registered.version,
        "mlflow_run_id": registered.run_id,
        "mlflow_run": dg.MetadataValue.url(
            registry.mlflow_run_url(
                settings.mlflow_ui_url, registry.experiment_id(mlflow.client(), settings), registered.run_id
            )
        ),
        "mlflow_model_version": dg.MetadataValue.url(
            registry.mlflow_version_url(settings.mlflow_ui_url, registered.name, registered.version)
        ),
        # The URI itself may carry credentials when configured; only the embedded default is shown.
        "mlflow_tracking": "MLFLOW_TRACKING_URI"
        if settings.mlflow_tracking_uri
        else settings.resolved_mlflow_uri,
        "training": "trained" + (" (forced)" if unchanged is not None else ""),
        "training_fingerprint": version["training_fingerprint"],
        "split_rule": version.get("split_rule", ""),
        "train_rows": data.train.height,
        "holdout_rows": data.test.height,
        "training_seconds": dg.MetadataValue.float(round(training["seconds"], 1)),
        "topic_macro_f1": dg.MetadataValue.float(round(metrics["topic"]["macro_f1"], 4)),
        "topic_accuracy": dg.MetadataValue.float(round(metrics["topic"]["accuracy"], 4)),
        "baseline_topic_macro_f1": dg.MetadataValue.float(round(candidate.baseline["topic"]["macro_f1"], 4)),
        "metrics": dg.MetadataValue.md(metrics_table(metrics)),
        "candidates": dg.MetadataValue.md(candidates_table(training)),
        "topic_per_class": dg.MetadataValue.md(per_class_table(metrics["topic"])),
        "topic_slices": dg.MetadataValue.md(slices_table(metrics["topic"])),
        "kb_topic_map": dg.MetadataValue.md(kb_topic_map_table(candidate.outcome.model.metadata)),
        "tiers": tier_table(candidate.outcome.model.metadata.get("tiers", [])),
    }
    for target in gated_targets(metrics):
        if target not in ("topic", "urgency"):  # routing targets: their own macro-F1 and table
            metadata[f"{target}_macro_f1"] = dg.MetadataValue.float(round(metrics[target]["macro_f1"], 4))
            metadata[f"{target}_per_class"] = dg.MetadataValue.md(per_class_table(metrics[target]))
        summary = metrics.get(target, {}).get("tiers")
        if summary is not None:
            metadata[f"{target}_auto_share"] = dg.MetadataValue.float(round(summary["auto_share"], 4))
            if summary["auto_precision"] is not None:
                metadata[f"{target}_auto_precision"] = dg.MetadataValue.float(
                    round(summary["auto_precision"], 4)
                )
    if metrics["topic"].get("rare_classes"):
        # Long tails: the few-example classes' macro-F1 apart from the others'.
        metadata["topic_rare_classes"] = ", ".join(metrics["topic"]["rare_classes"])
        for key in ("rare_macro_f1", "frequent_macro_f1"):
            if metrics["topic"].get(key) is not None:
                metadata[f"topic_{key}"] = dg.MetadataValue.float(round(metrics["topic"][key], 4))
    if "urgency" in metrics:
        metadata["urgency_macro_f1"] = dg.MetadataValue.float(round(metrics["urgency"]["macro_f1"], 4))
        metadata["most_urgent_recall"] = dg.MetadataValue.float(
            round(metrics["urgency"]["most_urgent_recall"], 4)
        )
        metadata["urgency_per_class"] = dg.MetadataValue.md(per_class_table(metrics["urgency"]))
    scope = candidate.outcome.model.metadata.get("out_of_scope")
    if scope:  # the out-of-scope detector's calibration (thresholds on held-out in-domain tickets)
        metadata["out_of_scope"] = dg.MetadataValue.json(scope)
    for name, png in candidate.evaluation.figures.items():
        metadata[name.removesuffix(".png")] = png_markdown(png, name)
    return dg.MaterializeResult(metadata=metadata)


def trained_in_this_run(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The version this run's ``ticket_classifier`` registered: the ``challenger`` alias may already
    point at a concurrent run's version. None when the run did not train (then the alias decides)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = record.asset_materialization
        if materialization is not None and materialization.asset_key == CLASSIFIER:
            return str(materialization.metadata["model_version"].value)
    return None


@dg.asset_check(
    asset=CLASSIFIER,
    name="promotion_gate",
    blocking=True,
    description=(
        "Blocks promotion unless the challenger holds up against the champion on the same holdout: macro-F1 "
        "not lower by more than the margin, most-urgent recall not lower, no class recall down by more than "
        "the allowed amount; a first model must beat the majority-class baseline clearly."
    ),
)
def promotion_gate(
    context: dg.AssetCheckExecutionContext,
    config: GateSettings,
    postgres: PostgresResource,
    platform: PlatformSettingsResource,
    mlflow: MlflowResource,
    alerts: AlertsResource,
) -> dg.AssetCheckResult:
    from ticket_assets.ml import pipeline

    settings = platform.get()
    own = trained_in_this_run(context.instance, context.run.run_id)
    challenger_info = registry.version_info(mlflow.client(), settings.model_name, own or registry.CHALLENGER)
    champion_version = registry.get_alias_version(settings.model_name, registry.CHAMPION, settings)
    decision, evidence = pipeline.gate_decision(
        challenger_info, champion_version, settings, postgres.url(), to_plain(config, GateConfig)
    )
    summary = "; ".join(decision.reasons)
    verdict = GateVerdict(decision.passed, challenger_info.version, champion_version, decision.reasons)
    mlflow.client().set_model_version_tag(
        settings.model_name, challenger_info.version, GATE_TAG, verdict.to_json()
    )
    registry.record_gate_verdict(settings, challenger_info.version, decision.passed, summary)
    if not decision.passed:
        alerts.send(
            f"Promotion gate failed for {settings.model_name} v{challenger_info.version}",
            f"Champion stays at v{champion_version or 'none'}. Reasons: {summary}",
            severity="warning",
            source="promotion_gate",
            dedup_key=f"gate:{settings.model_name}:{challenger_info.version}",
            url=alerts.run_url(context.run.run_id),
        )
    return dg.AssetCheckResult(
        passed=decision.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "challenger_version": challenger_info.version,
            "champion_version": champion_version or "none",
            "decision": "promote" if decision.passed else "keep champion",
            "evidence": evidence,
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons) or "-"),
            "comparisons": dg.MetadataValue.json(json.loads(json.dumps(decision.comparisons, default=str))),
            "challenger": dg.MetadataValue.url(
                registry.mlflow_version_url(
                    settings.mlflow_ui_url, settings.model_name, challenger_info.version
                )
            ),
        },
    )


@dg.asset(
    key=CHAMPION_MODEL,
    deps=[CLASSIFIER],
    group_name="training",
    kinds={"mlflow"},
    owners=OWNERS,
    description=(
        "The model version the API serves: moves the MLflow alias `champion` to the challenger once the "
        "blocking `promotion_gate` check has passed. Every move is logged in `ops.model_alias_events`; "
        "`ticketops model rollback` moves it back."
    ),
)
def champion_model(
    context: dg.AssetExecutionContext,
    config: ChampionConfig,
    postgres: PostgresResource,
    platform: PlatformSettingsResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    settings = platform.get()
    if config.action != "gate":
        return _move_by_hand(context, config, postgres, settings)
    client = mlflow.client()
    own = trained_in_this_run(context.instance, context.run_id)
    challenger = (
        client.get_model_version(settings.model_name, own)
        if own
        else client.get_model_version_by_alias(settings.model_name, registry.CHALLENGER)
    )
    verdict = GateVerdict.from_json((challenger.tags or {}).get(GATE_TAG))
    if verdict is None or not verdict.passed or verdict.challenger_version != str(challenger.version):
        raise dg.Failure(
            f"challenger v{challenger.version} has no passing gate decision "
            f"({verdict.summary if verdict else 'none'})"
        )
    try:
        previous = registry.promote(
            challenger.version,
            actor=f"dagster:run:{context.run_id[:8]}",
            reason=("gate passed: " + verdict.summary)[:1000],
            url=postgres.url(),
            settings=settings,
            expected_champion=(challenger.tags or {}).get(registry.BASE_CHAMPION_TAG),
        )
    except registry.ChampionMovedError as exc:
        # Another run promoted while this one trained: keep its champion, record why this one did not.
        context.log.warning(f"promotion skipped: {exc}")
        current = registry.get_alias_version(settings.model_name, registry.CHAMPION, settings)
        return dg.MaterializeResult(
            metadata={
                "model_name": settings.model_name,
                "champion_version": current or "none",
                "promoted": False,
                "skipped_reason": str(exc),
                "model_uri": f"models:/{settings.model_name}@champion",
            }
        )
    context.log.info(f"champion: v{previous or 'none'} → v{challenger.version}")
    return dg.MaterializeResult(
        metadata={
            "model_name": settings.model_name,
            "champion_version": challenger.version,
            "previous_champion": previous or "none",
            "promoted": previous != challenger.version,
            "action": "gate",
            "gate": verdict.summary[:500],
            "model_uri": f"models:/{settings.model_name}@champion",
            "mlflow_model_version": dg.MetadataValue.url(
                registry.mlflow_version_url(
                    settings.mlflow_ui_url, settings.model_name, str(challenger.version)
                )
            ),
        }
    )


def _move_by_hand(
    context: dg.AssetExecutionContext, config: ChampionConfig, postgres: PostgresResource, settings
) -> dg.MaterializeResult:
    """``ticketops model promote`` / ``rollback``: the alias moves here so this asset's metadata is
    always the serving champion."""
    actor = config.actor or f"dagster:run:{context.run_id[:8]}"
    reason = config.reason or f"manual {config.action}"
    url = postgres.url()
    try:
        if config.action == "promote":
            if not config.version:
                raise dg.Failure(description="action promote needs a version")
            version = config.version
            registry.model_version_exists(settings.model_name, version, settings)
            previous = registry.promote(version, actor, reason, url=url, settings=settings)
        else:
            previous = registry.get_alias_version(settings.model_name, registry.CHAMPION, settings)
            version = registry.rollback(actor, reason, url=url, settings=settings)
    except (registry.NoPreviousChampionError, registry.UnknownVersionError) as exc:
        raise dg.Failure(description=str(exc)) from None
    context.log.info(f"champion: v{previous or 'none'} → v{version} ({config.action} by {actor})")
    return dg.MaterializeResult(
        metadata={
            "model_name": settings.model_name,
            "champion_version": version,
            "previous_champion": previous or "none",
            "promoted": previous != version,
            "action": config.action,
            "reason": reason[:500],
            "model_uri": f"models:/{settings.model_name}@champion",
            "mlflow_model_version": dg.MetadataValue.url(
                registry.mlflow_version_url(settings.mlflow_ui_url, settings.model_name, str(version))
            ),
        }
    )


def _end_mlflow_on_run_finished(context, event_list):
    # dagster-mlflow's hook, imported when it first runs: importing it loads MLflow.
    from dagster_mlflow import end_mlflow_on_run_finished

    return end_mlflow_on_run_finished.hook_fn(context, event_list)


# dagster-mlflow's `end_mlflow_on_run_finished` (same name and resource), deferred to its first run.
end_mlflow_on_run_finished = dg.HookDefinition(
    name="end_mlflow_on_run_finished",
    hook_fn=_end_mlflow_on_run_finished,
    required_resource_keys={"mlflow"},
    decorated_fn=_end_mlflow_on_run_finished,
)

training_assets = [ticket_classifier, champion_model]
training_checks = [promotion_gate]

retrain_job = dg.define_asset_job(
    "retrain",
    # The whole dbt group so new raw tickets and feedback reach the training mart first.
    selection=dg.AssetSelection.groups("dbt")
    | dg.AssetSelection.assets(TICKET_EMBEDDINGS, CLASSIFIER, CHAMPION_MODEL),
    description="Refresh the training mart and embeddings, train, gate and (if the gate passes) promote.",
    hooks={end_mlflow_on_run_finished},
    tags={"ticketops/job": "retrain", **TRAINING_RUN_TAGS},
)
