"""GET /v1/model: which model version (and KB index) is being served."""

from __future__ import annotations

from fastapi import APIRouter, status

from serving.deps import ModelDep, StateDep
from serving.errors import error_responses
from serving.schemas import ModelResponse

router = APIRouter(prefix="/v1", tags=["model"])


@router.get(
    "/model",
    response_model=ModelResponse,
    summary="The model version being served",
    description="Registry name, version, aliases, training run, data-version tags, evaluation metrics, labels.",
    responses=error_responses(status.HTTP_401_UNAUTHORIZED, status.HTTP_503_SERVICE_UNAVAILABLE),
)
async def current_model(model: ModelDep, state: StateDep) -> ModelResponse:
    described = model.describe(state.label_names)
    return ModelResponse(**described, kb_version=state.kb.version)
