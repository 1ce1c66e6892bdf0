"""Folder and glob processing: same tree out, skip finished outputs, overlap I/O with inference, and a
report of every failure instead of stopping at the first."""

from __future__ import annotations

import glob
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import SuperresError

if TYPE_CHECKING:  # pragma: no cover
    from ..io.image import ImageData
    from .upscaler import UpscaleOptions, Upscaler

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif", ".tga", ".ppm", ".pgm")
_ALPHA_FORMATS = (".png", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


@dataclass
class BatchReport:
    done: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def expand_inputs(inputs: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Files, folders (recursive) and globs -> (file, path relative to its root) pairs, in sorted order.

    A name that exists nowhere is kept so that it is reported as a failure, not silently dropped."""
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            pairs += [(f, f.relative_to(p)) for f in files]
        elif p.exists():
            pairs.append((p, Path(p.name)))
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            pairs += [(m, Path(m.name)) for m in matches if m.is_file()]
        else:
            pairs.append((p, Path(p.name)))
    return pairs


def output_path(rel: Path, out_dir: Path, ext: str, suffix: str, has_alpha: bool | None = None) -> Path:
    """Where ``rel`` goes: same relative folder, ``ext`` ("auto" keeps the input's format)."""
    src_ext = rel.suffix.lower()
    if ext == "auto":
        new = src_ext if src_ext in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp") else ".png"
    else:
        new = "." + ext.lower().lstrip(".")
    if has_alpha and new not in _ALPHA_FORMATS:
        new = ".png"
    return out_dir / rel.parent / f"{rel.stem}{suffix}{new}"


def run_batch(
    upscaler: "Upscaler",
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    *,
    ext: str = "auto",
    suffix: str = "",
    overwrite: bool = False,
    outscale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    quality: int = 95,
    max_pixels: int | None = None,
    options: "UpscaleOptions | None" = None,
    progress: Callable[[int, int, Path], None] | None = None,
) -> BatchReport:
    """Upscale many images. Reading the next image and writing the previous one run in threads beside
    the network; every output is written atomically; failures are collected, never fatal."""
    from ..io.image import read_image, write_image

    out_root = Path(out_dir)
    pairs = expand_inputs(inputs)
    report = BatchReport()
    total = len(pairs)
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}

    todo: list[tuple[Path, Path]] = []
    for src, rel in pairs:
        existing = None if overwrite else _existing_output(rel, out_root, suffix, ext)
        if existing is not None:
            report.skipped.append(Job(src, existing))
        else:
            todo.append((src, rel))

    loaded: queue.Queue[tuple[Path, Path, "ImageData | None", str | None] | None] = queue.Queue(maxsize=2)

    def reader() -> None:
        for src, rel in todo:
            try:
                loaded.put((src, rel, read_image(src, **kwargs), None))
            except SuperresError as e:
                loaded.put((src, rel, None, str(e)))
            except Exception as e:  # noqa: BLE001 - a batch reports, it doesn't die
                loaded.put((src, rel, None, f"cannot read '{src}': {e}"))
        loaded.put(None)

    threading.Thread(target=reader, name="superres-reader", daemon=True).start()
    writes: list[tuple[Job, Future[Path]]] = []
    count = len(report.skipped)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="superres-writer") as pool:
        while (item := loaded.get()) is not None:
            src, rel, img, err = item
            count += 1
            if progress:
                progress(count, total, src)
            if img is None:
                report.failed.append((src, err or "unreadable"))
                continue
            dst = output_path(rel, out_root, ext, suffix, has_alpha=img.alpha is not None)
            try:
                result = upscaler.upscale_image(img, outscale=outscale, width=width, height=height, options=options)
            except SuperresError as e:
                report.failed.append((src, str(e)))
                continue
            writes.append((Job(src, dst), pool.submit(write_image, result, dst, quality=quality)))
        for job, fut in writes:
            try:
                fut.result()
                report.done.append(job)
            except SuperresError as e:
                report.failed.append((job.src, str(e)))
            except Exception as e:  # noqa: BLE001
                report.failed.append((job.src, f"cannot write '{job.dst}': {e}"))
    return report


def _existing_output(rel: Path, out_root: Path, suffix: str, ext: str) -> Path | None:
    """With ``ext=auto`` the output may have become .png (alpha); either counts as done."""
    for candidate in (output_path(rel, out_root, ext, suffix), output_path(rel, out_root, ext, suffix, has_alpha=True)):
        if candidate.exists():
            return candidate
    return None
