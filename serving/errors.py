"""Documented error responses, shared so every route describes the errors it can return."""

from __future__ import annotations

from typing import Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class ErrorMessage(BaseModel):
    """Every error but a validation error: one sentence saying what is wrong."""

    detail: str


class ValidationErrorItem(BaseModel):
    type: str = Field(description="Machine-readable error kind (missing, string_too_long, enum...).")
    loc: list[str | int] = Field(description="Where in the request: e.g. body, ticket, text.")
    msg: str = Field(description="What is wrong, for people.")
    ctx: dict[str, Any] | None = Field(default=None, description="The rule's parameters, when it has any.")


class ValidationErrorResponse(BaseModel):
    """A 422: one entry per invalid field (the rejected input itself is never echoed)."""

    detail: list[ValidationErrorItem]


_DESCRIPTIONS: dict[int, str] = {
    status.HTTP_400_BAD_REQUEST: "Body that cannot be parsed at all (e.g. not UTF-8).",
    status.HTTP_401_UNAUTHORIZED: "Missing or invalid `X-API-Key` header.",
    status.HTTP_404_NOT_FOUND: "No such item (prediction `request_id`, report file).",
    status.HTTP_413_CONTENT_TOO_LARGE: "Request body larger than the server's limit.",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "Invalid body: each error's `loc` names the offending field.",
    status.HTTP_503_SERVICE_UNAVAILABLE: "Model, knowledge base or database not available yet.",
}

# What the server really answers (tests/test_api_docs.py provokes each one and compares).
ERROR_EXAMPLES: dict[int, dict[str, dict[str, Any]]] = {
    status.HTTP_400_BAD_REQUEST: {
        "not_utf8": {
            "summary": "Body is not UTF-8",
            "value": {"detail": "There was an error parsing the body"},
        }
    },
    status.HTTP_401_UNAUTHORIZED: {
        "no_key": {
            "summary": "No or wrong X-API-Key",
            "value": {"detail": "missing or invalid API key (header X-API-Key)"},
        }
    },
    status.HTTP_404_NOT_FOUND: {
        "unknown_request_id": {
            "summary": "No prediction with this request_id",
            "value": {"detail": "no prediction with request_id 0b7d3c52-6f0a-4e59-9d5e-3f1c2a7b9e10"},
        },
        "unknown_report": {
            "summary": "No such report file",
            "value": {"detail": "no report 'drift/2026-01-01.html'"},
        },
    },
    status.HTTP_422_UNPROCESSABLE_CONTENT: {
        "missing_text": {
            "summary": "A required field is missing",
            "value": {
                "detail": [{"type": "missing", "loc": ["body", "ticket", "text"], "msg": "Field required"}]
            },
        },
        "text_too_long": {
            "summary": "Text over the server's max_text_chars",
            "value": {
                "detail": [
                    {
                        "type": "string_too_long",
                        "loc": ["body", "ticket", "text"],
                        "msg": "String should have at most 8000 characters (this server's max_text_chars)",
                        "ctx": {"max_length": 8000},
                    }
                ]
            },
        },
    },
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "no_model": {
            "summary": "No model version loaded yet",
            "value": {"detail": "no model version is loaded yet"},
        }
    },
}


# The body limit answers before any route runs, in plain text.
_TOO_LARGE = {
    "description": _DESCRIPTIONS[status.HTTP_413_CONTENT_TOO_LARGE],
    "content": {
        "text/plain": {
            "schema": {"type": "string"},
            "examples": {
                "too_large": {"summary": "Body over the server's limit", "value": "Content Too Large"}
            },
        }
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: _TOO_LARGE
        if code == status.HTTP_413_CONTENT_TOO_LARGE
        else {
            "model": ValidationErrorResponse
            if code == status.HTTP_422_UNPROCESSABLE_CONTENT
            else ErrorMessage,
            "description": _DESCRIPTIONS[code],
            "content": {"application/json": {"examples": ERROR_EXAMPLES[code]}},
        }
        for code in codes
    }


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Like FastAPI's default 422 body, but without echoing the rejected input (ticket text)."""
    assert isinstance(exc, RequestValidationError)
    detail = [_public_error(error) for error in exc.errors()]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": jsonable_encoder(detail)}
    )


# Tags of the triage request's oneOf (serving.schemas.TriageRequest): pydantic puts the matched
# branch into `loc`; clients should see the path in their body, e.g. body.ticket.channel.
_UNION_TAGS = {"single", "batch"}


def _public_error(error: dict[str, Any]) -> dict[str, Any]:
    out = {key: error[key] for key in ("type", "loc", "msg") if key in error}
    loc = list(out.get("loc", ()))
    if len(loc) > 1 and loc[0] == "body" and loc[1] in _UNION_TAGS:
        out["loc"] = (loc[0], *loc[2:])
    if error.get("ctx"):
        # ctx may hold the raised exception object: keep it readable and JSON-safe.
        out["ctx"] = {
            k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in error["ctx"].items()
        }
    return out
