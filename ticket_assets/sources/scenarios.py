"""Drift scenarios of the synthetic generator (``ticket_assets.sources.synthetic``, which re-exports
them), apart from it so that naming them (the CLI's help does) imports neither numpy nor polars.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    """A distribution shift that applies to tickets created on or after ``scenario_start``."""

    name: str
    description: str
    topic_weights: Mapping[str, float] = field(default_factory=dict)  # replaces/adds topic weights
    urgency_tilt: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # multiplies P(urgency)
    products: Mapping[str, list[str]] = field(default_factory=dict)  # replaces product names
    notes: Mapping[str, list[str]] = field(default_factory=dict)  # new phrasing, per language
    note_rate: float = 0.0


SCENARIOS: dict[str, Scenario] = {
    "new_topic_surge": Scenario(
        name="new_topic_surge",
        description=(
            "A company-wide MFA rollout: a new topic 'mfa_rollout' (~20% of tickets) with vocabulary "
            "never seen before (authenticator, push prompts, enrolment), and more password tickets."
        ),
        topic_weights={"mfa_rollout": 0.25, "access_password": 0.18},
    ),
    "vocabulary_shift": Scenario(
        name="vocabulary_shift",
        description=(
            "Migration to Google Workspace, Zscaler and Okta: the same topics, but product names and "
            "phrasing change (Outlook -> Gmail, AnyConnect -> Zscaler, OneDrive -> Google Drive ...)."
        ),
        products={
            "mail_app": ["Gmail", "Google Workspace mail"],
            "calendar": ["Google Calendar"],
            "vpn_client": ["Zscaler", "Zscaler Client Connector"],
            "storage_app": ["Google Drive", "Google Shared Drives"],
            "meeting_app": ["Google Meet"],
            "sso": ["Okta"],
        },
        notes={
            "en": [
                "This started after last week's migration.",
                "Since we moved to the new Google Workspace tools this keeps happening.",
                "Is this related to the switch to Zscaler?",
                "The new Okta guide doesn't cover this.",
            ],
            "fr": [
                "Ça a commencé après la migration de la semaine dernière.",
                "Depuis le passage aux outils Google, ça arrive souvent.",
            ],
        },
        note_rate=0.5,
    ),
    "urgency_mix": Scenario(
        name="urgency_mix",
        description=(
            "A period of incidents and deadlines: high and critical tickets roughly double at the "
            "expense of low ones; topics and vocabulary stay the same."
        ),
        urgency_tilt=(0.35, 0.7, 1.8, 3.0),
    ),
}
