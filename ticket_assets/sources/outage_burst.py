"""Outage-burst scenario: many people reporting the same outage within minutes.

A major incident looks like this in the ticket stream: tens of tickets about one service, from
every department and channel, phrased in each reporter's own words, inside a short window. The
phrasings vary (title, body, detail) so detection must rely on meaning, not on identical text.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from ticket_assets.sources.frame import UTC_DATETIME, conform
from ticket_assets.sources.text import text_hash_series

# {service} is filled per outage; phrasings a reporter might use.
_TITLES = (
    "{service} down", "{service} not working", "Cannot connect to {service}", "{service} connection fails",
    "Problem with {service}", "{service} outage?", "{service} keeps disconnecting", "No {service} access",
)  # fmt: skip
_BODIES = (
    "The {service} stopped working a few minutes ago and I cannot connect at all.",
    "I cannot connect to the {service} since this morning, it times out every time.",
    "{service} says connection failed. Colleagues around me have the same problem.",
    "Is the {service} down? I keep getting a connection error when I try to log in.",
    "Since about {time} the {service} does not connect anymore, I cannot reach any internal system.",
    "My {service} connection drops immediately after connecting. Whole team affected.",
    "The {service} client shows an error and will not connect, I need it for work urgently.",
    "Unable to establish {service} connection from home, it worked fine yesterday.",
)
_DEPARTMENTS = ("Finance", "Sales", "HR", "Engineering", "Marketing", "Legal", "Operations", "Support")
_CHANNELS = ("email", "portal", "chat", "phone")


def generate_outage_burst(
    n: int, start: datetime, minutes: float, seed: int, service: str = "VPN", topic: str = "network"
) -> pl.DataFrame:
    """``n`` tickets about ``service`` failing, spread over ``minutes`` from ``start`` (ids ``outage-...``)."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, minutes * 60, n))
    created = [start + timedelta(seconds=float(s)) for s in offsets]
    titles = [_TITLES[i].format(service=service) for i in rng.integers(0, len(_TITLES), n)]
    bodies = [
        _BODIES[i].format(service=service, time=(start - timedelta(minutes=5)).strftime("%H:%M"))
        for i in rng.integers(0, len(_BODIES), n)
    ]
    frame = pl.DataFrame(
        {
            "ticket_id": [f"outage-{seed}-{i}" for i in range(n)],
            "source": [f"synthetic:outage_burst:seed={seed}"] * n,
            "title": titles,
            "body": bodies,
            "topic": [topic] * n,
            "urgency": [["high", "critical"][int(u)] for u in rng.integers(0, 2, n)],
            "channel": [_CHANNELS[i] for i in rng.integers(0, len(_CHANNELS), n)],
            "department": [_DEPARTMENTS[i] for i in rng.integers(0, len(_DEPARTMENTS), n)],
            "requester": [f"user{int(i)}@example.com" for i in rng.integers(1000, 9999, n)],
            "language": ["en"] * n,
            "created_at": pl.Series(created, dtype=UTC_DATETIME),
            "extra": [json.dumps({"scenario": "outage_burst", "service": service})] * n,
        }
    )
    return conform(frame.with_columns(text_hash=text_hash_series(frame["title"], frame["body"])))
