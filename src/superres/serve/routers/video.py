"""``/v1/video``: a short video upscaled as a background job; poll, cancel and download it with ``/v1/jobs``.

The upload is checked at submission, off the event loop (one pass over its packets, no decoding): not a
video -> 415; more than ``MAX_VIDEO_FRAMES`` frames, frames over ``max_pixels`` or an output frame over
``max_output_pixels`` -> 413. The job then runs the same engine as ``superres video`` (one segment, MP4
out, audio kept), reports frames done as its progress and stops between frames when cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..context import ServerContext
from ..errors import ApiError
from ..pipeline import Outcome, parse_params
from ..schemas import JobInfo, errors, upload_body
from ..service import Job
from ..upload import receive_upload

#: A short video: one minute at 30 frames/s.
MAX_VIDEO_FRAMES = 1800


def _check_video(path: Path, scale: int, params: Any, max_pixels: int, max_output_pixels: int) -> None:
    from ...errors import SuperresError
    from ...inference.limits import output_size
    from ...video.reading import index_video

    try:  # a still image FFmpeg reads (JPEG, PNG) is a one-frame video, as on the command line
        index = index_video(path, max_frames=MAX_VIDEO_FRAMES)
    except SuperresError as e:
        text = str(e).replace(str(path), "upload")
        if "more than" in text:
            raise ApiError(413, "video_too_long", f"at most {MAX_VIDEO_FRAMES} frames") from None
        raise ApiError(415, "unsupported_media_type", text) from None
    w, h = index.width, index.height
    if w * h > max_pixels:
        raise ApiError(413, "image_too_large", f"frames of {w}x{h} are over the limit of {max_pixels} pixels")
    ow, oh = output_size(w, h, scale, params.outscale, params.width, params.height)
    if ow < 2 or oh < 2 or ow * oh > max_output_pixels:
        raise ApiError(413, "image_too_large",
                       f"output frames of {ow}x{oh} are outside 2x2..{max_output_pixels} pixels")


def _video_body(models: list[str]) -> dict[str, Any]:
    """The upload form of /v1/video: the file, model and size fields (the image-only ones do not apply)."""
    body = upload_body(models)
    schema = body["requestBody"]["content"]["multipart/form-data"]["schema"]
    schema["properties"] = {k: v for k, v in schema["properties"].items()
                            if k in ("file", "model", "outscale", "scale", "width", "height")}
    schema["properties"]["file"] = {"type": "string", "format": "binary",
                                    "description": "The video (MP4, MKV, MOV, WebM...)."}
    return body


def build(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    settings, pool = ctx.settings, ctx.pool

    @router.post(
        "/v1/video",
        status_code=202,
        response_model=JobInfo,
        tags=["jobs"],
        openapi_extra=_video_body(list(pool.entries)),
        responses=errors(413, 415, 422, 429, 503),
    )
    async def submit_video(request: Request) -> JSONResponse:
        """Accept a short video (MP4, MKV, MOV, WebM...) for background upscaling; poll ``/v1/jobs/{id}``,
        download the MP4 from its ``result_url``."""
        ctx.ready_or_503()
        upload = await receive_upload(request, ctx.tmp_dir, settings.max_bytes)
        try:
            params = parse_params(upload.fields)
            name = pool.resolve(params.model)
            up = pool.get(name)
            assert upload.path is not None
            await asyncio.to_thread(_check_video, upload.path, up.scale, params, settings.max_pixels,
                                    settings.max_output_pixels)
            job = Job(id=secrets.token_hex(16), model=name, filename=upload.filename, params=params)
            ctx.store.add(job)
            control = job.control

            def work(data: bytes) -> Outcome:
                from ...errors import SuperresError
                from ...inference.frames import FrameUpscaler
                from ...inference.limits import output_size
                from ...video.engine import prepare_video, run_video

                src = ctx.tmp_dir / f"video-{job.id}.in"
                dst = ctx.tmp_dir / f"video-{job.id}.mp4"
                try:
                    src.write_bytes(data)
                    control.stage = "decoding"

                    def size(w: int, h: int) -> tuple[int, int]:
                        return output_size(w, h, up.scale, params.outscale, params.width, params.height)

                    vjob = prepare_video(src, dst, size=size, model_id=name, scale=up.scale, overwrite=True,
                                         segment_seconds=0, preset="veryfast")
                    net = FrameUpscaler(up, vjob.size)

                    def frames(batch: list[Any]) -> list[Any]:
                        control.check()  # raises Cancelled between frames
                        return net(batch)

                    def progress(done: int, total: int) -> None:
                        control.stage, control.tiles_done, control.tiles_total = "upscaling", done, total

                    run_video(vjob, frames, progress=progress)
                    control.stage = "encoding"
                    w, h = vjob.size
                    return Outcome(dst.read_bytes(), "video/mp4", ".mp4", w, h)
                except SuperresError as e:
                    raise ApiError(422, "upscale_failed", str(e).replace(str(src), "upload")) from None
                finally:
                    for p in (src, dst):
                        with contextlib.suppress(OSError):
                            p.unlink()

            return ctx.start_job(job, upload, work)
        except BaseException:
            upload.discard()
            raise

    return router
