"""Production monitoring without Dagster: drift between reference and live predictions."""

from ticket_assets.monitoring.domain_classifier import DomainClassifierResult, domain_classifier_auc
from ticket_assets.monitoring.drift import (
    DEFAULT_SIGNALS,
    DriftConfig,
    DriftResult,
    SignalResult,
    SignalSpec,
    compute_drift,
    pending_window,
    prediction_frame,
    save_report,
)

__all__ = [
    "DEFAULT_SIGNALS",
    "DomainClassifierResult",
    "DriftConfig",
    "DriftResult",
    "SignalResult",
    "SignalSpec",
    "compute_drift",
    "domain_classifier_auc",
    "pending_window",
    "prediction_frame",
    "save_report",
]
