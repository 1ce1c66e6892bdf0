"""``/v1/jobs``: submit an image for background upscaling, poll its progress, fetch or cancel it."""

from __future__ import annotations

import asyncio
import secrets
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from .. import ab
from ..context import ServerContext
from ..errors import ApiError
from ..filenames import content_disposition, out_name
from ..pipeline import Outcome, parse_params, probe, process
from ..schemas import JOB_RESULT_RESPONSE, JobInfo, errors, upload_body
from ..service import Job
from ..upload import receive_upload


def build(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    settings, pool = ctx.settings, ctx.pool

    @router.post(
        "/v1/jobs",
        status_code=202,
        response_model=JobInfo,
        tags=["jobs"],
        openapi_extra=upload_body(list(pool.entries)),
        responses=errors(413, 415, 422, 429, 503),
    )
    async def submit_job(request: Request) -> JSONResponse:
        """Accept an image for background upscaling (up to ``max_pixels``); poll the returned job."""
        ctx.ready_or_503()
        upload = await receive_upload(request, ctx.tmp_dir, settings.max_bytes)
        try:
            params = parse_params(upload.fields)
            name = pool.resolve(ab.choose_model(request, params.model))
            up = pool.get(name)
            assert upload.path is not None
            # header only, off the event loop: a bomb or a text file is refused now, not as a failed job
            await asyncio.to_thread(probe, upload.path, upload.filename, settings.max_pixels)
            job = Job(id=secrets.token_hex(16), model=name, filename=upload.filename, params=params)
            store = ctx.store
            store.add(job)
            ab.track_job(request, job)

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

            return ctx.start_job(job, upload, work)
        except BaseException:
            upload.discard()
            raise

    @router.get("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"], responses=errors(404))
    async def job_status(job_id: str) -> JobInfo:
        """Status and progress (0..1) of a job; ``result_url`` once it is done."""
        return ctx.job_info(ctx.store.get(job_id))

    @router.get(
        "/v1/jobs/{job_id}/result",
        response_class=Response,
        tags=["jobs"],
        responses={200: JOB_RESULT_RESPONSE, **errors(404, 409, 422)},
    )
    async def job_result(job_id: str, variant: Literal["image", "uncertainty"] = "image") -> Response:
        """The finished image (until the job expires or is deleted); ``variant=uncertainty``: the uncertainty
        heatmap PNG (the output's size) of a job run with ``report=true``."""
        job = ctx.store.get(job_id)
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
                "Content-Disposition": content_disposition(name, "attachment"),
                "X-Image-Size": f"{job.width}x{job.height}",
            },
        )

    @router.delete("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"], responses=errors(404))
    async def cancel_job(job_id: str) -> JobInfo:
        """Cancel an unfinished job (it stops between tiles) or delete a finished one's result; the id is
        forgotten (404 afterwards)."""
        return ctx.job_info(ctx.store.cancel(job_id))

    return router
