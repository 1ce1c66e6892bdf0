"""One video job from start to end: everything checked and planned before a model loads
(:func:`prepare_video`), then the segments not yet on disk upscaled through the pipeline and the output
assembled (:func:`run_video`). The Ray engine runs the same segments elsewhere and then the same assembly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SuperresError, one_line
from .formats import OutputFormat, check_output, choose_pix_fmt
from .reading import FrameIndex, index_video, require_av
from .segments import Segment, SegmentFiles, input_identity, job_key, output_lock, plan_segments
from .writing import EncodeSettings

__all__ = ["VideoJob", "VideoResult", "prepare_video", "run_video", "finish_video", "process_video"]

DEFAULT_SEGMENT_SECONDS = 4.0


@dataclass(frozen=True)
class VideoJob:
    """A planned run; plain data, so it travels to Ray workers."""

    src: Path
    dst: Path
    fmt: OutputFormat
    index: FrameIndex
    segments: tuple[Segment, ...]
    files: SegmentFiles
    settings: EncodeSettings
    overwrite: bool = False
    temporal: str = "off"
    temporal_strength: float | None = None
    scale: int = 4

    @property
    def size(self) -> tuple[int, int]:
        return self.settings.width, self.settings.height

    def make_temporal(self) -> Any:
        """A fresh temporal filter for one segment (None when off)."""
        if self.temporal == "off":
            return None
        from .temporal import make_temporal  # type: ignore[import-not-found]  # the temporal room

        return make_temporal(self.temporal, scale=self.scale, strength=self.temporal_strength)


@dataclass
class VideoResult:
    output: Path
    frames: int
    segments: int
    reused: int  # segments found finished on disk (a resumed run)
    processed: int  # frames upscaled by this run
    cleaned: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def prepare_video(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                  size: Callable[[int, int], tuple[int, int]], model_id: str, scale: int,
                  codec: str | None = None, crf: int = 18, preset: str = "medium",
                  overwrite: bool = False, segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
                  temporal: str = "off", temporal_strength: float | None = None,
                  even: bool = True) -> VideoJob:
    """Read and check everything a run needs, without a model: the output name, container and encoder; the
    input's frames, timestamps and cut points; the output size (``size(w, h)``, checked by the caller's
    limits). Raises a one-line ``SuperresError`` for anything the run could not do."""
    src_p, dst_p = Path(src), Path(dst)
    check_output(src_p, dst_p, codec=codec, overwrite=overwrite)  # name checks first: cheapest
    index = index_video(src_p)
    fmt = check_output(src_p, dst_p, codec=codec, overwrite=overwrite, in_pix_fmt=index.pix_fmt)
    if fmt.frame_indexed and index.vfr:
        raise SuperresError(f"cannot write video '{dst_p}': the input has a variable frame rate and AVI "
                            "can only hold a constant one; write .mkv or .mp4")
    w, h = size(index.width, index.height)
    pix_fmt = choose_pix_fmt(fmt.codec, index.pix_fmt)
    if pix_fmt.startswith(("yuv420", "nv12", "p010")) and (w % 2 or h % 2):
        if not even:
            raise SuperresError(
                f"cannot write video '{dst_p}': {pix_fmt} needs an even frame size, got {w}x{h}")
        w, h = max(2, w - w % 2), max(2, h - h % 2)  # 4:2:0 needs even sides
    settings = EncodeSettings(fmt.codec, pix_fmt, crf, preset, w, h, no_reorder=fmt.frame_indexed)
    segments = plan_segments(index, segment_seconds)
    key = job_key(input=input_identity(src_p), model=model_id, settings=settings, temporal=temporal,
                  strength=temporal_strength, segments=[(s.start, s.stop) for s in segments],
                  muxer=fmt.muxer)
    return VideoJob(src_p, dst_p, fmt, index, tuple(segments), SegmentFiles(dst_p, key), settings, overwrite,
                    temporal, temporal_strength, scale)


def finish_video(job: VideoJob) -> list[str]:
    """Assemble the finished segments into the output (atomically) and remove them."""
    from ..io.atomic import atomic_write
    from ..io.image import os_reason
    from .writing import assemble

    av = require_av()
    missing = [s.number for s in job.segments if not job.files.done(s)]
    if missing:
        raise SuperresError(f"cannot write video '{job.dst}': segment(s) {missing[:5]} not finished")
    where = f"cannot write video '{job.dst}'"
    tmp = job.dst
    try:
        with atomic_write(job.dst, overwrite=job.overwrite, tmp_suffix=".tmp" + job.dst.suffix) as tmp:
            notes = assemble(job.src, job.index, [job.files.path(s) for s in job.segments],
                             [s.start for s in job.segments], job.fmt, tmp)
    except av.FFmpegError as e:
        raise SuperresError(f"{where}: writing failed ({one_line(e).replace(str(tmp), str(job.dst))})") from e
    except FileExistsError:
        raise SuperresError(f"output '{job.dst}' exists; pass --overwrite to replace it") from None
    except OSError as e:
        raise SuperresError(f"{where}: {os_reason(e)}") from e
    job.files.remove_all()
    return notes


def run_video(job: VideoJob, frame_fn: Callable[[list[Any]], list[Any]], *, batch_size: int = 1,
              queue_size: int = 4, progress: Callable[[int, int], None] | None = None,
              engine: Callable[[VideoJob, list[Segment], Callable[[int], None]], None] | None = None,
              codec_nice: int | None = None) -> VideoResult:
    """Upscale the segments of ``job`` not yet on disk and assemble the output.

    ``frame_fn`` takes and returns lists of RGB frames (see :class:`superres.inference.frames.FrameUpscaler`).
    ``engine`` replaces the local pipeline (the Ray engine passes its own); ``progress(done, total)`` counts
    frames, finished segments of an earlier run included; ``codec_nice``: how many nice levels below the
    network decode and encode run (None: :data:`superres.video.pipeline.CODEC_NICE`, 0: the same)."""
    from .pipeline import run_pipeline

    av = require_av()
    total = job.index.frame_count
    with output_lock(job.dst):
        cleaned = job.files.remove_stale()
        todo = [s for s in job.segments if not job.files.done(s)]
        done = [total - sum(s.frames for s in todo)]
        if progress is not None:
            progress(done[0], total)

        def on_frames(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        try:
            if engine is not None:
                engine(job, todo, on_frames)
            elif todo:
                extra = {} if codec_nice is None else {"codec_nice": codec_nice}
                run_pipeline(job, todo, frame_fn, batch_size=batch_size, queue_size=queue_size,
                             on_frame=lambda: on_frames(1), **extra)
        except av.FFmpegError as e:
            raise SuperresError(f"cannot write video '{job.dst}': encoding failed ({one_line(e)})") from e
        notes = finish_video(job)
    return VideoResult(job.dst, total, len(job.segments), len(job.segments) - len(todo),
                       sum(s.frames for s in todo), cleaned, notes)


def process_video(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                  process_batch: Callable[[list[Any]], list[Any]], *, batch_size: int = 4,
                  codec: str | None = None, crf: int = 18, preset: str = "medium",
                  progress: Callable[[int, int], None] | None = None, overwrite: bool = True,
                  segment_seconds: float = DEFAULT_SEGMENT_SECONDS, key: str = "") -> Path:
    """Decode ``src`` to RGB frames (uint8, or uint16 above 8 bits), pass them through ``process_batch`` in
    batches of up to ``batch_size`` and write what comes back to ``dst`` (container from its suffix) with
    the input's timestamps, audio, subtitles, chapters and colour tags. The output size is that of
    ``process_batch``'s answer for the first frame. The output appears atomically.

    An interrupted call resumes when called again with the same arguments: finished segments are reused
    when the input, output, size, encoder settings and ``key`` (name what ``process_batch`` computes)
    match."""
    from .reading import decode_frames

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def size(w: int, h: int) -> tuple[int, int]:
        first = next(decode_frames(Path(src), index_video(src), 0, 1), None)
        if first is None:
            raise SuperresError(f"cannot read video '{src}': no frame could be decoded")
        out = check_frames(process_batch([first[1]]), 1, None)[0]
        return out.shape[1], out.shape[0]

    job = prepare_video(src, dst, size=size, model_id=f"callback:{key}", scale=1, codec=codec,
                        crf=crf, preset=preset, overwrite=overwrite, segment_seconds=segment_seconds,
                        even=False)
    run_video(job, process_batch, batch_size=batch_size, progress=progress)
    return Path(dst)


def check_frames(outs: Any, n: int, size: tuple[int, int] | None, like: Any = None) -> list[Any]:
    """What a frame function returned, checked (count, H x W x 3, size) and made uint8/uint16 like the
    input (floats are taken to be in [0, 1])."""
    import numpy as np

    if not isinstance(outs, (list, tuple)) or len(outs) != n:
        got = len(outs) if isinstance(outs, (list, tuple)) else type(outs).__name__
        raise SuperresError(f"process_batch returned {got} frames for a batch of {n}")
    checked = []
    dtype = np.dtype(like) if like is not None else None
    for out in outs:
        arr = np.asarray(out)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise SuperresError(f"process_batch must return H x W x 3 RGB frames, got shape {arr.shape}")
        if size is not None and (arr.shape[1], arr.shape[0]) != size:
            raise SuperresError(f"process_batch changed the frame size from {size[0]}x{size[1]} to "
                                f"{arr.shape[1]}x{arr.shape[0]}")
        if arr.dtype.kind == "f":
            target = dtype or np.dtype(np.uint8)
            maxv = 65535.0 if target == np.uint16 else 255.0
            arr = np.floor(np.clip(arr, 0.0, 1.0) * maxv + 0.5).astype(target)
        elif arr.dtype not in (np.uint8, np.uint16):
            raise SuperresError(f"process_batch must return uint8 or float frames, got {arr.dtype}")
        elif dtype is not None and arr.dtype != dtype:
            if dtype == np.uint16:
                arr = (arr.astype(np.uint32) * 257).astype(np.uint16)
            else:
                arr = (arr >> 8).astype(np.uint8)
        checked.append(np.ascontiguousarray(arr))
    return checked
