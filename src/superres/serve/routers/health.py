"""``/healthz`` (the process answers), ``/readyz`` (models loaded, capacity left), ``/v1/models``."""

from __future__ import annotations

from fastapi import APIRouter

from ..context import ServerContext
from ..errors import ApiError
from ..schemas import Health, ModelInfo, ModelList, Ready, errors

_LIMITS = ("max_bytes", "max_pixels", "sync_max_pixels", "max_output_pixels", "request_timeout", "job_ttl")


def build(ctx: ServerContext) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The process is up and its event loop answers."""
        return Health(status="ok")

    @router.get("/readyz", response_model=Ready, responses=errors(503), tags=["health"])
    async def readyz() -> Ready:
        """200 when every model is loaded and there is room for more work; 503 otherwise."""
        ctx.ready_or_503()
        sched = ctx.scheduler
        if sched.full:
            raise ApiError(
                503,
                "overloaded",
                f"{sched.active} requests in progress or queued (limit {sched.capacity})",
                {"Retry-After": "1"},
            )
        return Ready(status="ready", models=list(ctx.pool.entries), active=sched.active, capacity=sched.capacity)

    @router.get("/v1/models", response_model=ModelList, tags=["models"])
    async def models() -> ModelList:
        """The served models and the server's limits."""
        limits = {k: float(getattr(ctx.settings, k)) for k in _LIMITS}
        return ModelList(
            default=ctx.pool.default, models=[ModelInfo(**m) for m in ctx.pool.describe()], limits=limits
        )

    return router
