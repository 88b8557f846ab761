"""Drift detection on real parts: synthetic traffic, the real triage model, real embeddings, Evidently.

Texts are embedded once per session (about 1,300) and each window's drift is computed once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from ticket_assets.ml.embed import get_embedder
from ticket_assets.ml.train import TrainConfig, train_triage_model
from ticket_assets.monitoring.domain_classifier import distinct_rows, domain_classifier_auc
from ticket_assets.monitoring.drift import (
    EMBEDDINGS_NAME,
    DriftResult,
    compute_drift,
    pending_window,
    prediction_frame,
    save_report,
)
from ticket_assets.monitoring.drift_config import DriftConfig, SignalSpec
from ticket_assets.settings import get_settings
from ticket_assets.sources.synthetic import SCENARIOS, generate_tickets

WINDOW = 200
TRAFFIC_START = date(2025, 6, 2)


@dataclass
class Window:
    frame: pl.DataFrame
    embeddings: np.ndarray


@dataclass
class DriftWorld:
    reference: pl.DataFrame
    ref_embeddings: np.ndarray
    windows: dict[str, Window]  # "stationary-0", "stationary-1", one per scenario
    results: dict[str, DriftResult]


def _model_text(tickets: pl.DataFrame) -> list[str]:
    return (
        tickets.select(pl.concat_str(["title", "body"], separator=". ", ignore_nulls=True))
        .to_series()
        .to_list()
    )


def _predicted_window(model, embedder, tickets: pl.DataFrame) -> Window:
    tickets = tickets.sort("created_at", maintain_order=True)
    texts = _model_text(tickets)
    frame = prediction_frame(texts, model.predict(texts), tickets["created_at"].to_list())
    return Window(frame, embedder.encode(texts))


@pytest.fixture(scope="session")
def drift_world() -> DriftWorld:
    # A small real model (TF-IDF candidate, the one training picks on this data) trained on the
    # older part of a labelled history; the newest part is the held-out reference.
    history = generate_tickets(1100, seed=11, days=60).unique("text_hash", keep="first").sort("created_at")
    history = history.with_columns(text=pl.Series(_model_text(history)))
    train, held_out = history[:700], history[700:]
    config = TrainConfig(cv_folds=3, tfidf_c_grid=(0.3, 1.0), candidates=("tfidf",))
    model = train_triage_model(train.select("text", "topic", "urgency"), None, None, config).model

    embedder = get_embedder(get_settings())
    reference_texts = held_out["text"].to_list()
    reference = prediction_frame(reference_texts, model.predict(reference_texts))
    ref_embeddings = embedder.encode(reference_texts)

    stationary = generate_tickets(2 * WINDOW, seed=12, start=TRAFFIC_START, days=6)
    windows = {
        f"stationary-{i}": _predicted_window(
            model, embedder, stationary.sort("created_at")[i * WINDOW : (i + 1) * WINDOW]
        )
        for i in range(2)
    }
    for name in SCENARIOS:
        # Every ticket of the window is after the scenario start: a full drifted window.
        start = TRAFFIC_START + timedelta(days=10)
        tickets = generate_tickets(WINDOW, seed=13, start=start, days=2, scenario=name, scenario_start=start)
        windows[name] = _predicted_window(model, embedder, tickets)

    results = {
        name: compute_drift(reference, window.frame, ref_embeddings, window.embeddings)
        for name, window in windows.items()
    }
    return DriftWorld(reference, ref_embeddings, windows, results)


@pytest.mark.parametrize("name", ["stationary-0", "stationary-1"])
def test_stationary_window_is_not_drift(drift_world: DriftWorld, name: str) -> None:
    result = drift_world.results[name]
    assert result.verdict == "no_drift", result.summary
    assert result.drift_share == 0.0
    assert {s.name for s in result.signals} == {
        EMBEDDINGS_NAME,
        "topic",
        "urgency",
        "topic_confidence",
        "text_chars",
    }
    assert all(s.statistic < s.threshold for s in result.signals)
    # A classifier that cannot tell the windows apart scores near chance.
    assert 0.35 < result.domain_auc < 0.62


# The signal each scenario must move (the benchmark shows which one catches it first).
EXPECTED_SIGNAL = {
    "new_topic_surge": "topic_confidence",
    "vocabulary_shift": EMBEDDINGS_NAME,
    "urgency_mix": "urgency",
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_window_is_drift(drift_world: DriftWorld, scenario: str) -> None:
    result = drift_world.results[scenario]
    assert result.verdict == "drift", result.summary
    assert EXPECTED_SIGNAL[scenario] in result.drifted_signals
    assert result.drift_share == len(result.drifted_signals) / len(result.signals) > 0
    stationary = drift_world.results["stationary-0"]
    signal = EXPECTED_SIGNAL[scenario]
    assert _statistic(result, signal) > _statistic(stationary, signal)


def _statistic(result: DriftResult, name: str) -> float:
    return next(s.statistic for s in result.signals if s.name == name)


def test_too_small_window_is_insufficient_data(drift_world: DriftWorld) -> None:
    window = drift_world.windows["stationary-0"]
    small = compute_drift(
        drift_world.reference, window.frame[:150], drift_world.ref_embeddings, window.embeddings[:150]
    )
    assert small.verdict == "insufficient_data"
    assert small.signals == () and small.drift_share == 0.0 and small.domain_auc is None
    assert small.current_size == 150
    assert "150 predictions" in small.reason and "insufficient data" in small.html.lower()


def test_report_html_is_written_atomically(drift_world: DriftWorld, tmp_path) -> None:
    result = drift_world.results["vocabulary_shift"]
    path = save_report(result, tmp_path / "reports")
    assert path.exists() and path.parent == tmp_path / "reports"
    stamp = result.window_end.strftime("%Y%m%dT%H%M%SZ")
    assert re.fullmatch(rf"drift-{stamp}-[0-9a-f]{{8}}\.html", path.name)
    html = path.read_text(encoding="utf-8")
    assert html == result.html
    # Evidently's standalone dashboard with one drift test per pinned signal and the custom metric.
    assert "window.drawDashboard(" in html
    for column in ("topic", "urgency", "topic_confidence", "text_chars"):
        assert f"Value Drift for column {column}" in html
    assert "Domain classifier ROC AUC" in html
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    # Same window, same content: the same file name, rewritten rather than duplicated.
    assert save_report(result, tmp_path / "reports") == path


def test_results_are_deterministic(drift_world: DriftWorld) -> None:
    window = drift_world.windows["urgency_mix"]
    again = compute_drift(drift_world.reference, window.frame, drift_world.ref_embeddings, window.embeddings)
    assert again.summary == drift_world.results["urgency_mix"].summary


def test_summary_is_json_metadata(drift_world: DriftWorld) -> None:
    import json

    summary = drift_world.results["new_topic_surge"].summary
    assert json.loads(json.dumps(summary)) == summary
    assert summary["verdict"] == "drift" and summary["reference_size"] == drift_world.reference.height
    assert summary["current_size"] == WINDOW and summary["window_start"] < summary["window_end"]
    assert {s["name"] for s in summary["signals"] if s["drifted"]} == set(summary["drifted_signals"])


def test_without_embeddings_prediction_signals_still_decide(drift_world: DriftWorld) -> None:
    """Redacted logs have no text to embed: the input signal is skipped, not faked."""
    window = drift_world.windows["urgency_mix"]
    result = compute_drift(drift_world.reference, window.frame, None, None)
    assert result.skipped_signals == (EMBEDDINGS_NAME,)
    assert result.domain_auc is None and len(result.signals) == 4
    assert result.verdict == "drift" and "urgency" in result.drifted_signals


def test_model_without_urgency_skips_the_urgency_signal(drift_world: DriftWorld) -> None:
    window = drift_world.windows["stationary-1"]
    no_urgency = pl.lit(None, dtype=pl.String).alias("urgency")
    result = compute_drift(
        drift_world.reference.with_columns(no_urgency),
        window.frame.with_columns(no_urgency).rename({"text_chars": "text_length"}),  # the mart's name
        drift_world.ref_embeddings,
        window.embeddings,
    )
    assert "urgency" in result.skipped_signals
    assert "urgency" not in {s.name for s in result.signals}
    assert result.verdict == "no_drift"


def test_reference_is_sampled_to_the_configured_size(drift_world: DriftWorld) -> None:
    window = drift_world.windows["stationary-0"]
    config = DriftConfig(reference_sample_size=250)
    first = compute_drift(
        drift_world.reference, window.frame, drift_world.ref_embeddings, window.embeddings, config
    )
    second = compute_drift(
        drift_world.reference, window.frame, drift_world.ref_embeddings, window.embeddings, config
    )
    assert first.reference_size == 250
    assert first.summary == second.summary


def test_domain_classifier_separates_only_different_distributions(drift_world: DriftWorld) -> None:
    reference = drift_world.ref_embeddings
    same = domain_classifier_auc(reference[::2], reference[1::2])
    shifted = domain_classifier_auc(reference, drift_world.windows["vocabulary_shift"].embeddings)
    assert 0.35 < same.auc < 0.65
    assert shifted.auc > 0.75
    assert (
        len(shifted.current_scores) == shifted.n_current
        and len(shifted.reference_scores) == shifted.n_reference
    )


def test_exact_duplicates_are_dropped_before_classifying() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    assert distinct_rows(vectors).tolist() == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]


def test_config_rejects_unpinned_or_p_value_methods() -> None:
    with pytest.raises(ValueError, match="distance"):
        SignalSpec("topic", "categorical", "chisquare", 0.05)
    with pytest.raises(ValueError, match="domain_auc_threshold"):
        DriftConfig(domain_auc_threshold=0.4)


def test_frames_and_embeddings_must_agree(drift_world: DriftWorld) -> None:
    window = drift_world.windows["stationary-0"]
    with pytest.raises(ValueError, match="embeddings"):
        compute_drift(drift_world.reference, window.frame, drift_world.ref_embeddings, window.embeddings[:10])
    with pytest.raises(ValueError, match="topic_confidence"):
        compute_drift(drift_world.reference, window.frame.drop("topic_confidence"), None, None)


def test_flood_of_one_text_skips_the_domain_classifier(drift_world: DriftWorld) -> None:
    """Too few distinct texts to cross-validate: the input signal is skipped, predictions still judged."""
    window = drift_world.windows["stationary-0"]
    flood = np.repeat(window.embeddings[:1], window.frame.height, axis=0)
    result = compute_drift(drift_world.reference, window.frame, drift_world.ref_embeddings, flood)
    assert EMBEDDINGS_NAME in result.skipped_signals
    assert result.verdict == "no_drift" and len(result.signals) == 4


def test_a_window_too_small_still_gets_a_report_saying_what_is_missing(
    drift_world: DriftWorld, tmp_path
) -> None:
    window = drift_world.windows["stationary-0"].frame[:12]
    pending = pending_window(window, model_version="7")
    assert pending.verdict == "insufficient_data" and pending.current_size == 12
    assert pending.reason == "12 of 200 predictions needed for a verdict"
    html = save_report(pending, tmp_path).read_text(encoding="utf-8")
    assert "<title>TicketOps drift report: insufficient data (model v7)</title>" in html
    summary = html[html.index("id='ticketops-summary'") :]
    assert "12 of 200 predictions needed for a verdict" in summary and "model v7" in summary
    assert str(window["created_at"].min().isoformat()) in summary  # the window so far


def test_the_report_opens_with_its_verdict_window_model_and_thresholds(drift_world: DriftWorld) -> None:
    window = drift_world.windows["urgency_mix"]
    result = compute_drift(
        drift_world.reference, window.frame, drift_world.ref_embeddings, window.embeddings, model_version="3"
    )
    html = result.html
    block = html[html.index("id='ticketops-summary'") : html.index("</section>")]
    assert html.index("id='ticketops-summary'") < html.index("window.drawDashboard(")
    assert "model v3" in block and ">drift</b>" in block and result.reason in block
    assert result.summary["window_start"] in block and result.summary["window_end"] in block
    for spec in DriftConfig().signals:  # every threshold, with what was measured
        measured = next(s for s in result.signals if s.name == spec.column)
        assert f"{spec.method} &ge; {spec.threshold}" in block
        assert f"{measured.statistic:.3f} ({'drift' if measured.drifted else 'ok'})" in block
    assert f"ROC AUC &ge; {DriftConfig().domain_auc_threshold}" in block
