"""The web page (``/``) and its static files (``/static``): offline, no external resources."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ..context import ServerContext

STATIC = Path(__file__).resolve().parents[1] / "static"
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
    "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def html_page(name: str) -> FileResponse:
    """One of the static HTML pages, under the policy that lets it load nothing but this server."""
    return FileResponse(
        STATIC / name,
        media_type="text/html",
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


def build(_ctx: ServerContext) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return html_page("index.html")

    return router
