"""The server's moving parts, without HTTP: the shared models, the inference thread pool with admission
control, and the job store with expiry.

Concurrency model: one :class:`~superres.inference.upscaler.Upscaler` per model name, loaded once and
shared by every request (it keeps no per-call state). Inference runs in ``concurrent_jobs`` threads so
the event loop only parses uploads and answers polls. Admission is counted, not queued blindly: at most
``concurrent_jobs + queue_length`` pieces of work are accepted at once, the next one is answered 429.

No micro-batching of same-size tiles: on a CPU a batch of N tiles costs N single tiles (the convolution
already uses every core through intra-op threads), so batching would only add queueing delay. On a GPU
small tiles from several requests could share one launch; that is left for when a GPU server needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import ApiError
from .pipeline import Cancelled, UpscaleParams, WorkControl

if TYPE_CHECKING:  # pragma: no cover
    from ..inference.upscaler import Upscaler
    from .upload import Upload

log = logging.getLogger(__name__)

__all__ = ["Job", "JobStore", "ModelPool", "Scheduler"]


# ---- models ------------------------------------------------------------------------------------------


@dataclass
class ModelEntry:
    name: str
    source: str  # zoo name or weights file
    info: dict[str, Any]
    upscaler: Optional["Upscaler"] = None


class ModelPool:
    """The served models by canonical name; loaded in a background thread so /healthz answers at once and
    /readyz turns 200 when every model is in memory."""

    def __init__(self, names: list[str], *, device: str, precision: str, tile: Optional[int],
                 backend: str = "torch") -> None:
        from ..errors import ModelLoadError
        from ..zoo.choose import served_by_default
        from ..zoo.registry import get_card, is_available_offline

        self.device, self.precision, self.tile = device, precision, tile
        self.backend = backend
        self.entries: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}
        # Unasked: the picks of `superres models` (zoo.choose.served_by_default: why, and what is left out).
        chosen = names or served_by_default()
        if not chosen:
            raise ModelLoadError("no model is available offline; name one with --models")
        for text in chosen:
            p = Path(text).expanduser()
            if p.suffix and p.exists():
                entry = ModelEntry(
                    p.stem,
                    str(p),
                    {
                        "name": p.stem,
                        "title": p.name,
                        "scale": None,
                        "arch": None,
                        "purpose": "custom",
                        "licence": "",
                        "description": str(p),
                    },
                )
            else:
                card = get_card(text)
                if not is_available_offline(card):
                    raise ModelLoadError(f"weights for {card.name!r} are not available offline")
                entry = ModelEntry(
                    card.name,
                    card.name,
                    {
                        "name": card.name,
                        "title": card.title,
                        "scale": card.scale,
                        "arch": card.arch,
                        "purpose": card.purpose,
                        "licence": card.licence,
                        "description": card.description,
                    },
                )
                for alias in card.aliases:
                    self._aliases[alias.lower()] = card.name
            self.entries[entry.name] = entry
            self._aliases[entry.name.lower()] = entry.name
        self.default = next(iter(self.entries))
        self.ready = threading.Event()
        self.error: Optional[str] = None
        self.loading: Optional[str] = None

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self._load_all, name="superres-model-loader", daemon=True)
        t.start()
        return t

    def _load_all(self) -> None:
        from ..inference.upscaler import UpscaleOptions
        from ..loading import load_model

        try:
            for entry in self.entries.values():
                self.loading = entry.name
                up = load_model(
                    entry.source,
                    device=self.device,
                    precision=self.precision,
                    options=UpscaleOptions(tile=self.tile),
                    backend=self.backend,
                )
                entry.upscaler = up
                entry.info["scale"] = up.scale
                entry.info["arch"] = up.descriptor.arch
                log.info("loaded %s on %s (%s)", entry.name, up.device, up.dtype)
            self.loading = None
            self.ready.set()
        except Exception as e:
            self.error = f"cannot load model {self.loading!r}: {e}"
            log.error(self.error)

    def resolve(self, name: Optional[str]) -> str:
        if not name:
            return self.default
        found = self._aliases.get(name.strip().lower())
        if found is None:
            raise ApiError(422, "unknown_model", f"unknown model {name!r}; served: {', '.join(self.entries)}")
        return found

    def get(self, name: str) -> "Upscaler":
        up = self.entries[name].upscaler
        if up is None:
            raise ApiError(
                503, "not_ready", self.error or f"model {name!r} is still loading", {"Retry-After": "2"}
            )
        return up

    def describe(self) -> list[dict[str, Any]]:
        return [
            dict(e.info, default=e.name == self.default, loaded=e.upscaler is not None)
            for e in self.entries.values()
        ]


# ---- inference threads with admission control --------------------------------------------------------


class Scheduler:
    """A thread pool that refuses work (429) instead of queueing without bound."""

    def __init__(self, workers: int, queue_length: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="superres-infer")
        self.capacity = workers + queue_length
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return self._active

    @property
    def full(self) -> bool:
        return self._active >= self.capacity

    def submit(self, fn: Callable[[], Any]) -> "Future[Any]":
        with self._lock:
            if self._active >= self.capacity:
                raise ApiError(
                    429,
                    "queue_full",
                    f"{self._active} requests are in progress or queued (limit {self.capacity}); retry later",
                    {"Retry-After": "1"},
                )
            self._active += 1
        try:
            fut = self.pool.submit(fn)
        except BaseException:
            self._release()
            raise
        fut.add_done_callback(lambda _f: self._release())
        return fut

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---- jobs -------------------------------------------------------------------------------------------


@dataclass
class Job:
    id: str
    model: str
    filename: str
    params: UpscaleParams
    control: WorkControl = field(default_factory=WorkControl)
    status: str = "queued"  # queued | running | done | failed | cancelled | deleted
    created: float = field(default_factory=time.time)
    started: Optional[float] = None
    finished: Optional[float] = None
    result: Optional[Path] = None
    content_type: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    error: Optional[dict[str, str]] = None
    error_status: Optional[int] = None
    quality: Optional[dict[str, Any]] = None  # the quality check's fields (report=true)
    heatmap: Optional[Path] = None  # its uncertainty heatmap PNG

    @property
    def finished_state(self) -> bool:
        return self.status in ("done", "failed", "cancelled", "deleted")


class JobStore:
    """Job records and their result files; finished jobs are forgotten (files deleted) ``ttl`` seconds
    after they finish."""

    def __init__(self, tmp_dir: Path, ttl: float, max_jobs: int) -> None:
        self.tmp_dir, self.ttl, self.max_jobs = tmp_dir, ttl, max_jobs
        self.lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        self.expire()
        with self.lock:
            if len(self._jobs) >= self.max_jobs:
                raise ApiError(
                    429,
                    "too_many_jobs",
                    f"{len(self._jobs)} jobs are stored (limit {self.max_jobs}); "
                    "fetch or delete results, or retry later",
                    {"Retry-After": "5"},
                )
            self._jobs[job.id] = job

    def get(self, job_id: str) -> Job:
        self.expire()
        with self.lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown, or expired and deleted)")
        return job

    def discard(self, job_id: str) -> None:
        """Forget a job that was never started (its submission was refused after it was added)."""
        with self.lock:
            self._jobs.pop(job_id, None)

    def expires_at(self, job: Job) -> Optional[float]:
        return None if job.finished is None else job.finished + self.ttl

    def run(self, job: Job, upload: "Upload", work: Callable[[bytes], Any]) -> None:
        """Worker-thread body of a job: decode/upscale/encode via ``work`` and store the result file."""
        from ..io.atomic import atomic_write

        try:
            with self.lock:
                if job.control.cancelled:
                    return
                job.status, job.started = "running", time.time()
            assert upload.path is not None
            data = upload.path.read_bytes()
            upload.discard()
            outcome = work(data)
            dest = self.tmp_dir / f"job-{job.id}{outcome.suffix}"
            with atomic_write(dest) as tmp:
                tmp.write_bytes(outcome.data)
            heat = None
            if getattr(outcome, "heatmap", None):
                heat = self.tmp_dir / f"job-{job.id}-uncertainty.png"
                with atomic_write(heat) as tmp:
                    tmp.write_bytes(outcome.heatmap)
            with self.lock:
                if job.control.cancelled:  # cancelled during the encode: drop the result
                    dest.unlink(missing_ok=True)
                    if heat is not None:
                        heat.unlink(missing_ok=True)
                    return
                job.quality, job.heatmap = getattr(outcome, "quality", None), heat
                job.result, job.content_type = dest, outcome.content_type
                job.width, job.height = outcome.width, outcome.height
                job.control.stage = "done"
                job.status = "done"
        except Cancelled:
            pass
        except ApiError as e:
            with self.lock:
                job.status, job.error, job.error_status = "failed", e.body(), e.status
        except Exception as e:
            log.exception("job %s failed", job.id)
            with self.lock:
                job.status, job.error, job.error_status = (
                    "failed",
                    {"error": "internal", "detail": str(e)},
                    500,
                )
        finally:
            upload.discard()
            with self.lock:
                if not job.finished_state:
                    job.status = "cancelled"
                if job.finished is None:
                    job.finished = time.time()

    def cancel(self, job_id: str) -> Job:
        """Forget a job: an unfinished one is stopped (between tiles; status ``cancelled``), a finished
        one's result is deleted (status ``deleted``). Afterwards the id answers 404."""
        job = self.get(job_id)
        with self.lock:
            job.control.cancel()
            self._jobs.pop(job.id, None)
            if job.finished_state:
                job.status = "deleted"
            else:
                job.status = "cancelled"
                job.finished = job.finished or time.time()
            result, job.result = job.result, None
            heat, job.heatmap = job.heatmap, None
        for f in (result, heat):
            if f is not None:
                f.unlink(missing_ok=True)
        return job

    def expire(self, now: Optional[float] = None) -> int:
        now = time.time() if now is None else now
        gone: list[Job] = []
        with self.lock:
            for job in list(self._jobs.values()):
                if job.finished is not None and now >= job.finished + self.ttl:
                    gone.append(self._jobs.pop(job.id))
        for job in gone:
            for f in (job.result, job.heatmap):
                if f is not None:
                    f.unlink(missing_ok=True)
        return len(gone)

    def cancel_all(self) -> None:
        with self.lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.control.cancel()
            for f in (job.result, job.heatmap):
                if f is not None:
                    f.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._jobs)
