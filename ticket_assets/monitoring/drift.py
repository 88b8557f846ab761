"""Drift between a reference sample and a window of production predictions, with an Evidently report.

Signals (each pinned to a method and threshold, because Evidently 0.7.23 otherwise switches tests
with sample size: K-S / chi-square p-values up to 1,000 rows, distances above):

- ``text_embeddings`` (input drift): domain-classifier ROC AUC on sentence embeddings, see
  ``ticket_assets.monitoring.domain_classifier`` for why.
- ``topic``, ``urgency`` (prediction drift): Jensen-Shannon distance between predicted label
  distributions.
- ``topic_confidence``: normed Wasserstein distance (distance / reference std) between the
  model's top-topic probabilities; new or reworded tickets lower the model's confidence.
- ``text_chars``: normed Wasserstein distance between model-input lengths.

Verdict rule: ``drift`` when at least ``min_drifted_signals`` signals (default 1) reach their
thresholds; ``insufficient_data`` when the window or the reference is smaller than the configured
minimum. One signal suffices because some real shifts move exactly one signal (a burst of urgent
tickets changes only the predicted urgency mix); stability against one noisy window comes from the
thresholds instead: each was calibrated by ``benchmarks/bench_drift.py`` at the minimum window size,
where noise is largest, to sit well above the largest value seen over stationary windows (0 false
alarms) and below the values of the first full window of every drift scenario.

The reference must be predictions of the *same* model on held-out tickets (e.g. the training
mart's ``test`` split): predictions on the rows a model was trained on are over-confident, which
would itself look like confidence drift.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from ticket_assets.monitoring.domain_classifier import distinct_rows
from ticket_assets.monitoring.drift_config import DriftConfig, SignalSpec

if TYPE_CHECKING:
    import pandas as pd
    from evidently import DataDefinition

Verdict = Literal["drift", "no_drift", "insufficient_data"]

EMBEDDINGS_NAME = "text_embeddings"
PREDICTION_COLUMNS: tuple[str, ...] = ("topic", "urgency", "topic_confidence", "text_chars")
# The training mart calls the model-input length text_length; the prediction log, text_chars.
COLUMN_ALIASES: dict[str, str] = {"text_length": "text_chars"}


@dataclass(frozen=True)
class SignalResult:
    name: str
    kind: Literal["input", "prediction"]
    method: str
    statistic: float
    threshold: float
    drifted: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftResult:
    verdict: Verdict
    reason: str
    signals: tuple[SignalResult, ...]
    skipped_signals: tuple[str, ...]  # e.g. urgency when the model has no urgency target
    reference_size: int  # rows compared, after sampling
    current_size: int
    window_start: datetime | None
    window_end: datetime | None
    config: DriftConfig
    html: str = field(repr=False)

    @property
    def drifted_signals(self) -> list[str]:
        return [signal.name for signal in self.signals if signal.drifted]

    @property
    def drift_share(self) -> float:
        return len(self.drifted_signals) / len(self.signals) if self.signals else 0.0

    @property
    def domain_auc(self) -> float | None:
        return next((s.statistic for s in self.signals if s.name == EMBEDDINGS_NAME), None)

    @property
    def summary(self) -> dict[str, Any]:
        """JSON-serialisable digest for asset metadata, sensors and alerts."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "drift_share": round(self.drift_share, 4),
            "drifted_signals": self.drifted_signals,
            "domain_auc": None if self.domain_auc is None else round(self.domain_auc, 4),
            "signals": [
                {**s.as_dict(), "statistic": round(s.statistic, 4), "threshold": s.threshold}
                for s in self.signals
            ],
            "skipped_signals": list(self.skipped_signals),
            "reference_size": self.reference_size,
            "current_size": self.current_size,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "rule": f">= {self.config.min_drifted_signals} signal(s) at or above threshold",
            "min_window": self.config.min_window,
        }


def compute_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    ref_embeddings: np.ndarray | None,
    cur_embeddings: np.ndarray | None,
    config: DriftConfig | None = None,
    *,
    model_version: str | None = None,
) -> DriftResult:
    """Compare a window of predictions (``current``) with held-out reference predictions.

    ``model_version`` (the model both sides come from) is named in the report's summary block.

    Frames need ``topic``, ``topic_confidence``, ``text_chars`` (or ``text_length``) and
    ``urgency`` (may be all null: the signal is then skipped); ``current`` may carry
    ``created_at`` for the window bounds. Embedding rows follow frame rows; pass ``None`` for
    either when texts are unavailable (e.g. redacted logs) and the input signal is skipped.
    """
    config = config or DriftConfig()
    reference, current = _conform(reference, "reference"), _conform(current, "current")
    _check_embeddings(reference, ref_embeddings, "reference")
    _check_embeddings(current, cur_embeddings, "current")
    window_start, window_end = _window_bounds(current)

    def result(
        verdict: Verdict, reason: str, signals: list[SignalResult], skipped: list[str], html: str | None
    ) -> DriftResult:
        draft = DriftResult(
            verdict=verdict,
            reason=reason,
            signals=tuple(signals),
            skipped_signals=tuple(skipped),
            reference_size=reference.height,
            current_size=current.height,
            window_start=window_start,
            window_end=window_end,
            config=config,
            html="",
        )
        title = "Drift report" if html else f"Drift report: {verdict.replace('_', ' ')}"
        return replace(draft, html=with_summary(html or _placeholder_html(title), draft, model_version))

    if current.height < config.min_window or reference.height < config.min_reference:
        reason = (
            f"{current.height} predictions in the window (minimum {config.min_window}), "
            f"{reference.height} reference rows (minimum {config.min_reference})"
        )
        return result("insufficient_data", reason, [], [], None)

    reference, ref_embeddings = _sample(reference, ref_embeddings, config.reference_sample_size, config.seed)
    active = [
        s for s in config.signals if _has_values(reference, s.column) and _has_values(current, s.column)
    ]
    skipped = [s.column for s in config.signals if s not in active]
    embeddings = _usable_embeddings(ref_embeddings, cur_embeddings, config)
    if embeddings is None:
        skipped.append(EMBEDDINGS_NAME)
    if not active and embeddings is None:
        reason = f"no signal can be computed (skipped: {', '.join(skipped)})"
        return result("insufficient_data", reason, [], skipped, None)

    signals, html = _run_report(reference, current, active, embeddings, config)
    drifted = [s.name for s in signals if s.drifted]
    verdict: Verdict = "drift" if len(drifted) >= config.min_drifted_signals else "no_drift"
    reason = (
        f"{len(drifted)} of {len(signals)} signals at or above threshold"
        + (f": {', '.join(drifted)}" if drifted else "")
        + f" (drift needs {config.min_drifted_signals})"
    )
    return result(verdict, reason, signals, skipped, html)


def _usable_embeddings(
    reference: np.ndarray | None, current: np.ndarray | None, config: DriftConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """Both sides, unless one is missing or repeats of the same texts leave too few distinct rows
    to cross-validate (a flood of one message still shows in the prediction signals)."""
    if reference is None or current is None:
        return None
    if min(len(distinct_rows(reference)), len(distinct_rows(current))) < 2 * config.domain_folds:
        return None
    return reference, current


def _run_report(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    active: list[SignalSpec],
    embeddings: tuple[np.ndarray, np.ndarray] | None,
    config: DriftConfig,
) -> tuple[list[SignalResult], str]:
    """One Evidently report computes every signal, so the HTML shows exactly the numbers judged."""
    # Imported here: evidently takes seconds to import, and every process that loads the asset graph
    # imports this module (an ingest + dbt run never computes drift).
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.tests import lt

    from ticket_assets.monitoring.evidently_metrics import DomainClassifierDrift

    value_metrics = [ValueDrift(column=s.column, method=s.method, threshold=s.threshold) for s in active]
    domain_metric = None
    if embeddings is not None:
        domain_metric = DomainClassifierDrift(
            embeddings_name=EMBEDDINGS_NAME,
            threshold=config.domain_auc_threshold,
            folds=config.domain_folds,
            c=config.domain_c,
            seed=config.seed,
            tests=[lt(config.domain_auc_threshold)],
        )
    metrics = ([domain_metric] if domain_metric else []) + value_metrics
    definition = _data_definition(active, embeddings[0].shape[1] if embeddings else 0)
    ref_vectors, cur_vectors = embeddings if embeddings else (None, None)
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(
            _to_pandas(current, active, cur_vectors), data_definition=definition
        ),
        reference_data=Dataset.from_pandas(
            _to_pandas(reference, active, ref_vectors), data_definition=definition
        ),
    )
    values = {item["id"]: float(item["value"]) for item in snapshot.dict()["metrics"]}

    signals = []
    if domain_metric is not None:
        auc = values[domain_metric.metric_id]
        threshold = config.domain_auc_threshold
        signals.append(
            SignalResult(EMBEDDINGS_NAME, "input", "domain_classifier_auc", auc, threshold, auc >= threshold)
        )
    for spec, metric in zip(active, value_metrics, strict=True):
        statistic = values[metric.metric_id]
        signals.append(
            SignalResult(
                spec.column, "prediction", spec.method, statistic, spec.threshold, statistic >= spec.threshold
            )
        )
    return signals, snapshot.get_html_str(as_iframe=False)


def pending_window(
    current: pl.DataFrame, config: DriftConfig | None = None, *, model_version: str | None = None
) -> DriftResult:
    """The report of a window still too small for a verdict: how many predictions it has of the
    ``min_window`` needed, so the first report exists as soon as a reference model serves."""
    config = config or DriftConfig()
    window_start, window_end = _window_bounds(current)
    reason = f"{current.height} of {config.min_window} predictions needed for a verdict"
    draft = DriftResult(
        verdict="insufficient_data",
        reason=reason,
        signals=(),
        skipped_signals=(),
        reference_size=0,
        current_size=current.height,
        window_start=window_start,
        window_end=window_end,
        config=config,
        html="",
    )
    page = _placeholder_html("Drift report: waiting for traffic")
    return replace(draft, html=with_summary(page, draft, model_version))


def with_summary(page: str, result: DriftResult, model_version: str | None) -> str:
    """``page`` with a title and a summary block (verdict, window, model version, thresholds) at
    the top of its body, so the HTML says what it judged before Evidently's dashboard starts."""
    config = result.config
    esc = html_lib.escape
    window = (
        f"{_iso(result.window_start)} to {_iso(result.window_end)}"
        if result.window_start is not None
        else "no predictions yet"
    )
    thresholds = [
        f"{EMBEDDINGS_NAME}: domain classifier ROC AUC &ge; {config.domain_auc_threshold}",
        *(f"{s.column}: {s.method} &ge; {s.threshold}" for s in config.signals),
    ]
    measured = {s.name: s for s in result.signals}
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{rule}</td><td>{_measured(measured.get(name))}</td></tr>"
        for name, rule in zip(
            [EMBEDDINGS_NAME, *(s.column for s in config.signals)],
            (t.split(": ", 1)[1] for t in thresholds),
            strict=True,
        )
    )
    colour = {"drift": "#b91c1c", "no_drift": "#15803d"}.get(result.verdict, "#a16207")
    verdict = result.verdict.replace("_", " ")
    block = (
        "<section id='ticketops-summary' style='font-family:sans-serif;margin:16px;padding:12px 16px;"
        "border:1px solid #ddd;border-radius:6px'>"
        f"<h1 style='margin:0 0 8px'>TicketOps drift report · model v{esc(model_version or '?')}</h1>"
        f"<p style='font-size:1.2em;margin:4px 0'><b style='color:{colour}'>{esc(verdict)}</b>: "
        f"{esc(result.reason)}</p>"
        f"<p style='margin:4px 0'>Window: {esc(window)} · {result.current_size} predictions · reference "
        f"{result.reference_size} held-out predictions · verdict rule: &ge; {config.min_drifted_signals} "
        f"signal(s) at or above threshold, windows of at least {config.min_window}</p>"
        "<table style='border-collapse:collapse' cellpadding='4' border='1'>"
        f"<tr><th>signal</th><th>drift when</th><th>measured</th></tr>{rows}</table></section>"
    )
    title = f"<title>TicketOps drift report: {esc(verdict)} (model v{esc(model_version or '?')})</title>"
    start, end = page.find("<title>"), page.find("</title>")
    if 0 <= start < end:
        page = page[:start] + title + page[end + len("</title>") :]
    body = page.find("<body")
    if body < 0:
        return title + block + page
    body_end = page.index(">", body) + 1
    return page[:body_end] + block + page[body_end:]


def _measured(signal: SignalResult | None) -> str:
    if signal is None:
        return "–"
    return f"{signal.statistic:.3f} ({'drift' if signal.drifted else 'ok'})"


def save_report(result: DriftResult, reports_dir: Path) -> Path:
    """Write the report HTML atomically as ``drift-<window end, UTC>-<hash of the summary>.html``.

    The name sorts by window; re-running the same window with the same data rewrites the same
    file instead of adding another.
    """
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = (result.window_end or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(json.dumps(result.summary, sort_keys=True).encode()).hexdigest()[:8]
    target = reports_dir / f"drift-{stamp}-{digest}.html"
    # Write beside the target and rename: readers (the UI, a sensor) never see a partial file.
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=reports_dir, prefix=".drift-", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(result.html)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return target


def prediction_frame(
    texts: Sequence[str],
    predictions: Sequence[Any],
    created_at: Sequence[datetime] | None = None,
) -> pl.DataFrame:
    """The frame ``compute_drift`` expects, from model inputs and ``TriageModel.predict`` output.

    Builds the reference the same way the API logs production rows: ``text_chars`` is the
    length of the model input, labels and confidences are the model's top choices.
    """
    if len(texts) != len(predictions):
        raise ValueError(f"{len(texts)} texts for {len(predictions)} predictions")
    columns: dict[str, Any] = {
        "topic": pl.Series([p.topic for p in predictions], dtype=pl.String),
        "topic_confidence": pl.Series([p.topic_confidence for p in predictions], dtype=pl.Float64),
        "urgency": pl.Series([p.urgency for p in predictions], dtype=pl.String),
        "text_chars": pl.Series([len(t) for t in texts], dtype=pl.Int64),
    }
    if created_at is not None:
        columns["created_at"] = pl.Series(list(created_at), dtype=pl.Datetime("us", "UTC"))
    return pl.DataFrame(columns)


# --- helpers --------------------------------------------------------------------------------------


def _conform(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    frame = frame.rename(
        {old: new for old, new in COLUMN_ALIASES.items() if old in frame.columns and new not in frame.columns}
    )
    missing = [column for column in PREDICTION_COLUMNS if column != "urgency" and column not in frame.columns]
    if missing:
        raise ValueError(f"{name} frame lacks columns {missing}")
    if "urgency" not in frame.columns:
        frame = frame.with_columns(urgency=pl.lit(None, dtype=pl.String))
    return frame.with_columns(
        pl.col("topic").cast(pl.String),
        pl.col("urgency").cast(pl.String),
        pl.col("topic_confidence").cast(pl.Float64),
        pl.col("text_chars").cast(pl.Float64),
    )


def _check_embeddings(frame: pl.DataFrame, embeddings: np.ndarray | None, name: str) -> None:
    if embeddings is not None and (embeddings.ndim != 2 or embeddings.shape[0] != frame.height):
        raise ValueError(f"{name}: {embeddings.shape} embeddings for {frame.height} rows")


def _window_bounds(current: pl.DataFrame) -> tuple[datetime | None, datetime | None]:
    if "created_at" not in current.columns or current.height == 0:
        return None, None
    created = current["created_at"].drop_nulls()
    if created.is_empty():
        return None, None
    return _aware(created.min()), _aware(created.max())


def _aware(value: Any) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _sample(
    frame: pl.DataFrame, embeddings: np.ndarray | None, size: int, seed: int
) -> tuple[pl.DataFrame, np.ndarray | None]:
    if frame.height <= size:
        return frame, embeddings
    rows = np.sort(np.random.default_rng(seed).choice(frame.height, size=size, replace=False))
    return frame[rows], (embeddings[rows] if embeddings is not None else None)


def _has_values(frame: pl.DataFrame, column: str) -> bool:
    return frame[column].drop_nulls().len() > 0


def _embedding_columns(dim: int) -> list[str]:
    return [f"emb_{i:03d}" for i in range(dim)]


def _data_definition(active: list[SignalSpec], embedding_dim: int) -> DataDefinition:
    from evidently import DataDefinition

    return DataDefinition(
        categorical_columns=[s.column for s in active if s.kind == "categorical"],
        numerical_columns=[s.column for s in active if s.kind == "numerical"],
        embeddings={EMBEDDINGS_NAME: _embedding_columns(embedding_dim)} if embedding_dim else None,
    )


def _to_pandas(frame: pl.DataFrame, active: list[SignalSpec], embeddings: np.ndarray | None) -> pd.DataFrame:
    """Evidently reads pandas; embeddings become one column per dimension, added in one go."""
    import pandas as pd

    data = frame.select([s.column for s in active]).to_pandas()
    if embeddings is None:
        return data
    vectors = pd.DataFrame(embeddings, columns=_embedding_columns(embeddings.shape[1]), index=data.index)
    return pd.concat([data, vectors], axis=1)


def _placeholder_html(title: str) -> str:
    """A page without Evidently's dashboard (no verdict to show); ``with_summary`` fills it in."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html_lib.escape(title)}</title></head><body></body></html>"
    )
