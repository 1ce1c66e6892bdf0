"""``POST /v1/upscale``: image in, image out, for images up to ``sync_max_pixels``."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import ab
from ..context import ServerContext
from ..errors import ApiError
from ..filenames import content_disposition, out_name
from ..pipeline import Outcome, WorkControl, parse_params, process
from ..schemas import IMAGE_RESPONSE, errors, upload_body
from ..upload import receive_upload


def build(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    settings, pool = ctx.settings, ctx.pool

    @router.post(
        "/v1/upscale",
        response_class=Response,
        tags=["upscale"],
        openapi_extra=upload_body(list(pool.entries)),
        responses={200: IMAGE_RESPONSE, **errors(413, 415, 422, 429, 503)},
    )
    async def upscale(request: Request) -> Response:
        """Upscale one image and answer with the image (for images up to ``sync_max_pixels``)."""
        ctx.ready_or_503()
        upload = await receive_upload(request, ctx.tmp_dir, settings.max_bytes)
        control = WorkControl()
        try:
            params = parse_params(upload.fields)
            name = pool.resolve(ab.choose_model(request, params.model))
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
            fut = ctx.scheduler.submit(work)
            outcome = await wait_for_worker(fut, control, request, settings.request_timeout)
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
            **quality_headers(outcome.quality),
            "Content-Disposition": content_disposition(out_name(upload.filename, outcome.suffix, label), "inline"),
        }
        return Response(outcome.data, media_type=outcome.content_type, headers=headers)

    return router


def quality_headers(quality: Optional[dict[str, Any]]) -> dict[str, str]:
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


async def wait_for_worker(fut: Any, control: WorkControl, request: Request, timeout: float) -> Optional[Outcome]:
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
