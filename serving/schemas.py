"""Request and response bodies. Requests forbid unknown fields so a typo is a 422, not a silent drop."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ticket_assets.core.text import clean_text, model_text

# Control characters other than tab, newline and carriage return (C0, DEL, C1) and lone surrogates:
# PostgreSQL refuses NUL and invalid UTF-8, and none of them belong in a ticket. Rejected with a 422
# naming the field, so a bad row never reaches the prediction log.
_CONTROLS = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
_FORBIDDEN = re.compile(f"[{_CONTROLS}\ud800-\udfff]")
# The same rule for the OpenAPI schema (clients and schemathesis generate from it).
SAFE_PATTERN = f"^[^{_CONTROLS}]*$"
# The ticket body must also hold something besides whitespace and zero-width characters.
NON_BLANK_PATTERN = f"^[^{_CONTROLS}]*[^\\s\u200b-\u200d\u2060\ufeff{_CONTROLS}][^{_CONTROLS}]*$"


def _no_control_characters(value: str) -> str:
    found = _FORBIDDEN.search(value)
    if found:
        raise ValueError(
            f"control character U+{ord(found.group()):04X} at position {found.start()} is not allowed "
            "(tab, newline and carriage return are)"
        )
    return value


SafeStr = Annotated[str, AfterValidator(_no_control_characters)]


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer: 3 and 3.0, never "3" or true (pydantic's lax mode would coerce those).
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer, not a string or boolean")
    return value


# The before-validator hides the bounds from pydantic's schema generator: state them explicitly.
PassageCount = Annotated[
    int,
    BeforeValidator(_json_integer),
    Field(ge=1, le=20),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 20}),
]


def _safe(**kwargs: Any) -> Any:
    """A text field: control characters rejected, and the rule stated in the schema."""
    pattern = kwargs.pop("pattern", SAFE_PATTERN)
    return Field(json_schema_extra={"pattern": pattern}, **kwargs)


# The deployment's limits (max_text_chars, max_batch_size) come from settings: they are checked by the
# routes and written into the OpenAPI document at startup (serving.app.openapi_with_limits).

TICKET_EXAMPLE = {
    "title": "Cannot connect to VPN",
    "text": "Since this morning the VPN client says 'authentication failed' although my password works in Outlook.",
    "channel": "email",
    "requester": "j.doe@example.com",
}


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TICKET_EXAMPLE]})

    text: SafeStr = _safe(
        min_length=1,
        pattern=NON_BLANK_PATTERN,
        description="The ticket body (required, not blank; at most the server's max_text_chars).",
    )
    title: SafeStr | None = _safe(default=None, max_length=500, description="Subject line, if any.")
    channel: SafeStr | None = _safe(
        default=None, max_length=50, description="e.g. email, portal, chat, phone."
    )
    requester: SafeStr | None = _safe(
        default=None, max_length=320, description="Who raised it; never logged."
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not clean_text(value):
            raise ValueError("text must contain non-whitespace characters")
        return value

    def model_input(self) -> str:
        """The text the classifier sees, built exactly as training builds it (stg_tickets.sql)."""
        return self.cleaned_input

    @cached_property
    def cleaned_input(self) -> str:
        # Computed once per request: inference, escalation rules and the log row all need it.
        return model_text(self.title, self.text)


class SingleTriageRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", title="OneTicket", json_schema_extra={"examples": [{"ticket": TICKET_EXAMPLE}]}
    )

    ticket: Ticket = Field(description="One ticket.")

    @property
    def items(self) -> list[Ticket]:
        return [self.ticket]


class BatchTriageRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        title="TicketBatch",
        json_schema_extra={
            "examples": [
                {"tickets": [TICKET_EXAMPLE, {"text": "My laptop battery swells and the case bends."}]}
            ]
        },
    )

    tickets: list[Ticket] = Field(min_length=1, description="A batch (at most the server's max_batch_size).")

    @property
    def items(self) -> list[Ticket]:
        return list(self.tickets)


def _triage_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return "single" if isinstance(value, SingleTriageRequest) else "batch"
    if not isinstance(value, dict) or ("ticket" in value) == ("tickets" in value):
        return None  # both or neither: the custom error below
    return "single" if "ticket" in value else "batch"


# `ticket` xor `tickets`: two request shapes, which the schema states as a oneOf.
TriageRequest = Annotated[
    Annotated[SingleTriageRequest, Tag("single")] | Annotated[BatchTriageRequest, Tag("batch")],
    Discriminator(
        _triage_kind,
        custom_error_type="ticket_xor_tickets",
        custom_error_message="send exactly one of 'ticket' or 'tickets'",
    ),
]


class AnswerRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ticket": TICKET_EXAMPLE, "top_k": 3}]}
    )

    ticket: Ticket
    top_k: PassageCount | None = Field(
        default=None, description="Passages to retrieve (server default if unset)."
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "request_id": "0b7d3c52-6f0a-4e59-9d5e-3f1c2a7b9e10",
                    "true_topic": "network_vpn",
                    "true_urgency": "high",
                    "true_labels": {"assignment_group": "network"},
                    "draft_helpful": True,
                    "comment": "Right article, but the first step was already done.",
                }
            ]
        },
    )

    request_id: UUID = Field(description="The per-ticket request_id returned by /v1/triage or /v1/answer.")
    true_topic: SafeStr | None = _safe(default=None, max_length=100)
    new_topic: bool = Field(
        default=False,
        strict=True,
        description=(
            "Set when `true_topic` is a category the served model does not know yet (e.g. a new kind of "
            "request): it is then only checked to be a lower-case label (`[a-z0-9_]`), and it reaches the "
            "training data, which is how new categories enter the model. Without it an unknown label is a typo (422)."
        ),
    )
    true_urgency: SafeStr | None = _safe(default=None, max_length=50)
    true_labels: (
        dict[Annotated[str, Field(max_length=63)], Annotated[SafeStr, Field(max_length=100)]] | None
    ) = Field(
        default=None,
        description='True labels of the served model\'s routing targets, e.g. `{"assignment_group": "network"}`; '
        "an unknown target or label is a 422 naming it.",
    )
    draft_helpful: bool | None = Field(default=None, strict=True)
    comment: SafeStr | None = _safe(default=None, max_length=4000)

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackRequest:
        values = (
            self.true_topic,
            self.true_urgency,
            self.true_labels or None,
            self.draft_helpful,
            self.comment,
        )
        if all(v is None for v in values):
            raise ValueError(
                "give at least one of true_topic, true_urgency, true_labels, draft_helpful, comment"
            )
        return self


# Responses ---------------------------------------------------------------------------------------
class ModelRef(BaseModel):
    name: str
    version: str


class SimilarTicketOut(BaseModel):
    """A past ticket from the ticket index, most similar first."""

    ticket_id: str
    similarity: float = Field(description="Cosine similarity of the two tickets' embeddings (1 = same text).")
    topic: str | None
    urgency: str | None
    created: str | None = Field(description="When the past ticket was created (ISO 8601).")
    channel: str | None
    department: str | None
    status: str | None = Field(description="The past ticket's status, when the source records one.")
    resolution: str | None = Field(description="How it was resolved, when the source records it.")


Tier = Literal["auto", "suggest", "review"]
TIER_DESCRIPTION = (
    "Confidence tier of the {target} prediction, from per-class thresholds measured on held-out tickets: "
    "`auto` (held-out precision at least the auto target, default 0.95: act without a person), `suggest` "
    "(at least the suggest target, default 0.80: an agent confirms), `review` (a person decides)."
)


class RoutingPrediction(BaseModel):
    """One routing target's prediction (assignment group, queue, service...)."""

    label: str
    label_name: str = Field(description="The label as people read it (display name).")
    confidence: float
    probabilities: dict[str, float]
    tier: Tier = Field(description=TIER_DESCRIPTION.format(target="routing"))
    low_confidence: bool = Field(description="Confidence below the server's threshold.")


TRIAGE_RESULT_EXAMPLE = {
    "request_id": "0b7d3c52-6f0a-4e59-9d5e-3f1c2a7b9e10",
    "topic": "security_phishing",
    "topic_name": "Security / phishing",
    "topic_confidence": 0.93,
    "topic_probabilities": {"security_phishing": 0.93, "storage": 0.07},
    "urgency": "critical",
    "urgency_confidence": 0.48,
    "urgency_probabilities": {"low": 0.05, "medium": 0.48, "high": 0.35, "critical": 0.12},
    "model_urgency": "medium",
    "escalated": True,
    "escalation_rule": "ransomware",
    "out_of_scope": False,
    "out_of_scope_score": 0.62,
    "reasons": [
        "term: encrypted",
        "term: files",
        "nearest: syn-11-base-812",
        "nearest: syn-11-base-1977",
        "escalation: ransomware",
    ],
    "low_confidence": False,
    "topic_tier": "auto",
    "urgency_tier": "review",
    "urgency_low_confidence": False,
    "routing": {
        "assignment_group": {
            "label": "security_ops",
            "label_name": "Security operations",
            "confidence": 0.91,
            "probabilities": {"security_ops": 0.91, "service_desk": 0.09},
            "tier": "suggest",
            "low_confidence": False,
        }
    },
    "needs_review": True,
    "similar": None,
    "duplicate_of": None,
}


class TicketTriage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [TRIAGE_RESULT_EXAMPLE]})

    request_id: UUID = Field(description="Identifies this ticket's prediction; send it back with feedback.")
    topic: str = Field(description="The topic's key (machines, feedback, routing rules).")
    topic_name: str = Field(
        description="The topic as people read it: the shipped display name, else the training data's "
        "spelling, else the key in words (`TICKETOPS_LABEL_NAMES_PATH`)."
    )
    topic_confidence: float
    topic_probabilities: dict[str, float]
    urgency: str | None = Field(
        description="The urgency to act on: the model's, raised by an escalation rule."
    )
    urgency_confidence: float | None = Field(description="The model's confidence in `model_urgency`.")
    urgency_probabilities: dict[str, float] | None
    model_urgency: str | None = Field(default=None, description="The urgency the model predicted.")
    escalated: bool = Field(default=False, description="An escalation rule raised the urgency.")
    escalation_rule: str | None = Field(
        default=None,
        description="The escalation rule that matched (e.g. `ransomware`), even when it did not raise.",
    )
    out_of_scope: bool | None = Field(
        default=None,
        description="Unlike the tickets the model was trained on: review it (null: the model has no detector).",
    )
    out_of_scope_score: float | None = Field(
        default=None,
        description="How unlike the training tickets (meaning and wording), over its calibrated threshold: > 1 is out of scope.",
    )
    reasons: list[str] = Field(
        default_factory=list,
        description="Why: `term: ...` (words behind the topic), `nearest: <ticket id>` (the most similar "
        "training tickets, most similar first), `escalation: <rule>`, `out_of_scope`.",
    )
    low_confidence: bool = Field(
        description="Topic confidence below the server's threshold: route to a human."
    )
    topic_tier: Tier = Field(description=TIER_DESCRIPTION.format(target="topic"))
    urgency_tier: Tier | None = Field(
        default=None,
        description=TIER_DESCRIPTION.format(target="urgency") + " Null without an urgency model.",
    )
    urgency_low_confidence: bool | None = Field(
        default=None,
        description="Urgency confidence below the server's threshold (null without an urgency model).",
    )
    routing: dict[str, RoutingPrediction] = Field(
        default_factory=dict,
        description="The model's routing targets besides topic and urgency, by name (e.g. `assignment_group`).",
    )
    needs_review: bool = Field(
        default=False,
        description="A person must decide: some target's tier (topic, urgency, routing) is `review`. Act "
        "without a person only when every tier is `auto`.",
    )
    similar: list[SimilarTicketOut] | None = Field(
        default=None,
        description="Most similar past tickets (null when the ticket index is off or not built).",
    )
    duplicate_of: SimilarTicketOut | None = Field(
        default=None,
        description="A recent open ticket this one nearly duplicates (similarity above the calibrated threshold).",
    )


class TriageResponse(BaseModel):
    request_id: UUID = Field(description="Identifies this call (also in the X-Request-ID header).")
    model: ModelRef
    results: list[TicketTriage] = Field(description="One entry per ticket, in request order.")


class PassageOut(BaseModel):
    article_id: str
    title: str
    heading: str | None = None
    text: str
    score: float


class DraftOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "text": "Hello,\n\nThank you for your request. We have logged it under the category: "
                    "Hardware (urgency: low).\n\nNo article in our knowledge base covers this request. "
                    "A Service Desk agent will follow up with you.",
                    "mode": "no_answer",
                    "citations": [],
                    "model": None,
                    "fallback_reason": "no_relevant_article",
                }
            ]
        }
    )

    text: str
    mode: Literal["llm", "extractive", "no_answer"] = Field(
        description="`no_answer`: no knowledge-base passage is relevant enough; the draft says an agent will follow up."
    )
    citations: list[str]
    model: str | None = None
    fallback_reason: str | None = None


class AnswerResponse(BaseModel):
    request_id: UUID
    model: ModelRef
    triage: TicketTriage
    kb_version: str | None
    passages: list[PassageOut]
    draft: DraftOut


class FeedbackResponse(BaseModel):
    request_id: UUID
    created_at: datetime
    updated_at: datetime
    updated: bool = Field(description="True when this replaced earlier feedback for the same request.")


class FeedbackQueued(BaseModel):
    request_id: UUID
    status: Literal["queued"]
    detail: str = Field(description="Why the feedback was queued instead of stored at once.")


class ModelResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    aliases: list[str]
    run_id: str | None
    created_at: str | None = Field(description="When the version was registered (ISO 8601).")
    data_version: dict[str, str] = Field(
        description="The training data's version (row count, content hash, dbt checksum...)."
    )
    metrics: dict[str, float | None] = Field(description="Key holdout metrics recorded at registration.")
    tags: dict[str, str] = Field(description="Every tag on the registered version.")
    embedding_model: str | None
    topics: list[str]
    topic_names: dict[str, str] = Field(default_factory=dict, description="Display name of each topic key.")
    urgencies: list[str]
    routing: dict[str, list[str]] = Field(
        default_factory=dict, description="Routing targets besides topic and urgency, with their labels."
    )
    routing_names: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Display name of each routing label, by target."
    )
    loaded_at: datetime
    kb_version: str | None


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool = Field(description="Can serve triage: model and knowledge base loaded.")
    degraded: bool = Field(
        description="The database is unreachable: predictions and feedback wait in the spool."
    )
    checks: dict[str, bool]
    model_version: str | None
    kb_version: str | None
    errors: dict[str, str] = Field(default_factory=dict)
