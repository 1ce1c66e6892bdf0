"""Folder upscaling on a Ray cluster: ``superres batch SRC DST --engine ray``.

Pipeline (Ray Data): the file list -> ``map_batches`` with an actor class that loads the model once and
upscales its batch (one GPU per actor when the cluster has GPUs) -> each output written atomically at
the same relative path as the local engine would write it. The driver only lists files and collects a
report; pixels never travel through the object store, so SRC and DST must be on storage every node
sees (a shared filesystem; on one machine, any folder).

Same bytes as the local engine: the actor calls the same functions in the same order (``read_image``,
``Upscaler.upscale_image``, ``write_image`` to ``inference.batch.output_path``). Resumable: outputs that
exist are skipped before anything is scheduled, and atomic writes mean an interrupted run leaves only
finished files behind.

Ray is imported inside :func:`run_ray_batch` only; nothing else in superres needs it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import SuperresError, install_hint
from ..zoo.weight_limits import worker_env

__all__ = ["RayBatchReport", "UpscaleActor", "plan_outputs", "run_ray_batch"]

log = logging.getLogger(__name__)


@dataclass
class RayBatchReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    #: outputs that exist but other (or unknown) settings made: kept, with the reason (overwrite redoes them)
    kept: list[tuple[Path, str]] = field(default_factory=list)
    #: with a quality gate: one report dict per image (superres.inference.report.ImageReport.to_dict)
    quality: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def plan_outputs(
    src: Path, dst: Path, ext: str, suffix: str, overwrite: bool, settings: Optional[dict[str, Any]] = None
) -> tuple[list[tuple[Path, Path]], list[Path], list[tuple[Path, str]]]:
    """(work to do as (file, relative path), outputs already finished, inputs refused) by the local
    engine's rule (:func:`superres.inference.batch.plan_batch`): shared outputs are refused before any
    work, an output that would replace an input (also through a link) is listed as failed, the output
    folder is never read. With ``settings``, outputs other settings made are kept: see :func:`plan_with_records`."""
    todo, skipped, refused, _, _ = plan_with_records(src, dst, ext, suffix, overwrite, settings)
    return todo, skipped, refused


def plan_with_records(src: Path, dst: Path, ext: str, suffix: str, overwrite: bool,
                      settings: Optional[dict[str, Any]]) -> tuple[Any, ...]:
    """:func:`plan_outputs` plus (outputs kept with the reason, the folder's output records or None)."""
    from ..inference.batch import plan_batch

    plan = plan_batch([src], dst, ext, suffix, overwrite, settings)
    return (plan.todo, [job.dst for job in plan.skipped], plan.failed,
            [(job.dst, why) for job, why in plan.kept], plan.records)


def _settings(model: str, outscale: Optional[float], quality: int, allow_download: bool,
              guard: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The same output settings the local engine records (:mod:`superres.inference.provenance`): the driver
    loads the network once, on the CPU, for its name, scale and weights digest."""
    from types import SimpleNamespace

    from ..inference.provenance import guard_settings, settings_of
    from ..zoo.loader import load_network

    net, card = load_network(model, allow_download=allow_download)
    name = card.name if card else Path(str(model)).stem
    probe = SimpleNamespace(name=name, descriptor=net.descriptor, network=net, options=None)
    return settings_of(probe, outscale=outscale, quality=quality, extra=guard_settings(**(guard or {})))


class UpscaleActor:
    """Ray Data callable class: the model is loaded once per actor and reused for every batch."""

    def __init__(
        self,
        model: str,
        out_root: str,
        device: str = "auto",
        precision: str = "auto",
        tile: Optional[int] = None,
        outscale: Optional[float] = None,
        ext: str = "auto",
        suffix: str = "",
        quality: int = 95,
        max_pixels: Optional[int] = None,
        allow_download: bool = False,
        guard: Optional[dict[str, Any]] = None,
    ) -> None:
        """``guard``: :class:`superres.inference.guarded.GuardChoices` fields (ensemble, gate, fallback)."""
        from ..inference.upscaler import UpscaleOptions
        from ..loading import load_model

        def load(name: str) -> Any:
            return load_model(name, device=device, precision=precision, allow_download=allow_download,
                              options=UpscaleOptions(tile=tile))

        self.up = load(model)
        self.guard = self.choices = None
        if guard:
            from ..inference import guarded

            self.choices = guarded.GuardChoices(**guard)
            self.up, self.guard = guarded.build(self.up, self.choices, load)
        self.out_root = Path(out_root)
        self.outscale, self.ext, self.suffix, self.quality = outscale, ext, suffix, quality
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from ..inference.batch import output_path
        from ..inference.limits import check_output_size, output_size
        from ..io.image import read_image, write_image

        outs, errors, quality = [], [], []
        kwargs = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        for src, rel in zip(batch["src"], batch["rel"], strict=True):
            try:
                img = read_image(str(src), **kwargs)
                dst = output_path(
                    Path(str(rel)), self.out_root, self.ext, self.suffix, has_alpha=img.alpha is not None
                )
                w, h = img.size
                check_output_size(w, h, *output_size(w, h, self.up.scale, self.outscale, None, None), None,
                                  dst.suffix)  # before the model runs: JPEG/WebP side limits
                if self.guard is not None:
                    result, rep = self._guarded(img, str(src), dst, Path(str(rel)))
                else:
                    result, rep = self.up.upscale_image(img, outscale=self.outscale), ""
                write_image(result, dst, quality=self.quality)
                outs.append(str(dst))
                errors.append("")
                quality.append(rep)
            except SuperresError as e:
                outs.append("")
                errors.append(str(e))
                quality.append("")
            except Exception as e:
                outs.append("")
                errors.append(f"cannot upscale '{src}': {e}")
                quality.append("")
        return {
            "src": np.asarray(batch["src"], dtype=object),
            "dst": np.asarray(outs, dtype=object),
            "error": np.asarray(errors, dtype=object),
            "quality": np.asarray(quality, dtype=object),  # JSON text of the image's report, or ""
        }

    def _guarded(self, img: Any, src: str, dst: Path, rel: Path) -> tuple[Any, str]:
        import json

        from ..inference import guarded

        assert self.guard is not None and self.choices is not None
        result, rep, unc = self.guard.upscale_image(img, source=src, outscale=self.outscale)
        rep.output = str(dst)
        if unc is not None and self.choices.uncertainty_dir is not None:
            guarded.write_heatmap(unc, guarded.uncertainty_path(Path(self.choices.uncertainty_dir), rel),
                                  self.choices.max_uncertainty_p99 or 12.0)
        return result, json.dumps(rep.to_dict(), allow_nan=False)


def run_ray_batch(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: str,
    *,
    address: Optional[str] = None,
    num_cpus: Optional[int] = None,
    concurrency: int = 1,
    batch_size: int = 4,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: Optional[float] = None,
    overwrite: bool = False,
    outscale: Optional[float] = None,
    ext: str = "auto",
    suffix: str = "",
    tile: Optional[int] = None,
    device: str = "auto",
    precision: str = "auto",
    quality: int = 95,
    max_pixels: Optional[int] = None,
    allow_download: bool = False,
    object_store_memory: Optional[int] = None,
    guard: Optional[dict[str, Any]] = None,
) -> RayBatchReport:
    """Upscale the images under ``src`` into ``dst`` with Ray Data; see the module docstring.

    ``address`` None starts a local cluster with ``num_cpus`` CPUs (shut down afterwards); otherwise
    connects to it (``auto``, ``ray://head:10001``, ``head:6379``). ``gpus_per_actor`` None means one GPU
    per actor when the cluster has GPUs and ``device`` allows CUDA. ``guard`` (GuardChoices fields): every
    actor runs the ensemble / quality gate / fallback; the per-image reports come back in ``quality``."""
    src_p, dst_p = Path(src).expanduser(), Path(dst).expanduser()
    if not src_p.exists():
        raise SuperresError(f"cannot read '{src_p}': no such file or folder")
    if concurrency < 1 or batch_size < 1:
        raise SuperresError("--concurrency and --batch-size must be at least 1")
    settings = _settings(model, outscale, quality, allow_download, guard)
    todo, skipped, refused, kept, records = plan_with_records(src_p, dst_p, ext, suffix, overwrite, settings)
    report = RayBatchReport(skipped=skipped, failed=refused, kept=kept)
    if not todo:
        return report
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise SuperresError(
            f"--engine ray needs the 'cluster' extra ({e}): {install_hint('cluster')}"
        ) from None

    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": worker_env()})
        else:
            ray.init(
                runtime_env={"env_vars": worker_env()},
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=object_store_memory,
            )
        started_here = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        if gpus_per_actor is None:
            has_gpu = ray.cluster_resources().get("GPU", 0) > 0
            gpus_per_actor = 1.0 if has_gpu and not device.startswith(("cpu", "mps")) else 0.0
        items = [{"src": str(f.resolve()), "rel": str(rel)} for f, rel in todo]
        blocks = min(
            len(items), max(concurrency, math.ceil(len(items) / batch_size))
        )  # every actor gets work
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        ds = ds.map_batches(
            UpscaleActor,
            fn_constructor_kwargs=dict(
                model=model,
                out_root=str(dst_p.resolve()),
                device=device,
                precision=precision,
                tile=tile,
                outscale=outscale,
                ext=ext,
                suffix=suffix,
                quality=quality,
                max_pixels=max_pixels,
                allow_download=allow_download,
                guard=guard,
            ),
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor,
            batch_format="numpy",
        )
        for row in ds.iter_rows():
            if row["error"]:
                report.failed.append((Path(row["src"]), str(row["error"])))
            else:
                report.done.append(Path(row["dst"]))
                if records is not None:
                    records.add(Path(row["dst"]), settings)
            if row.get("quality"):
                import json

                report.quality.append(json.loads(str(row["quality"])))
    finally:
        if started_here:
            ray.shutdown()
    return report
