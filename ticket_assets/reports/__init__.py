"""Data reports rendered for asset metadata (plain code, no Dagster)."""

from ticket_assets.reports.profile import (
    CategoryShare,
    LengthStats,
    TrainingSetProfile,
    profile_training_set,
    render_png,
    to_markdown,
)

__all__ = [
    "CategoryShare",
    "LengthStats",
    "TrainingSetProfile",
    "profile_training_set",
    "render_png",
    "to_markdown",
]
