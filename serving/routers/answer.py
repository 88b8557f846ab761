"""POST /v1/answer: triage one ticket, retrieve knowledge-base passages and draft a reply."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Response, status

from serving.deps import KnowledgeBaseDep, SettingsDep, StateDep
from serving.errors import error_responses
from serving.memory import add_similar
from serving.pipeline import (
    Timings,
    enforce_limits,
    infer,
    model_ref,
    prediction_rows,
    record,
    triage_results,
)
from serving.schemas import AnswerRequest, AnswerResponse, DraftOut, PassageOut, TicketTriage
from ticket_assets.core.language import detect_language
from ticket_assets.core.passage import Passage
from ticket_assets.rag.draft import draft_answer

router = APIRouter(prefix="/v1", tags=["answer"])


def retrieve(
    kb: Any,
    vector: np.ndarray,
    k: int,
    triage: TicketTriage,
    language: str | None,
    topic_map: dict[str, str | None] | None = None,
) -> list[Passage]:
    """Prefer passages in the KB topic the predicted label's tickets retrieve (only when the model
    is sure of the label; ``topic_map`` is learned at training) and the ticket's language; the
    index fills any remaining slots without those filters."""
    topic = None if triage.low_confidence or triage.out_of_scope else triage.topic
    return list(kb.search(vector, k, topic=topic, language=language, topic_map=topic_map))


def _passage(p: Passage) -> PassageOut:
    return PassageOut(article_id=p.article_id, title=p.title, heading=p.heading, text=p.text, score=p.score)


@router.post(
    "/answer",
    response_model=AnswerResponse,
    summary="Triage a ticket and draft an answer from the knowledge base",
    description=(
        "Classifies the ticket, retrieves the `top_k` most relevant knowledge-base passages and drafts "
        "a reply citing them. `draft.mode` is `llm` when an LLM endpoint is configured and answered "
        "well, otherwise `extractive` (with `fallback_reason` saying why)."
    ),
    responses=error_responses(
        status.HTTP_400_BAD_REQUEST,
        status.HTTP_401_UNAUTHORIZED,
        status.HTTP_413_CONTENT_TOO_LARGE,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        status.HTTP_503_SERVICE_UNAVAILABLE,
    ),
)
async def answer(
    body: AnswerRequest, state: StateDep, settings: SettingsDep, kb: KnowledgeBaseDep, response: Response
) -> AnswerResponse:
    ticket = body.ticket
    enforce_limits([ticket], [("body", "ticket")], settings.max_text_chars)

    timings = Timings()
    result = await infer(state, [ticket], timings)
    triage = triage_results(
        result, settings.low_confidence_threshold, [ticket], state.escalation, state.label_names
    )[0]
    await add_similar(state, [triage], result.embeddings[:1], timings)
    kb_version = None if kb.version is None else str(kb.version)

    t0 = time.perf_counter()
    k = body.top_k or settings.answer_top_k
    language = detect_language(ticket.text)
    metadata = getattr(result.model.model, "metadata", {}) or {}
    found = await anyio.to_thread.run_sync(
        retrieve, kb, result.embeddings[0], k, triage, language, metadata.get("kb_topic_map")
    )
    relevance = None
    if found:  # per article, dense score blended with how many of the ticket's rare words it holds
        relevance = await anyio.to_thread.run_sync(
            kb.relevance,
            result.embeddings[0],
            ticket.model_input(),
            settings.answer_lexical_weight,
            settings.answer_coverage_terms,
        )
    t0 = timings.since("retrieve", t0)

    # People read the draft: display names in the ticket's language, never keys.
    names, display = state.label_names, metadata.get("topic_display", {})
    draft = await draft_answer(
        ticket.model_input(),
        names.name("topic", triage.topic, display, language),
        names.name("urgency", triage.urgency, language=language),
        found,
        settings,
        [str(names.name("topic", topic, display, language)) for topic in result.model.topics],
        language=language,
        client=state.llm_client,
        min_relevance=settings.answer_min_relevance,
        relevance=relevance,
    )
    timings.since("draft", t0)

    call_id = uuid.uuid4()
    rows = prediction_rows(
        call_request_id=call_id,
        endpoint="answer",
        tickets=[ticket],
        triages=[triage],
        result=result,
        redact=settings.redact_text,
        latency_ms=timings.elapsed_ms,
        answer_mode=draft.mode,
        kb_version=kb_version,
    )
    await record(state, "answer", rows, timings)
    state.metrics.answer_modes.labels(mode=draft.mode).inc()
    response.headers["X-Request-ID"] = str(call_id)
    response.headers["Server-Timing"] = timings.header()
    return AnswerResponse(
        request_id=call_id,
        model=model_ref(result),
        triage=triage,
        kb_version=kb_version,
        passages=[_passage(p) for p in found],
        draft=DraftOut(
            text=draft.text,
            mode=draft.mode,
            citations=[str(c) for c in draft.citations],
            model=getattr(draft, "model", None),
            fallback_reason=getattr(draft, "fallback_reason", None),
        ),
    )
