"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers call these)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from serving.deps import ServingState, StateDep
from serving.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process serves HTTP")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


async def _database_ok(state: ServingState) -> tuple[bool, str | None]:
    try:
        # Short: a probe must answer within its own timeout even when the database hangs.
        async with asyncio.timeout(1.0), state.db.connection(timeout=1.0) as conn:
            await conn.execute("select 1")
        return True, None
    except Exception as exc:  # any failure means "degraded"; the reason goes in the body
        return False, type(exc).__name__ or "unreachable"


def _kb_ok(state: ServingState) -> tuple[bool, str | None]:
    kb = state.kb.current
    if kb is None:
        return False, state.kb.last_error or "not loaded"
    if kb.model_id != state.embedder_id:
        # Scores between vectors of two different models are meaningless: retrieval would be noise.
        return False, f"index embedded with {kb.model_id!r}, queries with {state.embedder_id!r}"
    return True, state.kb.last_error


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: can serve triage (model and knowledge base loaded)",
    description=(
        "200 while the model and the knowledge base are loaded. The database is reported apart "
        "(`checks.database`, `degraded`, metric `ticketops_database_up`): triage and answers do not need "
        "it, predictions are spooled and written once it is back, so a database blip must not take "
        "replicas out of rotation."
    ),
    responses={503: {"model": ReadyResponse, "description": "Not ready: `checks` and `errors` say why."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    db_ok, db_error = await _database_ok(state)
    state.metrics.database_up.set(1 if db_ok else 0)
    kb_ok, kb_error = _kb_ok(state)
    checks = {"model": state.models.current is not None, "kb": kb_ok, "database": db_ok}
    errors = {
        name: reason
        for name, reason in (("model", state.models.last_error), ("kb", kb_error), ("database", db_error))
        if reason
    }
    ready = checks["model"] and checks["kb"]
    body = ReadyResponse(
        ready=ready,
        degraded=not db_ok,
        checks=checks,
        model_version=None if state.models.current is None else state.models.current.version,
        kb_version=state.kb.version,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format."}},
)
async def metrics(state: StateDep) -> Response:
    body, content_type = state.metrics.render()
    return Response(content=body, media_type=content_type)
