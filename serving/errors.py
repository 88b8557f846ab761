"""Documented error responses, shared so every route describes the errors it can return."""

from __future__ import annotations

from typing import Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from serving.schemas import ErrorResponse

_DESCRIPTIONS: dict[int, str] = {
    status.HTTP_400_BAD_REQUEST: "Body that cannot be parsed at all (e.g. not UTF-8).",
    status.HTTP_401_UNAUTHORIZED: "Missing or invalid `X-API-Key` header.",
    status.HTTP_404_NOT_FOUND: "No such item (prediction `request_id`, report file).",
    status.HTTP_413_CONTENT_TOO_LARGE: "Request body larger than the server's limit.",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "Invalid body: each error's `loc` names the offending field.",
    status.HTTP_503_SERVICE_UNAVAILABLE: "Model, knowledge base or database not available yet.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}


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
