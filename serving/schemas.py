"""Request and response bodies. Requests forbid unknown fields so a typo is a 422, not a silent drop."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Mirrors dbt's clean_text macro: drop zero-width characters, collapse control/space runs, trim.
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_SPACE_RUN = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")


def clean_text(value: str | None) -> str:
    return _SPACE_RUN.sub(" ", _ZERO_WIDTH.sub("", value or "")).strip()


def model_text(title: str | None, body: str) -> str:
    """``concat_ws('. ', title, nullif(body, ''))`` over cleaned parts, as in ``stg_tickets``."""
    return ". ".join(part for part in (clean_text(title), clean_text(body)) if part)


# Hard caps for the schema; the deployment's own (smaller) limits come from settings at run time.
TEXT_HARD_CAP = 100_000

TICKET_EXAMPLE = {
    "title": "Cannot connect to VPN",
    "text": "Since this morning the VPN client says 'authentication failed' although my password works in Outlook.",
    "channel": "email",
    "requester": "j.doe@example.com",
}


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TICKET_EXAMPLE]})

    text: str = Field(
        min_length=1, max_length=TEXT_HARD_CAP, description="The ticket body (required, not blank)."
    )
    title: str | None = Field(default=None, max_length=500, description="Subject line, if any.")
    channel: str | None = Field(default=None, max_length=50, description="e.g. email, portal, chat, phone.")
    requester: str | None = Field(default=None, max_length=320, description="Who raised it; never logged.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not clean_text(value):
            raise ValueError("text must contain non-whitespace characters")
        return value

    def model_input(self) -> str:
        """The text the classifier sees, built exactly as training builds it (stg_tickets.sql)."""
        return model_text(self.title, self.text)


class TriageRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"ticket": TICKET_EXAMPLE},
                {"tickets": [TICKET_EXAMPLE, {"text": "My laptop battery swells and the case bends."}]},
            ]
        },
    )

    ticket: Ticket | None = Field(default=None, description="One ticket ...")
    tickets: list[Ticket] | None = Field(
        default=None, min_length=1, description="... or a batch (at most the server's max batch size)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> TriageRequest:
        if (self.ticket is None) == (self.tickets is None):
            raise ValueError("send exactly one of 'ticket' or 'tickets'")
        return self

    @property
    def items(self) -> list[Ticket]:
        return [self.ticket] if self.ticket is not None else list(self.tickets or [])


class AnswerRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ticket": TICKET_EXAMPLE, "top_k": 3}]}
    )

    ticket: Ticket
    top_k: int | None = Field(
        default=None, ge=1, le=20, description="Passages to retrieve (server default if unset)."
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
                    "draft_helpful": True,
                    "comment": "Right article, but the first step was already done.",
                }
            ]
        },
    )

    request_id: UUID = Field(description="The per-ticket request_id returned by /v1/triage or /v1/answer.")
    true_topic: str | None = Field(default=None, max_length=100)
    new_topic: bool = Field(
        default=False,
        description=(
            "Set when `true_topic` is a category the served model does not know yet (e.g. a new kind of "
            "request): it is then only checked to be a lower-case label (`[a-z0-9_]`), and it reaches the "
            "training data, which is how new categories enter the model. Without it an unknown label is a typo (422)."
        ),
    )
    true_urgency: str | None = Field(default=None, max_length=50)
    draft_helpful: bool | None = None
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackRequest:
        if all(v is None for v in (self.true_topic, self.true_urgency, self.draft_helpful, self.comment)):
            raise ValueError("give at least one of true_topic, true_urgency, draft_helpful, comment")
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


class TicketTriage(BaseModel):
    request_id: UUID = Field(description="Identifies this ticket's prediction; send it back with feedback.")
    topic: str
    topic_confidence: float
    topic_probabilities: dict[str, float]
    urgency: str | None
    urgency_confidence: float | None
    urgency_probabilities: dict[str, float] | None
    low_confidence: bool = Field(
        description="Topic confidence below the server's threshold: route to a human."
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


class Passage(BaseModel):
    article_id: str
    title: str
    heading: str | None = None
    text: str
    score: float


class DraftOut(BaseModel):
    text: str
    mode: Literal["llm", "extractive"]
    citations: list[str]
    model: str | None = None
    fallback_reason: str | None = None


class AnswerResponse(BaseModel):
    request_id: UUID
    model: ModelRef
    triage: TicketTriage
    kb_version: str | None
    passages: list[Passage]
    draft: DraftOut


class FeedbackResponse(BaseModel):
    request_id: UUID
    created_at: datetime
    updated_at: datetime
    updated: bool = Field(description="True when this replaced earlier feedback for the same request.")


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
    urgencies: list[str]
    loaded_at: datetime
    kb_version: str | None


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]]


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, bool]
    model_version: str | None
    kb_version: str | None
    errors: dict[str, str] = Field(default_factory=dict)
