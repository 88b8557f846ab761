"""What the triage and answer routes share: limits, inference, response rows and prediction-log rows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError

from serving.deps import ServingState
from serving.inference import InferenceResult, ModelNotReady
from serving.prediction_log import LogRow, PredictionRow, text_fields, to_record
from serving.schemas import ModelRef, RoutingPrediction, Ticket, TicketTriage
from serving.spool import SpoolError
from ticket_assets.core.labels import LabelNames
from ticket_assets.ml.tiers import REVIEW, SUGGEST, needs_review, tier_of


@dataclass
class Timings:
    """Server-side time per stage, sent back as a ``Server-Timing`` header (ms)."""

    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, ms: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + ms

    def since(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.add(name, (now - t0) * 1000)
        return now

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def header(self) -> str:
        parts = [f"{name};dur={ms:.2f}" for name, ms in self.stages.items()]
        parts.append(f"total;dur={self.elapsed_ms:.2f}")
        return ", ".join(parts)


def _validation_error(
    loc: tuple[str | int, ...], error_type: str, message: str, **ctx: Any
) -> dict[str, Any]:
    return {"type": error_type, "loc": loc, "msg": message, "ctx": ctx}


def enforce_limits(
    tickets: Sequence[Ticket], locs: Sequence[tuple[str | int, ...]], max_text_chars: int
) -> None:
    """The deployment's size limits (settings), reported exactly like schema errors: 422 naming the field."""
    errors = [
        _validation_error(
            (*loc, "text"),
            "string_too_long",
            f"String should have at most {max_text_chars} characters (this server's max_text_chars)",
            max_length=max_text_chars,
        )
        for ticket, loc in zip(tickets, locs, strict=True)
        if len(ticket.text) > max_text_chars
    ]
    if errors:
        raise RequestValidationError(errors)


def enforce_batch_size(count: int, max_batch_size: int) -> None:
    if count > max_batch_size:
        raise RequestValidationError(
            [
                _validation_error(
                    ("body", "tickets"),
                    "too_long",
                    f"List should have at most {max_batch_size} items (this server's max_batch_size), not {count}",
                    max_length=max_batch_size,
                    actual_length=count,
                )
            ]
        )


async def infer(state: ServingState, tickets: Sequence[Ticket], timings: Timings) -> InferenceResult:
    try:
        result = await state.engine.run([ticket.model_input() for ticket in tickets])
    except ModelNotReady as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    timings.add("queue", result.queue_ms)
    timings.add("embed", result.embed_ms)
    timings.add("model", result.model_ms)
    return result


def _probabilities(values: Any) -> dict[str, float] | None:
    return None if values is None else {str(label): float(p) for label, p in dict(values).items()}


def prediction_tier(
    tier_table: dict[str, dict[str, dict[str, float]]] | None,
    target: str,
    label: str,
    confidence: float,
    threshold: float,
) -> str:
    """The held-out tier of one prediction; a model trained without a tier table never says
    ``auto``: ``suggest`` at or above the server's threshold, else ``review``."""
    if tier_table is None:
        return SUGGEST if confidence >= threshold else REVIEW
    return tier_of(tier_table.get(target, {}).get(label), confidence)


def triage_results(
    result: InferenceResult,
    threshold: float,
    tickets: Sequence[Ticket] = (),
    escalation: Any = None,
    label_names: LabelNames | None = None,
) -> list[TicketTriage]:
    model = result.model.model
    display = (getattr(model, "metadata", {}) or {}).get("topic_display", {})
    names = label_names or LabelNames()
    tier_table = model.tier_thresholds() if hasattr(model, "tier_thresholds") else None
    out = []
    texts = [ticket.model_input() for ticket in tickets] or [""] * len(result.predictions)
    for prediction, text in zip(result.predictions, texts, strict=True):
        model_urgency = None if prediction.urgency is None else str(prediction.urgency)
        raised = escalation.apply(text, model_urgency) if escalation is not None else None
        oos = getattr(prediction, "out_of_scope", None)
        reasons = [f"term: {term}" for term in getattr(prediction, "topic_terms", ())]
        reasons += [f"nearest: {tid}" for tid in getattr(prediction, "nearest_ticket_ids", ())]
        reasons += [f"escalation: {raised.rule}"] if raised is not None and raised.rule else []
        reasons += ["out_of_scope"] if oos else []
        urgency_confidence = getattr(prediction, "urgency_confidence", None)
        topic_confidence = float(prediction.topic_confidence)
        topic = str(prediction.topic)
        urgency = model_urgency  # tiers judge the model's own prediction, not an escalation
        topic_tier = prediction_tier(tier_table, "topic", topic, topic_confidence, threshold)
        urgency_tier = (
            None
            if urgency is None or urgency_confidence is None
            else prediction_tier(tier_table, "urgency", urgency, float(urgency_confidence), threshold)
        )
        routing = {
            name: RoutingPrediction(
                label=str(routed["label"]),
                label_name=str(names.name(name, str(routed["label"]))),
                confidence=float(routed["confidence"]),
                probabilities=_probabilities(routed["probabilities"]) or {},
                tier=prediction_tier(
                    tier_table, name, str(routed["label"]), float(routed["confidence"]), threshold
                ),
                low_confidence=float(routed["confidence"]) < threshold,
            )
            for name, routed in (getattr(prediction, "routing", None) or {}).items()
        }
        tiers = [topic_tier, urgency_tier, *(r.tier for r in routing.values())]
        out.append(
            TicketTriage(
                request_id=uuid.uuid4(),
                topic=topic,
                topic_name=str(names.name("topic", topic, display)),
                topic_confidence=topic_confidence,
                topic_probabilities=_probabilities(prediction.topic_probabilities) or {},
                urgency=raised.urgency if raised is not None else model_urgency,
                model_urgency=model_urgency,
                escalated=raised is not None and raised.escalated,
                escalation_rule=raised.rule if raised is not None else None,
                out_of_scope=oos,
                out_of_scope_score=getattr(prediction, "out_of_scope_score", None),
                reasons=reasons,
                urgency_confidence=None if urgency_confidence is None else float(urgency_confidence),
                urgency_probabilities=_probabilities(getattr(prediction, "urgency_probabilities", None)),
                # Topic decides the queue a ticket goes to, so its confidence decides "ask a human".
                low_confidence=topic_confidence < threshold,
                topic_tier=topic_tier,
                urgency_tier=urgency_tier,
                urgency_low_confidence=None
                if urgency_confidence is None
                else float(urgency_confidence) < threshold,
                routing=routing,
                needs_review=needs_review(tiers, out_of_scope=bool(oos)),
            )
        )
    return out


def model_ref(result: InferenceResult) -> ModelRef:
    return ModelRef(name=result.model.name, version=result.model.version)


def prediction_rows(
    *,
    call_request_id: UUID,
    endpoint: str,
    tickets: Sequence[Ticket],
    triages: Sequence[TicketTriage],
    result: InferenceResult,
    redact: bool,
    latency_ms: float,
    answer_mode: str | None = None,
    kb_version: str | None = None,
) -> list[PredictionRow]:
    now = datetime.now(UTC)
    rows = []
    for ticket, triage in zip(tickets, triages, strict=True):
        text, digest, chars = text_fields(ticket.model_input(), redact)
        rows.append(
            PredictionRow(
                request_id=triage.request_id,
                call_request_id=call_request_id,
                created_at=now,
                endpoint=endpoint,
                text=text,
                text_sha256=digest,
                text_chars=chars,
                channel=ticket.channel,
                topic=triage.topic,
                topic_confidence=triage.topic_confidence,
                urgency=triage.model_urgency,  # the model's own (escalation rules are not judged as the model)
                urgency_confidence=triage.urgency_confidence,
                probabilities={"topic": triage.topic_probabilities, "urgency": triage.urgency_probabilities},
                low_confidence=triage.low_confidence,
                model_name=result.model.name,
                model_version=result.model.version,
                answer_mode=answer_mode,
                kb_version=kb_version,
                latency_ms=latency_ms,
                needs_review=triage.needs_review,
                out_of_scope=triage.out_of_scope,
                out_of_scope_score=triage.out_of_scope_score,
                escalated=triage.escalated,
                escalation_rule=triage.escalation_rule,
                served_urgency=triage.urgency,
                topic_tier=triage.topic_tier,
                urgency_tier=triage.urgency_tier,
                routing={
                    name: {"label": routed.label, "confidence": routed.confidence, "tier": routed.tier}
                    for name, routed in triage.routing.items()
                },
            )
        )
    return rows


async def record(state: ServingState, endpoint: str, rows: Sequence[PredictionRow], timings: Timings) -> None:
    """Count predictions and make them durable before the reply (see ``log_rows``)."""
    t0 = time.perf_counter()
    for row in rows:
        state.metrics.predictions.labels(endpoint=endpoint, topic=row.topic).inc()
        if row.low_confidence:
            state.metrics.low_confidence.labels(endpoint=endpoint).inc()
    await log_rows(state, rows)
    timings.since("log", t0)


async def log_rows(state: ServingState, rows: Sequence[LogRow], *, spool_only: bool = False) -> None:
    """Hand rows to the log writer so that an acknowledged row survives a crash.

    ``spool``: append + fsync to the local spool (grouped with concurrent requests), then enqueue.
    ``postgres``: enqueue and wait for the writer's group commit; rows still uncommitted after
    ``log_commit_timeout_s`` (database down) are spooled instead. ``off``: enqueue only.
    A spool that cannot be written means the row would not be durable: 503, not an acknowledgement.
    """
    writer, spool = state.log_writer, state.spool
    try:
        if spool is None:
            writer.enqueue(rows)
        elif state.settings.log_durability == "postgres" and not spool_only:
            writer.enqueue(rows)
            ids = [row.request_id for row in rows]
            if not await writer.wait_all_written(ids, state.settings.log_commit_timeout_s):
                late = [row for row in rows if writer.is_pending(row.request_id)]
                writer.attach_segment([row.request_id for row in late], await spool.append(_records(late)))
        else:
            writer.enqueue(rows, await spool.append(_records(rows)))
    except SpoolError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"cannot store the result durably: {exc}"
        ) from exc


def _records(rows: Sequence[LogRow]) -> list[dict[str, Any]]:
    return [to_record(row) for row in rows]
