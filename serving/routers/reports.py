"""GET /reports/{path}: drift reports (Evidently HTML) written by the drift_report asset.

They show production ticket statistics, so they sit behind the API key like every /v1 route.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from serving.deps import SettingsDep
from serving.errors import error_responses

router = APIRouter(tags=["reports"])


@router.get(
    "/reports/{path:path}",
    summary="A drift report file (HTML) from the data directory's reports folder",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "The report file."},
        **error_responses(status.HTTP_401_UNAUTHORIZED, status.HTTP_404_NOT_FOUND),
    },
)
async def report(path: str, settings: SettingsDep) -> FileResponse:
    root = settings.reports_dir.resolve()
    target = (root / path).resolve()
    # resolve() + is_relative_to: "../" or symlinks cannot leave the reports folder.
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report {path!r}")
    return FileResponse(target)
