"""Server settings: one pydantic model, filled from defaults, then ``SUPERRES_SERVE_*`` environment
variables, then command-line flags (later wins).

pydantic-settings is not a dependency, so the environment is read here by hand: every field ``name`` is
read from ``SUPERRES_SERVE_NAME``; list fields take comma-separated values. Every limit has a default
that keeps a small server safe; each one maps to one HTTP status (see ``superres.serve.app``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import SuperresError

__all__ = ["ENV_PREFIX", "ServeSettings", "load_settings"]

ENV_PREFIX = "SUPERRES_SERVE_"
MiB = 1 << 20


class ServeSettings(BaseModel):
    """Everything ``superres serve`` can be told. Sizes are bytes and pixels; times are seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"  # loopback by default: exposing the server is a deliberate choice
    port: int = Field(8000, ge=0, le=65535)
    models: list[str] = Field(default_factory=list)  # empty: zoo.choose.served_by_default()
    device: str = "auto"
    backend: str = "torch"  # a row of superres.loading's backend table (ncnn: Vulkan GPUs of any vendor)
    precision: str = "auto"
    tile: Optional[int] = Field(None, ge=0)  # LR tile side; None = from free memory

    max_bytes: int = Field(32 * MiB, gt=0)  # request body -> 413
    max_pixels: int = Field(4096 * 4096, gt=0)  # decoded input, jobs -> 413
    sync_max_pixels: int = Field(2048 * 2048, gt=0)  # decoded input, /v1/upscale -> 413 (use a job)
    max_output_pixels: int = Field(16384 * 16384, gt=0)  # requested output size -> 422
    concurrent_jobs: int = Field(2, ge=1, le=64)  # inference threads
    queue_length: int = Field(16, ge=0)  # accepted work waiting for a thread -> 429 beyond it
    max_jobs: int = Field(256, ge=1)  # job records kept (finished ones until their TTL) -> 429
    request_timeout: float = Field(120.0, gt=0)  # synchronous upscale -> 503
    job_ttl: float = Field(600.0, gt=0)  # finished job results are deleted after this
    tmp_dir: Optional[Path] = None  # where the private work folder is made (serve/workdir.py); None = system temp
    log_level: str = "info"
    study: Optional[Path] = None  # a study folder (superres study create): the rating page at /study
    ab: list[str] = Field(default_factory=list)  # NAME=MODEL:SHARE candidate versions (serve/ab.py)

    @field_validator("models", "ab", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> ServeSettings:
    """Defaults < environment < ``overrides`` (CLI flags; ``None`` values mean "not given").

    Invalid values become a :class:`SuperresError` naming the variable or flag, so the CLI prints one line."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in ServeSettings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    try:
        return ServeSettings.model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            where = f"--{field.replace('_', '-')} / {ENV_PREFIX}{field.upper()}"
            problems.append(f"{where}: {err['msg']}")
        raise SuperresError("invalid server settings: " + "; ".join(problems)) from None
