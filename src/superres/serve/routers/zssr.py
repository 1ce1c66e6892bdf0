"""``POST /v1/zssr``: zero-shot SR as a background job in the server's existing job store.

ZSSR trains for up to ``max_time`` seconds per image, far too long for a synchronous request, so it is
only offered as a job: the reply is the usual 202 job record, and ``GET /v1/jobs/{id}``,
``/v1/jobs/{id}/result`` and ``DELETE /v1/jobs/{id}`` work on it as on any upscale job (progress is the
share of the training time spent; DELETE stops training at the next step). ``create_app`` includes the
router :func:`build` makes.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...seeds import MAX_SEED
from ..context import ServerContext
from ..errors import ApiError
from ..pipeline import CONTENT_TYPES, Outcome, WorkControl, check_output, decode, parse_params, probe
from ..schemas import JobInfo, errors
from ..service import Job
from ..upload import receive_upload

__all__ = ["MAX_ZSSR_SECONDS", "ZSSRParams", "build"]

#: The longest training a client may ask for (one job holds an inference thread that long).
MAX_ZSSR_SECONDS = 600.0


class ZSSRParams(BaseModel):
    """Form fields of ``/v1/zssr`` (besides ``format``/``quality``, as for ``/v1/jobs``)."""

    model_config = ConfigDict(extra="ignore")

    scale: Literal[2, 3, 4] = Field(2, description="Upscaling factor (x4 trains two x2 steps).")
    kernel: Literal["bicubic", "estimate"] = Field("bicubic", description="Assumed blur, or estimated.")
    max_time: float = Field(60.0, gt=0, le=MAX_ZSSR_SECONDS, description="Seconds of training.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Random seed, 0 to 2^63-1 (superres.seeds).")


def _parse(fields: dict[str, str]) -> ZSSRParams:
    data: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
    scale = str(data.get("scale", "2")).strip().lstrip("xX")  # "x4" is what people type
    data["scale"] = int(scale) if scale.isdigit() else scale  # a Literal of ints does not coerce strings
    try:
        return ZSSRParams.model_validate(data)
    except ValidationError as e:
        seed_range = f"must be an integer from 0 to 2^63-1 ({MAX_SEED})"  # the same words for every bound
        msgs = [f"{'.'.join(str(p) for p in err['loc']) or 'options'}: "
                f"{seed_range if tuple(err['loc']) == ('seed',) else err['msg']}" for err in e.errors()]
        raise ApiError(422, "invalid_options", "; ".join(msgs)) from None


def _work(data: bytes, name: str, zp: ZSSRParams, fmt: str, quality: int, control: WorkControl,
          max_pixels: int, max_output_pixels: int) -> Outcome:
    """Decode -> ZSSR -> encode, honouring cancel between training steps."""
    from ...errors import SuperresError
    from ...io.image import encode_image
    from ...zssr.image import zssr_image
    from ...zssr.trainer import ZSSRConfig, ZSSRProgress

    control.check()
    control.stage = "decoding"
    img = decode(data, name, max_pixels)
    if fmt == "auto":
        fmt = "png"
    if img.alpha is not None and fmt not in ("png", "webp", "tiff"):
        raise ApiError(422, "invalid_options", f"{fmt} cannot hold the image's transparency; use png or webp")
    encoder, content_type, suffix = CONTENT_TYPES[fmt]
    w, h = img.size
    check_output(w * zp.scale, h * zp.scale, fmt, max_output_pixels)  # before minutes of training
    control.tiles_total = max(1, int(zp.max_time * 10))  # progress counts tenths of a second of training
    control.stage = "upscaling"

    def step(p: ZSSRProgress) -> None:
        control.tiles_done = min(control.tiles_total, int(p.elapsed * 10))
        control.check()

    try:
        cfg = ZSSRConfig(scale=zp.scale, max_time=zp.max_time, seed=zp.seed)
        result = zssr_image(img, cfg, "estimate" if zp.kernel == "estimate" else None, progress=step)
    except SuperresError as e:
        raise ApiError(422, "upscale_failed", str(e)) from None
    control.stage = "encoding"
    control.check()
    out = encode_image(result.image, encoder, quality=quality)
    w, h = result.image.size
    return Outcome(out, content_type, suffix, w, h)


def _request_body() -> dict[str, Any]:
    """The multipart body, for the spec (parsed by ``receive_upload``, not FastAPI)."""
    fields = {
        "file": {"type": "string", "format": "binary", "description": "The image (PNG, JPEG, WebP, TIFF...)."},
        "scale": {"type": "integer", "enum": [2, 3, 4], "default": 2},
        "kernel": {"type": "string", "enum": ["bicubic", "estimate"], "default": "bicubic"},
        "max_time": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_ZSSR_SECONDS, "default": 60},
        "seed": {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_SEED, "default": 0},
        "format": {"type": "string", "enum": ["auto", *CONTENT_TYPES], "default": "png"},
        "quality": {"type": "integer", "minimum": 1, "maximum": 100, "default": 95},
    }
    schema = {"type": "object", "required": ["file"], "properties": fields}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def build(ctx: ServerContext) -> APIRouter:
    """``POST /v1/zssr``: zero-shot SR as a job in the server's job store (polled at ``/v1/jobs/{id}``)."""
    router = APIRouter()
    settings = ctx.settings

    @router.post("/v1/zssr", status_code=202, response_model=JobInfo, tags=["jobs"], openapi_extra=_request_body(),
                 responses=errors(413, 415, 422, 429, 503))
    async def submit_zssr(request: Request) -> JSONResponse:
        """Accept an image for zero-shot SR (trained on the image itself); poll the returned job."""
        upload = await receive_upload(request, ctx.tmp_dir, settings.max_bytes)
        try:
            zp = _parse(upload.fields)
            params = parse_params({k: v for k, v in upload.fields.items() if k in ("format", "quality")})
            assert upload.path is not None
            await asyncio.to_thread(probe, upload.path, upload.filename, settings.max_pixels)
            job = Job(id=secrets.token_hex(16), model=f"zssr-x{zp.scale}", filename=upload.filename, params=params)
            store = ctx.store
            store.add(job)

            def work(data: bytes) -> Outcome:
                return _work(data, job.filename, zp, params.format, params.quality, job.control,
                             settings.max_pixels, settings.max_output_pixels)

            return ctx.start_job(job, upload, work)
        except BaseException:
            upload.discard()
            raise

    return router
