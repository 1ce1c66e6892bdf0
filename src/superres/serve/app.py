"""The HTTP API and web page (FastAPI). ``create_app(settings)`` builds one; ``superres serve`` runs it
under uvicorn.

Endpoints: ``POST /v1/upscale`` (image in, image out), ``/v1/jobs`` (submit, status with progress,
result, cancel) for images too large to wait for, ``GET /v1/models``, ``/healthz`` (the process
answers), ``/readyz`` (models loaded and capacity left), and the web page at ``/``. Every error is
``{"error": code, "detail": sentence}`` with the status that names the problem: 413 too large, 415 not an
image or not multipart, 422 bad options or a broken image, 429 queue full, 503 not ready or timed out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from .errors import ApiError, ErrorBody
from .pipeline import (
    CONTENT_TYPES,
    MAX_OUTSCALE,
    MAX_SIDE,
    Outcome,
    WorkControl,
    parse_params,
    probe,
    process,
)
from .service import Job, JobStore, ModelPool, Scheduler
from .settings import ServeSettings
from .upload import receive_upload

__all__ = ["create_app"]

log = logging.getLogger("superres.serve")
STATIC = Path(__file__).parent / "static"
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; script-src 'self'; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# ---- response models (documented in the OpenAPI spec) -------------------------------------------------


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    models: list[str]
    active: int
    capacity: int


class ModelInfo(BaseModel):
    name: str
    title: str
    scale: Optional[int]
    arch: Optional[str]
    purpose: str
    licence: str
    description: str
    default: bool
    loaded: bool


class ModelList(BaseModel):
    default: str
    models: list[ModelInfo]
    limits: dict[str, float]


class JobInfo(BaseModel):
    id: str
    status: str
    progress: float
    model: str
    filename: str
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    expires: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    content_type: Optional[str] = None
    result_url: Optional[str] = None
    error: Optional[ErrorBody] = None
    quality: Optional[dict[str, Any]] = None  # report=true: NIQE vs bicubic, uncertainty mean/p99, flagged
    uncertainty_url: Optional[str] = None  # report=true: the uncertainty heatmap PNG (output size)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        404: "Not found",
        409: "Not finished",
        413: "Too large",
        415: "Not an image / not multipart",
        422: "Invalid options or broken image",
        429: "Queue full",
        503: "Not ready, overloaded or timed out",
    }
    return {c: {"model": ErrorBody, "description": words.get(c, "Error")} for c in codes}


def _upload_body(models: list[str]) -> dict[str, Any]:
    """The multipart request body, for the spec (the body is parsed by ``receive_upload``, not FastAPI).
    An empty form field counts as absent (``parse_params``; HTML forms send them), so the spec allows it."""
    body = _upload_fields(models)
    props = body["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    for key, prop in props.items():
        if key != "file":
            props[key] = {"anyOf": [prop, {"type": "string", "maxLength": 0}],
                          **({"description": prop["description"]} if "description" in prop else {})}
    return body


def _upload_fields(models: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": "The image (PNG, JPEG, WebP, TIFF, BMP...).",
                            },
                            "model": {
                                "type": "string",
                                "enum": models,
                                "description": "Default: the first served model.",
                            },
                            "outscale": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": MAX_OUTSCALE,
                                "description": "Final scale (default: the model's).",
                            },
                            "scale": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": MAX_OUTSCALE,
                                "description": "Alias of outscale.",
                            },
                            "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
                            "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
                            "format": {"type": "string", "enum": ["auto", *CONTENT_TYPES], "default": "png"},
                            "quality": {"type": "integer", "minimum": 1, "maximum": 100, "default": 95},
                            "self_ensemble": {"type": "boolean", "default": False,
                                              "description": "Average the 8 flips/rotations (~8x slower)."},
                            "report": {"type": "boolean", "default": False,
                                       "description": "Quality check: x8 self-ensemble (~8x slower), NIQE "
                                                      "gate, uncertainty heatmap."},
                            "fallback": {"type": "string", "enum": ["bicubic"],
                                         "description": "With report: send bicubic for a flagged image."},
                        },
                    }
                }
            },
        }
    }


_IMAGE_RESPONSE = {
    "content": {
        ct: {"schema": {"type": "string", "format": "binary"}}
        for ct in sorted({v[1] for v in CONTENT_TYPES.values()})
    },
    "description": "The upscaled image.",
}


def _slug(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


# ---- the app ----------------------------------------------------------------------------------------


def create_app(settings: ServeSettings, pool: Optional[ModelPool] = None) -> FastAPI:
    """Build the application; models start loading when it starts (lifespan), not here."""
    pool = pool or ModelPool(
        settings.models, device=settings.device, precision=settings.precision, tile=settings.tile
    )
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import warnings

        from PIL import Image

        # Our own pixel limits decide (413); Pillow's warning for large headers would only add log noise.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        if settings.tmp_dir is not None:
            tmp = Path(settings.tmp_dir)
            tmp.mkdir(parents=True, exist_ok=True)
            owned = False
        else:
            tmp, owned = Path(tempfile.mkdtemp(prefix="superres-serve-")), True
        state["tmp"] = tmp
        state["jobs"] = JobStore(tmp, settings.job_ttl, settings.max_jobs)
        state["sched"] = Scheduler(settings.concurrent_jobs, settings.queue_length)
        pool.start()
        cleaner = asyncio.create_task(_cleanup_loop(state["jobs"], settings.job_ttl))
        try:
            yield
        finally:
            cleaner.cancel()
            state["jobs"].cancel_all()
            await asyncio.to_thread(state["sched"].shutdown)
            if owned:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                for f in list(tmp.glob("upload-*.part")) + list(tmp.glob("job-*")):
                    f.unlink(missing_ok=True)

    app = FastAPI(
        title="superres",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description='Image super-resolution over HTTP. Errors are {"error", "detail"} JSON.',
    )
    app.state.settings, app.state.pool, app.state.runtime = settings, pool, state

    # ---- error rendering ----
    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(e, "headers", None) or {})
        if e.status_code == 405:  # every method of the path, not only those of the first route that matched
            from starlette.routing import Match

            allowed: set[str] = set()
            for route in app.router.routes:
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

    # A plain ASGI middleware, not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware wraps
    # ``receive`` so that ``request.is_disconnected()`` never sees the client leave, and an abandoned
    # request then kept its worker until the whole image was done.
    app.add_middleware(_NoSniff)

    # ---- helpers ----
    def ready_or_503() -> None:
        if not pool.ready.is_set():
            raise ApiError(
                503,
                "not_ready",
                pool.error or f"loading models ({pool.loading or 'starting'})",
                {"Retry-After": "2"},
            )

    def job_info(job: Job) -> JobInfo:
        return JobInfo(
            id=job.id,
            status=job.status,
            progress=job.control.progress
            if job.status != "cancelled"
            else round(min(job.control.progress, 0.99), 4),
            model=job.model,
            filename=job.filename,
            created=job.created,
            started=job.started,
            finished=job.finished,
            expires=state["jobs"].expires_at(job),
            width=job.width,
            height=job.height,
            content_type=job.content_type,
            result_url=f"/v1/jobs/{job.id}/result" if job.status == "done" else None,
            error=ErrorBody(**job.error) if job.error else None,
            quality=job.quality if job.status == "done" else None,
            uncertainty_url=f"/v1/jobs/{job.id}/result?variant=uncertainty"
            if job.status == "done" and job.heatmap else None,
        )

    def out_name(filename: str, suffix: str, model_scale: str) -> str:
        stem = Path(filename).stem or "image"
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:100]
        return f"{safe}_{model_scale}{suffix}"

    # ---- endpoints ----
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The process is up and its event loop answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Ready, responses=_errors(503), tags=["health"])
    async def readyz() -> Ready:
        """200 when every model is loaded and there is room for more work; 503 otherwise."""
        ready_or_503()
        sched: Scheduler = state["sched"]
        if sched.full:
            raise ApiError(
                503,
                "overloaded",
                f"{sched.active} requests in progress or queued (limit {sched.capacity})",
                {"Retry-After": "1"},
            )
        return Ready(status="ready", models=list(pool.entries), active=sched.active, capacity=sched.capacity)

    @app.get("/v1/models", response_model=ModelList, tags=["models"])
    async def models() -> ModelList:
        """The served models and the server's limits."""
        limits = {
            k: float(getattr(settings, k))
            for k in (
                "max_bytes",
                "max_pixels",
                "sync_max_pixels",
                "max_output_pixels",
                "request_timeout",
                "job_ttl",
            )
        }
        return ModelList(
            default=pool.default, models=[ModelInfo(**m) for m in pool.describe()], limits=limits
        )

    upload_spec = _upload_body(list(pool.entries))

    @app.post(
        "/v1/upscale",
        response_class=Response,
        tags=["upscale"],
        openapi_extra=upload_spec,
        responses={200: _IMAGE_RESPONSE, **_errors(413, 415, 422, 429, 503)},
    )
    async def upscale(request: Request) -> Response:
        """Upscale one image and answer with the image (for images up to ``sync_max_pixels``)."""
        ready_or_503()
        upload = await receive_upload(request, state["tmp"], settings.max_bytes)
        control = WorkControl()
        try:
            params = parse_params(upload.fields)
            name = pool.resolve(params.model)
            up = pool.get(name)
            hint = "; send it to POST /v1/jobs" if settings.sync_max_pixels < settings.max_pixels else ""
            limit = min(settings.sync_max_pixels, settings.max_pixels)

            def work() -> Outcome:
                control.check()
                try:
                    assert upload.path is not None
                    data = upload.path.read_bytes()
                except (FileNotFoundError, AssertionError):
                    control.cancel()
                    control.check()
                    raise
                upload.discard()
                return process(
                    up,
                    data,
                    upload.filename,
                    params,
                    control,
                    max_pixels=limit,
                    max_output_pixels=settings.max_output_pixels,
                    limit_hint=hint,
                )

            started = time.perf_counter()
            fut = state["sched"].submit(work)
            outcome = await _wait(fut, control, request, settings.request_timeout)
            elapsed = time.perf_counter() - started
        finally:
            if control.stage != "done":  # failed, timed out or abandoned: stop the work between tiles
                control.cancel()
            upload.discard()
        if outcome is None:  # the client went away
            return Response(status_code=400)
        label = (
            f"{outcome.width}x{outcome.height}"
            if params.width or params.height
            else f"x{params.outscale or up.scale:g}"
        )
        headers = {
            "X-Superres-Model": name,
            "X-Image-Size": f"{outcome.width}x{outcome.height}",
            "X-Elapsed-Ms": f"{elapsed * 1000:.1f}",
            **_quality_headers(outcome.quality),
            "Content-Disposition": f'inline; filename="{out_name(upload.filename, outcome.suffix, label)}"',
        }
        return Response(outcome.data, media_type=outcome.content_type, headers=headers)

    @app.post(
        "/v1/jobs",
        status_code=202,
        response_model=JobInfo,
        tags=["jobs"],
        openapi_extra=upload_spec,
        responses=_errors(413, 415, 422, 429, 503),
    )
    async def submit_job(request: Request) -> JSONResponse:
        """Accept an image for background upscaling (up to ``max_pixels``); poll the returned job."""
        ready_or_503()
        upload = await receive_upload(request, state["tmp"], settings.max_bytes)
        try:
            params = parse_params(upload.fields)
            name = pool.resolve(params.model)
            up = pool.get(name)
            assert upload.path is not None
            # header only, off the event loop: a bomb or a text file is refused now, not as a failed job
            await asyncio.to_thread(probe, upload.path, upload.filename, settings.max_pixels)
            job = Job(id=secrets.token_hex(16), model=name, filename=upload.filename, params=params)
            store: JobStore = state["jobs"]
            store.add(job)

            def work(data: bytes) -> Outcome:
                return process(
                    up,
                    data,
                    job.filename,
                    params,
                    job.control,
                    max_pixels=settings.max_pixels,
                    max_output_pixels=settings.max_output_pixels,
                )

            try:
                state["sched"].submit(lambda: store.run(job, upload, work)).add_done_callback(
                    lambda _f: upload.discard()
                )
            except ApiError:
                with store.lock:
                    store._jobs.pop(job.id, None)
                raise
        except BaseException:
            upload.discard()
            raise
        return JSONResponse(
            job_info(job).model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
        )

    @app.get("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"], responses=_errors(404))
    async def job_status(job_id: str) -> JobInfo:
        """Status and progress (0..1) of a job; ``result_url`` once it is done."""
        return job_info(state["jobs"].get(job_id))

    @app.get(
        "/v1/jobs/{job_id}/result",
        response_class=Response,
        tags=["jobs"],
        responses={200: _IMAGE_RESPONSE, **_errors(404, 409, 422)},
    )
    async def job_result(job_id: str, variant: Literal["image", "uncertainty"] = "image") -> Response:
        """The finished image (until the job expires or is deleted); ``variant=uncertainty``: the uncertainty
        heatmap PNG (the output's size) of a job run with ``report=true``."""
        job = state["jobs"].get(job_id)
        if variant == "uncertainty":
            if job.status != "done" or job.heatmap is None or not job.heatmap.exists():
                raise ApiError(409, "no_uncertainty", f"job is {job.status}" if job.status != "done"
                               else "this job was run without report=true")
            return FileResponse(job.heatmap, media_type="image/png")
        if job.status != "done" or job.result is None or not job.result.exists():
            detail = f"job is {job.status}"
            if job.error:
                detail += f": {job.error['detail']}"
            raise ApiError(409, "job_not_done", detail)
        name = out_name(job.filename, job.result.suffix, job.model)
        return FileResponse(
            job.result,
            media_type=job.content_type,
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Image-Size": f"{job.width}x{job.height}",
            },
        )

    @app.delete("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"], responses=_errors(404))
    async def cancel_job(job_id: str) -> JobInfo:
        """Cancel an unfinished job (it stops between tiles) or delete a finished one's result; the id is
        forgotten (404 afterwards)."""
        return job_info(state["jobs"].cancel(job_id))

    return app


def _quality_headers(quality: Optional[dict[str, Any]]) -> dict[str, str]:
    """report=true on /v1/upscale: the gate's verdict in headers (the body is the image)."""
    if not quality:
        return {}
    out = {"X-Quality-Flagged": "true" if quality.get("flagged") else "false",
           "X-Quality-Written": str(quality.get("written"))}
    named = (("uncertainty_p99", "X-Uncertainty-P99"), ("niqe", "X-NIQE"), ("bicubic_niqe", "X-NIQE-Bicubic"))
    for key, header in named:
        if quality.get(key) is not None:
            out[header] = f"{quality[key]:.3f}"
    return out


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


async def _wait(fut: Any, control: WorkControl, request: Request, timeout: float) -> Optional[Outcome]:
    """Wait for a worker result without blocking the loop; cancel the work on timeout or disconnect."""
    waiter = asyncio.wrap_future(fut)
    # an abandoned result (timeout, client gone) is still retrieved, so asyncio does not log it as lost
    waiter.add_done_callback(lambda f: None if f.cancelled() else f.exception())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            control.cancel()
            raise ApiError(
                503,
                "timeout",
                f"not finished within {timeout:g} s; use POST /v1/jobs for large images",
                {"Retry-After": "5"},
            )
        done, _ = await asyncio.wait({waiter}, timeout=min(0.5, remaining))
        if done:
            outcome: Outcome = waiter.result()
            control.stage = "done"
            return outcome
        if await request.is_disconnected():
            control.cancel()
            return None


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
