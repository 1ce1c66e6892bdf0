"""What every route of one server shares: its settings, models, job store and scheduler.

Why an object: the routes live in separate modules (:mod:`superres.serve.routers`); each gets this
context from ``request.app.state.ctx`` instead of closing over variables of one long ``create_app``. The
job store, scheduler and temporary folder exist only while the app runs (made in its lifespan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from fastapi.responses import JSONResponse

from .errors import ApiError, ErrorBody
from .filenames import out_name  # noqa: F401  (kept importable from here)
from .schemas import JobInfo

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from .pipeline import Outcome
    from .upload import Upload
    from .service import Job, JobStore, ModelPool, Scheduler
    from .settings import ServeSettings

__all__ = ["ServerContext", "out_name"]


@dataclass
class ServerContext:
    settings: "ServeSettings"
    pool: "ModelPool"
    tmp: Optional[Path] = None
    jobs: "Optional[JobStore]" = None
    sched: "Optional[Scheduler]" = None
    extras: dict[str, object] = field(default_factory=dict)  # per-feature state of optional routers

    @property
    def store(self) -> "JobStore":
        assert self.jobs is not None, "the app is not running (lifespan not started)"
        return self.jobs

    @property
    def scheduler(self) -> "Scheduler":
        assert self.sched is not None, "the app is not running (lifespan not started)"
        return self.sched

    @property
    def tmp_dir(self) -> Path:
        assert self.tmp is not None, "the app is not running (lifespan not started)"
        return self.tmp

    def ready_or_503(self) -> None:
        pool = self.pool
        if not pool.ready.is_set():
            raise ApiError(
                503,
                "not_ready",
                pool.error or f"loading models ({pool.loading or 'starting'})",
                {"Retry-After": "2"},
            )

    def start_job(self, job: "Job", upload: "Upload", work: "Callable[[bytes], Outcome]") -> JSONResponse:
        """Queue an accepted job (already in the store) and answer 202 with its record; a full queue
        forgets the job again and answers 429. The upload is removed once the job has read it."""
        try:
            self.scheduler.submit(lambda: self.store.run(job, upload, work)).add_done_callback(
                lambda _f: upload.discard()
            )
        except ApiError:
            self.store.discard(job.id)
            raise
        return JSONResponse(
            self.job_info(job).model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
        )

    def job_info(self, job: "Job") -> JobInfo:
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
            expires=self.store.expires_at(job),
            width=job.width,
            height=job.height,
            content_type=job.content_type,
            result_url=f"/v1/jobs/{job.id}/result" if job.status == "done" else None,
            error=ErrorBody(**job.error) if job.error else None,
            quality=job.quality if job.status == "done" else None,
            uncertainty_url=f"/v1/jobs/{job.id}/result?variant=uncertainty"
            if job.status == "done" and job.heatmap else None,
        )
