"""One video on a Ray cluster: ``superres video IN -o OUT --engine ray``.

The unit of work is the segment (:mod:`superres.video.segments`): each actor loads the model once and
encodes whole segments through the same pipeline as the local engine, writing each segment file atomically
beside the output; the driver then assembles them exactly as a local run does. So the frames are the local
run's, an interrupted cluster run resumes like a local one, and pixels never travel through the object
store: the input and the output folder must be on storage every node sees (on one machine, any folder).

Ray is imported inside :func:`ray_engine`'s runner only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Optional

from ..errors import SuperresError, install_hint
from ..zoo.weight_limits import worker_env

__all__ = ["ray_engine", "SegmentWorker"]


class SegmentWorker:
    """Ray actor body: the model loaded once, then any number of segments."""

    def __init__(self, model: str, tile: Optional[int], device: str, precision: str, download: bool,
                 backend: str, batch_size: int) -> None:
        from ..inference.upscaler import UpscaleOptions
        from ..loading import load_model

        self.up = load_model(model, device=device, precision=precision, allow_download=download,
                             options=UpscaleOptions(tile=tile), backend=backend)
        self.tile, self.batch_size = tile, batch_size

    def encode(self, job: Any, seg: Any) -> int:
        from ..inference.frames import FrameUpscaler
        from ..video.pipeline import run_pipeline

        run_pipeline(job, [seg], FrameUpscaler(self.up, job.size, tile=self.tile), batch_size=self.batch_size)
        return int(seg.frames)


def ray_engine(*, model: str, tile: Optional[int] = None, device: str = "auto", precision: str = "auto",
               download: bool = False, backend: str = "torch", batch_size: int = 1,
               address: Optional[str] = None, num_cpus: Optional[int] = None,
               concurrency: Optional[int] = None) -> Callable[[Any, list[Any], Callable[[int], None]], None]:
    """A runner for :func:`superres.video.engine.run_video`'s ``engine``: segments spread over actors.

    ``address`` None starts a local cluster with ``num_cpus`` CPUs (shut down afterwards). ``concurrency``:
    actors (default: one per two CPUs of the cluster, at least one)."""

    def run(job: Any, todo: list[Any], on_frames: Callable[[int], None]) -> None:
        if not todo:
            return
        try:
            import ray
        except ImportError as e:
            raise SuperresError(
                f"--engine ray needs the 'cluster' extra ({e}): {install_hint('cluster')}") from None
        started_here = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": worker_env()})
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                         log_to_driver=False, runtime_env={"env_vars": worker_env()})
            started_here = True
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            n = max(1, min(len(todo), concurrency or cpus // 2 or 1))
            actor = ray.remote(num_cpus=1)(SegmentWorker)
            workers = [actor.remote(model, tile, device, precision, download, backend, batch_size)
                       for _ in range(n)]
            pending = {}
            queue = list(todo)
            for w in workers:
                if queue:
                    pending[w.encode.remote(job, queue.pop(0))] = w
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                w = pending.pop(ready[0])
                try:
                    on_frames(ray.get(ready[0]))
                except ray.exceptions.RayTaskError as e:
                    cause = e.as_instanceof_cause()
                    raise (cause if isinstance(cause, SuperresError) else SuperresError(
                        f"a Ray worker failed on a segment: {str(cause).splitlines()[0][:200]}")) from None
                if queue:
                    pending[w.encode.remote(job, queue.pop(0))] = w
        finally:
            if started_here:
                ray.shutdown()

    return run
