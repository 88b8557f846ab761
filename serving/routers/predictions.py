"""GET /v1/predictions/recent: the review queue of recent predictions, those needing a human first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import psycopg
import psycopg_pool
from fastapi import APIRouter, HTTPException, Query, status
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from serving.deps import StateDep
from serving.errors import error_responses
from serving.schemas import Tier

router = APIRouter(prefix="/v1", tags=["feedback"])

# Not yet reviewed first; among them those the API said need a person (its stored `needs_review`:
# a target's tier, out of scope; rows logged before it was stored fall back on low confidence),
# then the least sure, then the newest.
RECENT_SQL = """
select p.request_id, p.created_at, p.endpoint, p.text, p.text_chars, p.channel, p.topic,
       p.topic_confidence, p.urgency, p.urgency_confidence, p.low_confidence, p.model_version,
       coalesce(p.needs_review, p.low_confidence) as needs_review, p.out_of_scope, p.escalated,
       p.escalation_rule, coalesce(p.served_urgency, p.urgency) as served_urgency, p.topic_tier,
       p.urgency_tier, p.routing, f.request_id is not null as reviewed
from ops.predictions p
left join ops.feedback f on f.request_id = p.request_id
where p.created_at > now() - make_interval(hours => %(hours)s)
order by reviewed, needs_review desc, p.topic_confidence, p.created_at desc
limit %(limit)s
"""


class RoutedLabel(BaseModel):
    label: str
    confidence: float
    tier: Tier


class RecentPrediction(BaseModel):
    request_id: UUID
    created_at: datetime
    endpoint: str = Field(description="triage or answer.")
    text: str | None = Field(description="The ticket text (null on deployments that redact it).")
    text_chars: int
    channel: str | None
    topic: str
    topic_name: str = Field(description="The topic as people read it (the served model's display names).")
    topic_confidence: float
    urgency: str | None = Field(description="The model's urgency (before escalation rules).")
    urgency_confidence: float | None
    low_confidence: bool
    model_version: str
    needs_review: bool = Field(
        description="A person decides (as served: a target's tier or out of scope; low confidence for "
        "rows logged before the API stored it)."
    )
    out_of_scope: bool | None = Field(description="Served as out of scope (null: not recorded).")
    escalated: bool | None = Field(description="An escalation rule raised the urgency (null: not recorded).")
    escalation_rule: str | None
    served_urgency: str | None = Field(description="The urgency the API returned (after escalation).")
    topic_tier: Tier | None
    urgency_tier: Tier | None
    routing: dict[str, RoutedLabel] | None = Field(
        description="Routing targets as served: label, confidence and tier per target."
    )
    reviewed: bool = Field(description="Feedback has been given for it.")


class RecentPredictions(BaseModel):
    predictions: list[RecentPrediction]


@router.get(
    "/predictions/recent",
    response_model=RecentPredictions,
    summary="Recent predictions to review, those needing a human first",
    description=(
        "Predictions of the last `hours`: not yet reviewed first, then those that need a person "
        "(`needs_review` as served), then the least confident. The agent console's queue."
    ),
    responses=error_responses(
        status.HTTP_401_UNAUTHORIZED,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        status.HTTP_503_SERVICE_UNAVAILABLE,
    ),
)
async def recent(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many rows.")] = 50,
    hours: Annotated[int, Query(ge=1, le=24 * 90, description="How far back, in hours.")] = 72,
) -> RecentPredictions:
    try:
        async with state.db.connection(timeout=2) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(RECENT_SQL, {"limit": limit, "hours": hours})
            rows = await cur.fetchall()
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable") from None
    model = state.models.current
    display = {} if model is None else (model.model.metadata or {}).get("topic_display", {})
    return RecentPredictions(
        predictions=[
            RecentPrediction(**row, topic_name=str(state.label_names.name("topic", row["topic"], display)))
            for row in rows
        ]
    )
