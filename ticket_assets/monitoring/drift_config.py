"""What decides a drift verdict (``ticket_assets.monitoring.drift``): signals, methods, thresholds.

Apart from the computation so that the asset graph can declare its config without importing
numpy, polars or Evidently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

SignalKind = Literal["categorical", "numerical"]

# Distances only: drift when statistic >= threshold, whatever the sample size.
DISTANCE_METHODS: frozenset[str] = frozenset({"jensenshannon", "psi", "wasserstein", "hellinger"})


@dataclass(frozen=True)
class SignalSpec:
    column: str
    kind: SignalKind
    method: str  # an Evidently stattest name from DISTANCE_METHODS
    threshold: float

    def __post_init__(self) -> None:
        if self.method not in DISTANCE_METHODS:
            raise ValueError(f"{self.method!r} is not a pinned distance method ({sorted(DISTANCE_METHODS)})")


# Calibrated by benchmarks/bench_drift.py (BENCHMARKS.md, "Drift detection"). Largest value over
# stationary windows of 200 rows -> value on the first full window of the scenario it catches:
#   topic             0.13 -> (none of the three scenarios; kept well above the noise of 12+ classes)
#   urgency           0.07 -> 0.19 (urgency_mix)
#   topic_confidence  0.25 -> 3.4  (new_topic_surge; normed by the reference std, which is small
#                                   because the model is confident: a few unsure tickets move it)
#   text_chars        0.21 -> 0.79 (vocabulary_shift)
DEFAULT_SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("topic", "categorical", "jensenshannon", 0.18),
    SignalSpec("urgency", "categorical", "jensenshannon", 0.12),
    SignalSpec("topic_confidence", "numerical", "wasserstein", 0.50),
    SignalSpec("text_chars", "numerical", "wasserstein", 0.40),
)


@dataclass(frozen=True)
class DriftConfig:
    """Everything that decides a verdict, pinned so that a verdict can be reproduced and explained."""

    # Fewer predictions than this and the noise of every statistic exceeds the calibrated margins.
    min_window: int = 200
    min_reference: int = 200
    # The reference is sampled down (seeded) to this many rows: its sampling noise is then small
    # next to a 200-300-row window's, and the classifier's cost stays flat as the mart grows.
    reference_sample_size: int = 1000
    signals: tuple[SignalSpec, ...] = DEFAULT_SIGNALS
    # Domain classifier: stationary windows of 200 rows reach 0.57 (mean 0.49, sd 0.03);
    # vocabulary_shift's first full window scores 0.81.
    domain_auc_threshold: float = 0.65
    domain_folds: int = 5
    domain_c: float = 1.0  # inverse L2 strength; embeddings are unit vectors
    min_drifted_signals: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_window < self.domain_folds or self.min_reference < self.domain_folds:
            raise ValueError("min_window and min_reference must be at least domain_folds")
        if not 0.5 < self.domain_auc_threshold < 1.0:
            raise ValueError("domain_auc_threshold must be in (0.5, 1)")
        if self.min_drifted_signals < 1:
            raise ValueError("min_drifted_signals must be >= 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
