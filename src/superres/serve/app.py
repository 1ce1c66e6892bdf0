"""The HTTP API and web page (FastAPI). ``create_app(settings)`` builds one; ``superres serve`` runs it
under uvicorn.

Endpoints: ``POST /v1/upscale`` (image in, image out), ``/v1/jobs`` (submit, status with progress,
result, cancel) for images too large to wait for, ``GET /v1/models``, ``/healthz`` (the process
answers), ``/readyz`` (models loaded and capacity left), and the web page at ``/``. Every error is
``{"error": code, "detail": sentence}`` with the status that names the problem: 413 too large, 415 not an
image or not multipart, 422 bad options or a broken image, 429 queue full, 503 not ready or timed out.

This module assembles the app: the shared :class:`~superres.serve.context.ServerContext`, its lifespan
(job store, scheduler, the private work folder of :mod:`superres.serve.workdir`), error rendering, headers, and the routers of
:mod:`superres.serve.routers`, one module per group of endpoints.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Iterator, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute

from .._version import __version__
from ..inference.devices import share_memory_among
from . import ab
from .context import ServerContext
from .errors import ApiError
from .routers import health, jobs, page, upscale, video, zssr
from .service import JobStore, ModelPool, Scheduler
from .settings import ServeSettings
from .workdir import WorkDir

__all__ = ["create_app"]

log = logging.getLogger("superres.serve")


def _slug(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def create_app(settings: ServeSettings, pool: Optional[ModelPool] = None) -> FastAPI:
    """Build the application; models start loading when it starts (lifespan), not here."""
    pool = pool or ModelPool(
        ab.served_models(settings.models, settings.ab),
        device=settings.device,
        precision=settings.precision,
        tile=settings.tile,
        backend=settings.backend,
    )
    ctx = ServerContext(settings, pool)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import warnings

        from PIL import Image

        # Our own pixel limits decide (413); Pillow's warning for large headers would only add log noise.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        # A private folder inside --tmp-dir (or the system temp): the server writes and deletes only there.
        work = await asyncio.to_thread(WorkDir.create, settings.tmp_dir)
        tmp = ctx.tmp = work.path
        ctx.jobs = JobStore(tmp, settings.job_ttl, settings.max_jobs)
        ctx.sched = Scheduler(settings.concurrent_jobs, settings.queue_length)
        share_memory_among(settings.concurrent_jobs)  # banded whole-image passes split free memory between them
        pool.start()
        cleaner = asyncio.create_task(_cleanup_loop(ctx.jobs, settings.job_ttl))
        try:
            yield
        finally:
            cleaner.cancel()
            ctx.jobs.cancel_all()
            await asyncio.to_thread(ctx.sched.shutdown)
            work.remove()

    app = FastAPI(
        title="superres",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description='Image super-resolution over HTTP. Errors are {"error", "detail"} JSON.',
    )
    app.state.settings, app.state.pool, app.state.ctx = settings, pool, ctx
    routers = [group.build(ctx) for group in (page, health, upscale, jobs, zssr, video)]
    _error_handlers(app)
    # A plain ASGI middleware, not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware wraps
    # ``receive`` so that ``request.is_disconnected()`` never sees the client leave, and an abandoned
    # request then kept its worker until the whole image was done.
    app.add_middleware(_NoSniff)

    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    ab.register(app, settings.ab, pool)  # GET /v1/ab answers {"enabled": false} without --ab
    if settings.study is not None:
        from .study_routes import register as register_study

        register_study(app, settings.study)
    return app


def _flat_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, including those of included routers (FastAPI 0.165 keeps an included router as one
    entry holding the original; older versions copy its routes into the app's list)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat_routes(inner.routes)
        else:
            yield route


def _error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": code, "detail": sentence}`` with its status; a 405 lists in ``Allow``
    every method of the path (not only those of the first route that matched)."""

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(e, "headers", None) or {})
        if e.status_code == 405:  # every method of the path, not only those of the first route that matched
            from starlette.routing import Match

            allowed: set[str] = set()
            for route in _flat_routes(app.router.routes):
                if route.matches(request.scope)[0] != Match.NONE:
                    allowed |= set(getattr(route, "methods", None) or ())
            if allowed:
                headers["Allow"] = ", ".join(sorted(allowed - {"HEAD"}))
        return JSONResponse(
            {"error": _slug(e.status_code), "detail": str(e.detail)},
            status_code=e.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_r: Request, e: RequestValidationError) -> JSONResponse:
        msgs = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()]
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(msgs)}, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def _gone(_r: Request, _e: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody is listening; the upload was already removed

    @app.exception_handler(Exception)
    async def _internal(_r: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"error": "internal", "detail": "internal server error"}, status_code=500)


class _NoSniff:
    """Adds ``X-Content-Type-Options: nosniff`` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


async def _cleanup_loop(store: JobStore, ttl: float) -> None:
    """Delete expired job results even when nobody polls."""
    interval = max(0.2, min(30.0, ttl / 4))
    while True:
        await asyncio.sleep(interval)
        try:
            n = store.expire()
            if n:
                log.info("expired %d job(s)", n)
        except Exception:
            log.exception("job cleanup failed")
