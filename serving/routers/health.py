"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers call these)."""

from __future__ import annotations

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
        async with state.db.connection(timeout=2) as conn:
            await conn.execute("select 1")
        return True, None
    except Exception as exc:  # any failure means "not ready"; the reason goes in the body
        return False, type(exc).__name__


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
    summary="Readiness: model and knowledge base loaded, database reachable",
    responses={503: {"model": ReadyResponse, "description": "Not ready: `checks` and `errors` say why."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    db_ok, db_error = await _database_ok(state)
    kb_ok, kb_error = _kb_ok(state)
    checks = {"model": state.models.current is not None, "kb": kb_ok, "database": db_ok}
    errors = {
        name: reason
        for name, reason in (("model", state.models.last_error), ("kb", kb_error), ("database", db_error))
        if reason
    }
    ready = all(checks.values())
    body = ReadyResponse(
        ready=ready,
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
