"""POST /v1/feedback: the true labels and whether the draft helped, for a logged prediction."""

from __future__ import annotations

import re

import psycopg
import psycopg_pool
from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError

from serving.deps import LogWriterDep, ModelStoreDep, StateDep
from serving.errors import error_responses
from serving.schemas import FeedbackRequest, FeedbackResponse
from ticket_assets.core.labels import normalize_label, normalize_urgency

router = APIRouter(prefix="/v1", tags=["feedback"])

# Upsert keyed by request_id. Fields left out of a later submission keep their earlier value, so
# a client can send the true topic now and `draft_helpful` later. The `where exists` makes an
# unknown request id return no row (-> 404) instead of a foreign-key error.
UPSERT_SQL = """
insert into ops.feedback as f (request_id, true_topic, true_urgency, draft_helpful, comment)
select %(request_id)s, %(true_topic)s, %(true_urgency)s, %(draft_helpful)s, %(comment)s
where exists (select 1 from ops.predictions where request_id = %(request_id)s)
on conflict (request_id) do update set
    true_topic    = coalesce(excluded.true_topic, f.true_topic),
    true_urgency  = coalesce(excluded.true_urgency, f.true_urgency),
    draft_helpful = coalesce(excluded.draft_helpful, f.draft_helpful),
    comment       = coalesce(excluded.comment, f.comment),
    updated_at    = now()
returning created_at, updated_at, updated_at > created_at as updated
"""

# A prediction row may still sit in the log writer's buffer; wait this long for it to be written.
PENDING_WAIT_S = 5.0


NEW_LABEL = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")


def _check_labels(body: FeedbackRequest, topics: tuple[str, ...], urgencies: tuple[str, ...]) -> None:
    errors = []
    if body.new_topic and body.true_topic is not None and not NEW_LABEL.match(body.true_topic):
        errors.append(
            {
                "type": "string_pattern_mismatch",
                "loc": ("body", "true_topic"),
                "msg": "a new topic must be a lower-case label of letters, digits and underscores",
                "ctx": {"pattern": NEW_LABEL.pattern},
            }
        )
    # Labels go through the label contract: 'HR Support' is the key hr_support (staging stores the key
    # and keeps the agent's spelling as the display name).
    for field, value, allowed in (
        ("true_topic", None if body.new_topic else normalize_label(body.true_topic), topics),
        ("true_urgency", normalize_urgency(body.true_urgency), urgencies),
    ):
        if value is not None and allowed and value not in allowed:
            errors.append(
                {
                    "type": "enum",
                    "loc": ("body", field),
                    "msg": f"Input should be one of: {', '.join(allowed)}",
                    "ctx": {"expected": ", ".join(allowed)},
                }
            )
    if errors:
        raise RequestValidationError(errors)


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    summary="Record the true labels / draft usefulness for a prediction",
    description=(
        "`request_id` is a per-ticket id from `/v1/triage` or `/v1/answer`. Sending feedback again for "
        "the same id updates it (fields you omit keep their earlier value). Labels must be ones the "
        "served model knows."
    ),
    responses=error_responses(
        status.HTTP_401_UNAUTHORIZED,
        status.HTTP_404_NOT_FOUND,
        status.HTTP_413_CONTENT_TOO_LARGE,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        status.HTTP_503_SERVICE_UNAVAILABLE,
    ),
)
async def feedback(
    body: FeedbackRequest, state: StateDep, models: ModelStoreDep, writer: LogWriterDep
) -> FeedbackResponse:
    model = models.current
    if model is not None:
        _check_labels(body, model.topics, model.urgencies)

    if writer.is_pending(body.request_id) and not await writer.wait_written(body.request_id, PENDING_WAIT_S):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the prediction is not stored yet; retry shortly"
        )

    try:
        async with state.db.connection(timeout=5) as conn:
            cur = await conn.execute(UPSERT_SQL, body.model_dump())
            row = await cur.fetchone()
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable") from exc
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no prediction with request_id {body.request_id}")
    created_at, updated_at, updated = row
    return FeedbackResponse(
        request_id=body.request_id, created_at=created_at, updated_at=updated_at, updated=updated
    )
