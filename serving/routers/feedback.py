"""POST /v1/feedback: the true labels and whether the draft helped, for a logged prediction."""

from __future__ import annotations

import json
import re

import psycopg
import psycopg_pool
from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from serving.deps import LogWriterDep, ModelStoreDep, StateDep
from serving.errors import error_responses
from serving.pipeline import log_rows
from serving.prediction_log import FEEDBACK_UPSERT_SQL, FeedbackRow
from serving.schemas import FeedbackQueued, FeedbackRequest, FeedbackResponse
from ticket_assets.core.labels import normalize_label, normalize_urgency

router = APIRouter(prefix="/v1", tags=["feedback"])

# A prediction row may still sit in the log writer's buffer: wait this long for its write, then
# queue the feedback behind it instead (durably, like the prediction).
PENDING_WAIT_S = 1.0


NEW_LABEL = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")


def _check_labels(
    body: FeedbackRequest,
    topics: tuple[str, ...],
    urgencies: tuple[str, ...],
    routing: dict[str, tuple[str, ...]] | None = None,
) -> None:
    errors = []
    routing = routing or {}
    for target, label in (body.true_labels or {}).items():
        if target not in routing:
            known = ", ".join(sorted(routing)) or "none"
            errors.append(
                {
                    "type": "enum",
                    "loc": ("body", "true_labels", target),
                    "msg": f"unknown routing target {target!r}; the served model has: {known}",
                    "ctx": {"expected": known},
                }
            )
        elif normalize_label(label) not in routing[target]:
            errors.append(
                {
                    "type": "enum",
                    "loc": ("body", "true_labels", target),
                    "msg": f"Input should be one of: {', '.join(routing[target])}",
                    "ctx": {"expected": ", ".join(routing[target])},
                }
            )
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
        "served model knows. While the prediction is not stored yet (just made, or the database is "
        "down) the feedback is queued durably and the answer is `202`; it is written behind the "
        "prediction (an unknown `request_id` then ends in `ops.feedback_rejected`)."
    ),
    responses={
        **error_responses(
            status.HTTP_400_BAD_REQUEST,
            status.HTTP_401_UNAUTHORIZED,
            status.HTTP_404_NOT_FOUND,
            status.HTTP_413_CONTENT_TOO_LARGE,
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            status.HTTP_503_SERVICE_UNAVAILABLE,
        ),
        status.HTTP_202_ACCEPTED: {"model": FeedbackQueued, "description": "Queued behind its prediction."},
    },
)
async def feedback(
    body: FeedbackRequest, state: StateDep, models: ModelStoreDep, writer: LogWriterDep
) -> FeedbackResponse | JSONResponse:
    model = models.current
    if model is not None:
        _check_labels(body, model.topics, model.urgencies, model.routing)
    elif body.true_labels:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no model is loaded to check true_labels against"
        )
    params = _params(body)

    if writer.is_pending(body.request_id) and not await writer.wait_written(body.request_id, PENDING_WAIT_S):
        return await _queue(state, body, "the prediction is not stored yet")

    try:
        async with state.db.connection(timeout=2) as conn:
            # Same upsert as the log writer's: an unknown request id returns no row (-> 404).
            cur = await conn.execute(FEEDBACK_UPSERT_SQL, params)
            row = await cur.fetchone()
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
        return await _queue(state, body, "the database is unavailable")
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no prediction with request_id {body.request_id}")
    created_at, updated_at, updated = row
    return FeedbackResponse(
        request_id=body.request_id, created_at=created_at, updated_at=updated_at, updated=updated
    )


def _true_labels_json(body: FeedbackRequest) -> str | None:
    """Routing corrections as stored: label keys, like topic and urgency."""
    if not body.true_labels:
        return None
    return json.dumps({target: normalize_label(label) for target, label in sorted(body.true_labels.items())})


def _params(body: FeedbackRequest) -> dict:
    return body.model_dump(exclude={"new_topic"}) | {"true_labels": _true_labels_json(body)}


async def _queue(state: StateDep, body: FeedbackRequest, why: str) -> JSONResponse:
    row = FeedbackRow(
        request_id=body.request_id,
        true_topic=body.true_topic,
        true_urgency=body.true_urgency,
        draft_helpful=body.draft_helpful,
        comment=body.comment,
        true_labels=_true_labels_json(body),
    )
    await log_rows(state, [row], spool_only=True)
    queued = FeedbackQueued(request_id=body.request_id, status="queued", detail=f"{why}; written behind it")
    return JSONResponse(queued.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
