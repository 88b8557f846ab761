"""FastAPI dependencies: the serving state built by the app's lifespan, and API-key auth.

All are ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in its thread
pool, and three thread hand-offs per request were a fifth of the event loop's time under load
(BENCHMARKS.md, "API hot path"). None of them blocks.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from psycopg_pool import AsyncConnectionPool

from serving.inference import InferenceEngine
from serving.metrics import ApiMetrics
from serving.model_store import KnowledgeBaseStore, ModelStore, ServingModel
from serving.prediction_log import PredictionLogWriter
from serving.spool import Spool
from ticket_assets.core.labels import LabelNames
from ticket_assets.settings import Settings


@dataclass
class ServingState:
    settings: Settings
    metrics: ApiMetrics
    models: ModelStore
    kb: KnowledgeBaseStore
    engine: InferenceEngine
    log_writer: PredictionLogWriter
    db: AsyncConnectionPool
    spool: Spool | None = None  # None when durability is off
    llm_client: httpx.AsyncClient | None = None  # shared so LLM calls reuse connections
    embedder_id: str = ""  # queries are embedded with this; the KB index must use the same
    tickets: Any | None = None  # serving.memory.TicketIndexStore: similar past tickets, duplicates
    escalation: Any | None = None  # ticket_assets.ml.escalation.EscalationPolicy; None: no rules
    label_names: LabelNames = field(default_factory=LabelNames)  # what people read for label keys


async def get_state(request: Request) -> ServingState:
    state: ServingState | None = getattr(request.app.state, "serving", None)
    if state is None:  # only if a request races the lifespan startup
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service is starting")
    return state


StateDep = Annotated[ServingState, Depends(get_state)]


async def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


async def get_model(state: StateDep) -> ServingModel:
    model = state.models.current
    if model is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model version is loaded yet")
    return model


async def get_kb(state: StateDep) -> Any:
    kb = state.kb.current
    if kb is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the knowledge-base index is not loaded yet")
    return kb


async def get_model_store(state: StateDep) -> ModelStore:
    return state.models


async def get_log_writer(state: StateDep) -> PredictionLogWriter:
    return state.log_writer


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ModelDep = Annotated[ServingModel, Depends(get_model)]  # 503 while no version is loaded
ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]
KnowledgeBaseDep = Annotated[Any, Depends(get_kb)]
LogWriterDep = Annotated[PredictionLogWriter, Depends(get_log_writer)]

# Security() (not Depends) so OpenAPI documents the scheme and the "Authorize" button works.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of the server's API keys.")


async def require_api_key(state: StateDep, api_key: Annotated[str | None, Security(api_key_header)]) -> None:
    """401 unless the header matches a configured key; no keys configured -> auth disabled."""
    keys = state.settings.api_keys
    if not keys:
        return
    # Compare against every key in constant time so timing does not reveal a prefix match.
    supplied = (api_key or "").encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied, key.get_secret_value().encode())
    if not api_key or not matched:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid API key (header X-API-Key)",
            headers={"WWW-Authenticate": "ApiKey"},
        )
