"""GET /console: the agent console, plain HTML and JavaScript shipped in the package (no build step).

The page holds no data: it asks for an API key (kept in the tab's sessionStorage) and sends it as
`X-API-Key` on every call, so everything it shows sits behind the same key as the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
_FILES = {"console.js": "text/javascript", "console.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/console")
async def console_page() -> FileResponse:
    return FileResponse(
        CONSOLE_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"}
    )


@router.get("/console/{name}")
async def console_asset(name: str) -> FileResponse:
    if name not in _FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no console file {name!r}")
    return FileResponse(CONSOLE_DIR / name, media_type=_FILES[name])
