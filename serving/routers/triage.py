"""POST /v1/triage: topic and urgency for one ticket or a batch."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from serving.deps import SettingsDep, StateDep
from serving.errors import error_responses
from serving.memory import add_similar
from serving.pipeline import (
    Timings,
    enforce_batch_size,
    enforce_limits,
    infer,
    model_ref,
    prediction_rows,
    record,
    triage_results,
)
from serving.schemas import BatchTriageRequest, TriageRequest, TriageResponse

router = APIRouter(prefix="/v1", tags=["triage"])


@router.post(
    "/triage",
    response_model=TriageResponse,
    summary="Classify tickets by topic and urgency",
    description=(
        'Send one ticket as `{"ticket": {...}}` or up to the server\'s max batch size as '
        '`{"tickets": [...]}`. Each result carries its own `request_id` to reference in '
        "`/v1/feedback`; `low_confidence` marks tickets a human should route."
    ),
    responses=error_responses(
        status.HTTP_400_BAD_REQUEST,
        status.HTTP_401_UNAUTHORIZED,
        status.HTTP_413_CONTENT_TOO_LARGE,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        status.HTTP_503_SERVICE_UNAVAILABLE,
    ),
)
async def triage(
    body: TriageRequest, state: StateDep, settings: SettingsDep, response: Response
) -> TriageResponse:
    tickets = body.items
    if isinstance(body, BatchTriageRequest):
        enforce_batch_size(len(tickets), settings.max_batch_size)
        locs = [("body", "tickets", i) for i in range(len(tickets))]
    else:
        locs = [("body", "ticket")]
    enforce_limits(tickets, locs, settings.max_text_chars)

    timings = Timings()
    result = await infer(state, tickets, timings)
    triages = triage_results(
        result, settings.low_confidence_threshold, tickets, state.escalation, state.label_names
    )
    await add_similar(state, triages, result.embeddings, timings)
    call_id = uuid.uuid4()
    rows = prediction_rows(
        call_request_id=call_id,
        endpoint="triage",
        tickets=tickets,
        triages=triages,
        result=result,
        redact=settings.redact_text,
        latency_ms=timings.elapsed_ms,
    )
    await record(state, "triage", rows, timings)
    response.headers["X-Request-ID"] = str(call_id)
    response.headers["Server-Timing"] = timings.header()
    return TriageResponse(request_id=call_id, model=model_ref(result), results=triages)
