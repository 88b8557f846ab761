"""Monitoring area: the drift report on production traffic and the live-quality check.

``drift_report`` compares consecutive windows of production predictions (``ops.predictions`` for
the serving champion) with that champion's own predictions on its held-out tickets. Windows do not
overlap: each report starts where the previous one ended, and a window smaller than the configured
minimum is reported as ``insufficient_data`` without being consumed. Sensors only read the verdict.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ticket_assets.defs.config import config_class, to_plain
from ticket_assets.defs.keys import CHAMPION_MODEL, DRIFT_REPORT
from ticket_assets.defs.resources import (
    AlertsResource,
    MlflowResource,
    PlatformSettingsResource,
    PostgresResource,
)
from ticket_assets.ml import registry
from ticket_assets.monitoring.drift_config import DriftConfig
from ticket_assets.settings import Settings

if TYPE_CHECKING:
    import polars as pl

PRODUCTION_MARTS = [
    dg.AssetKey(["marts", name])
    for name in ("daily_predictions", "prediction_latency", "confidence_distribution")
]
LIVE_QUALITY = dg.AssetKey(["marts", "live_quality"])
OWNERS = ["team:ml-platform"]
KEEP_REPORTS = 50


DriftReportConfig = config_class(
    DriftConfig,
    "DriftReportConfig",
    "Drift verdict settings (see ticket_assets.monitoring.drift) and the largest window evaluated.",
    max_window=(int, 2000),
)


def _previous_window_end(context: dg.AssetExecutionContext, champion_version: str) -> str | None:
    """Where the last evaluated window of this champion ended (reports of other versions don't count)."""
    records = context.instance.fetch_materializations(DRIFT_REPORT, limit=50, ascending=False).records
    for record in records:
        metadata = record.asset_materialization.metadata
        if metadata.get("champion_version") and metadata["champion_version"].value == champion_version:
            end = metadata.get("window_end")
            if end is not None and end.value:
                return end.value
    return None


def load_window(conn, model_version: str, after: str | None, limit: int) -> "pl.DataFrame":
    import polars as pl

    rows = conn.execute(
        "select created_at, text, text_chars, topic, topic_confidence, urgency from ops.predictions"
        " where model_version = %s and created_at > coalesce(%s::timestamptz, '-infinity')"
        " order by created_at limit %s",
        (model_version, after, limit),
    ).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "created_at": pl.Datetime("us", "UTC"),
            "text": pl.String,
            "text_chars": pl.Int64,
            "topic": pl.String,
            "topic_confidence": pl.Float64,
            "urgency": pl.String,
        },
        orient="row",
    )


def prune_reports(reports_dir: Path, keep: int = KEEP_REPORTS) -> None:
    # Each Evidently report inlines its JavaScript (~4 MB): keep the recent ones only.
    reports = sorted(reports_dir.glob("drift-*.html"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in reports[keep:]:
        old.unlink(missing_ok=True)


def report_url(path: Path, settings: Settings) -> str:
    """The API serves the reports directory, so the UI can link to a report over HTTP."""
    return f"{settings.api_url}/reports/{path.name}"


def signals_table(signals: list[dict]) -> dg.TableMetadataValue:
    """One row per signal, typed columns (the UI neither cuts nor re-orders them)."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "signal": s["name"],
                    "method": f"{s['kind']}: {s['method']}",
                    "statistic": round(float(s["statistic"]), 4),
                    "threshold": float(s["threshold"]),
                    "drift": bool(s["drifted"]),
                }
            )
            for s in signals
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("signal", "string"),
                dg.TableColumn("method", "string", description="input or prediction signal: its test"),
                dg.TableColumn("statistic", "float"),
                dg.TableColumn("threshold", "float", description="drift when the statistic reaches it"),
                dg.TableColumn("drift", "bool"),
            ]
        ),
    )


@dg.asset(
    key=DRIFT_REPORT,
    deps=[*PRODUCTION_MARTS, CHAMPION_MODEL],
    group_name="monitoring",
    kinds={"evidently", "html"},
    owners=OWNERS,
    description=(
        "Evidently drift report on the latest window of production predictions against the champion's own "
        "predictions on its held-out tickets: input drift (domain classifier on sentence embeddings) and "
        "prediction drift (topic and urgency mix, confidence, text length), with pinned methods and thresholds. "
        "The verdict feeds the retraining sensor."
    ),
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftReportConfig,
    postgres: PostgresResource,
    platform: PlatformSettingsResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    from ticket_assets.ml.dataset import embeddings_for_frame, load_training_set
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.monitoring.drift import compute_drift, pending_window, prediction_frame, save_report
    from ticket_assets.monitoring.reference import drift_reference

    settings = platform.get()
    mlflow.configure()
    champion_version = registry.get_alias_version(settings.model_name, registry.CHAMPION, settings)
    if champion_version is None:
        return dg.MaterializeResult(
            metadata={"verdict": "insufficient_data", "reason": "no champion model yet"}
        )
    previous_end = _previous_window_end(context, champion_version)
    drift_config = to_plain(config, DriftConfig)

    with postgres.connect() as conn:
        current = load_window(conn, champion_version, previous_end, config.max_window)
        if current.height < config.min_window:
            # A report already, saying what is missing; the window is not consumed (window_end
            # stays where the last verdict ended).
            pending = pending_window(current, drift_config, model_version=champion_version)
            path = save_report(pending, settings.reports_dir)
            prune_reports(settings.reports_dir)
            context.log.info(f"{pending.reason} (predictions since {previous_end or 'the start'})")
            return dg.MaterializeResult(
                metadata={
                    "verdict": "insufficient_data",
                    "reason": pending.reason,
                    "champion_version": champion_version,
                    "window_size": current.height,
                    "min_window": config.min_window,
                    "window_end": previous_end or "",
                    "report": dg.MetadataValue.url(report_url(path, settings)),
                    "report_path": dg.MetadataValue.path(str(path)),
                }
            )
        model, info = registry.load_model_version(settings.model_name, champion_version, settings)
        embedder = get_embedder(settings)
        holdout = drift_reference(
            load_training_set(conn), model.metadata, info.tags, config.reference_sample_size
        )
        ref_embeddings = embeddings_for_frame(conn, embedder, holdout)

    ref_texts = holdout["text"].to_list()
    reference = prediction_frame(ref_texts, model.predict(ref_texts, ref_embeddings, embedder.model_id))
    texts = current["text"].to_list()
    cur_embeddings = None
    if all(text is not None for text in texts):  # redacted deployments keep prediction drift only
        cur_embeddings = embedder.encode(texts, batch_size=settings.embed_batch_size)
    result = compute_drift(
        reference,
        current.drop("text"),
        ref_embeddings,
        cur_embeddings,
        drift_config,
        model_version=champion_version,
    )
    path = save_report(result, settings.reports_dir)
    prune_reports(settings.reports_dir)
    summary = result.summary
    context.log.info(f"drift verdict {result.verdict}: {result.reason}")
    return dg.MaterializeResult(
        metadata={
            "verdict": result.verdict,
            "reason": result.reason,
            "drift_share": dg.MetadataValue.float(float(summary["drift_share"])),
            "drifted_signals": ", ".join(summary["drifted_signals"]) or "none",
            "domain_auc": dg.MetadataValue.float(float(summary["domain_auc"] or 0.0)),
            "signals": signals_table(summary["signals"]),
            "method": "domain classifier on embeddings (ROC AUC) + pinned distance tests on predictions",
            "champion_version": champion_version,
            "reference_size": result.reference_size,
            "window_size": result.current_size,
            "window_start": summary["window_start"] or "",
            "window_end": summary["window_end"] or "",
            "report": dg.MetadataValue.url(report_url(path, settings)),
            "report_path": dg.MetadataValue.path(str(path)),
        }
    )


@dg.asset_check(
    asset=DRIFT_REPORT,
    name="no_drift",
    description="Fails (warning) when the latest full window of production traffic drifted.",
)
def no_drift_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(DRIFT_REPORT)
    metadata = event.asset_materialization.metadata if event else {}
    verdict = metadata["verdict"].value if "verdict" in metadata else "insufficient_data"
    return dg.AssetCheckResult(
        passed=verdict != "drift",
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"verdict": verdict, "reason": metadata["reason"].value if "reason" in metadata else ""},
    )


class LiveQualityConfig(dg.Config):
    min_feedback: int = 50
    min_topic_accuracy: float = 0.70
    min_topic_macro_f1: float = 0.70
    min_critical_recall: float = 0.60


@dg.asset_check(
    asset=LIVE_QUALITY,
    name="live_quality_thresholds",
    description="With enough agent feedback, live topic accuracy, macro-F1 and critical recall of the champion "
    "must stay above their thresholds; the first failure for a champion alerts on-call (once).",
)
def live_quality_check(
    config: LiveQualityConfig, postgres: PostgresResource, mlflow: MlflowResource, alerts: AlertsResource
) -> dg.AssetCheckResult:
    mlflow.configure()
    champion = mlflow.alias_version(registry.CHAMPION)
    with postgres.connect() as conn:
        row = conn.execute(
            "select n_feedback, topic_macro_f1, n_critical, critical_recall, topic_accuracy"
            " from marts.live_quality where model_version = %s",
            (champion,),
        ).fetchone()
    n_feedback = int(row[0]) if row else 0
    if n_feedback < config.min_feedback:
        return dg.AssetCheckResult(
            passed=True,
            metadata={
                "champion_version": champion or "none",
                "n_feedback": n_feedback,
                "note": f"fewer than {config.min_feedback} labels: not judged yet",
            },
        )
    topic_f1 = float(row[1] or 0.0)
    critical_recall = None if row[3] is None else float(row[3])
    topic_accuracy = float(row[4] or 0.0)
    failures = []
    if topic_accuracy < config.min_topic_accuracy:
        failures.append(f"live topic accuracy {topic_accuracy:.3f} < {config.min_topic_accuracy}")
    if topic_f1 < config.min_topic_macro_f1:
        failures.append(f"live topic macro-F1 {topic_f1:.3f} < {config.min_topic_macro_f1}")
    if critical_recall is not None and critical_recall < config.min_critical_recall:
        failures.append(f"live critical recall {critical_recall:.3f} < {config.min_critical_recall}")
    if failures:
        alerts.send(
            f"Live quality below threshold for champion v{champion}",
            f"{'; '.join(failures)} (on {n_feedback} agent labels).",
            severity="critical",
            source="live_quality",
            # Once per champion: more feedback on the same model is the same problem.
            dedup_key=f"live-quality:{mlflow.model_name}:{champion}",
            url=alerts.asset_url(LIVE_QUALITY),
        )
    return dg.AssetCheckResult(
        passed=not failures,
        metadata={
            "champion_version": champion or "none",
            "n_feedback": n_feedback,
            "topic_accuracy": topic_accuracy,
            "topic_macro_f1": topic_f1,
            "critical_recall": critical_recall if critical_recall is not None else -1.0,
            "failures": "; ".join(failures) or "none",
        },
    )


monitoring_assets = [drift_report]
monitoring_checks = [no_drift_check, live_quality_check]
