"""A custom Evidently 0.7 metric that puts the embedding domain classifier into the drift report.

Evidently resolves a metric's calculation from the generic parameter of its calculation class,
so defining ``DomainClassifierDriftCalculation`` is what makes ``DomainClassifierDrift`` runnable.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from evidently.core.metric_types import SingleValue, SingleValueCalculation, SingleValueMetric
from evidently.legacy.renderers.html_widgets import CounterData, counter, plotly_figure

from ticket_assets.monitoring.domain_classifier import DomainClassifierResult, domain_classifier_auc


class DomainClassifierDrift(SingleValueMetric):
    """ROC AUC of a classifier telling current from reference embeddings; drift when >= threshold."""

    embeddings_name: str
    threshold: float
    folds: int = 5
    c: float = 1.0
    seed: int = 0


class DomainClassifierDriftCalculation(SingleValueCalculation[DomainClassifierDrift]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any) -> SingleValue:
        if reference_data is None:
            raise ValueError("the domain classifier needs reference data")
        columns = current_data.data_definition.embeddings[self.metric.embeddings_name]
        outcome = domain_classifier_auc(
            reference_data.as_dataframe()[columns].to_numpy(),
            current_data.as_dataframe()[columns].to_numpy(),
            folds=self.metric.folds,
            c=self.metric.c,
            seed=self.metric.seed,
        )
        result = self.result(outcome.auc)
        result.widget = self._render(outcome)
        return result

    def display_name(self) -> str:
        return f"Domain classifier ROC AUC on '{self.metric.embeddings_name}' embeddings"

    def _render(self, outcome: DomainClassifierResult) -> list:
        drifted = outcome.auc >= self.metric.threshold
        headline = CounterData(
            f"Input drift {'detected' if drifted else 'not detected'}. "
            f"Logistic regression, {outcome.folds}-fold out-of-fold ROC AUC "
            f"(threshold {self.metric.threshold:.2f}; 0.5 = indistinguishable).",
            f"{outcome.auc:.3f}",
        )
        sizes = CounterData(
            "distinct rows (reference / current)", f"{outcome.n_reference} / {outcome.n_current}"
        )
        figure = go.Figure()
        for name, scores in (("reference", outcome.reference_scores), ("current", outcome.current_scores)):
            figure.add_histogram(x=scores, name=name, histnorm="probability", nbinsx=30, opacity=0.6)
        figure.update_layout(
            barmode="overlay",
            xaxis_title="out-of-fold P(current)",
            yaxis_title="share of rows",
            legend_title_text="window",
        )
        return [
            counter(counters=[headline, sizes], title=self.display_name()),
            plotly_figure(title="How well the classifier separates the windows", figure=figure),
        ]
