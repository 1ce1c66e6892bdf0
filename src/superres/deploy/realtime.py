"""Real-time path: frames from a file or camera through a background inference thread.

A live source does not wait for us: when inference falls behind, the bounded queue fills and the oldest
waiting frame is dropped, so what is shown stays at most ``queue_size`` frames behind the camera instead
of drifting further every second. Reported: frames in / out / dropped, achieved output FPS, and the
capture-to-result latency (p50, p95), which is what a viewer feels.

A video file is paced at its own frame rate (``pace_fps``) to behave like a camera; without pacing and
with ``drop=False`` the run measures throughput (every frame processed, as fast as possible).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..inference.frames import bicubic_matrix, bicubic_upscale_planes  # noqa: F401 - re-exported
from ..inference.frames import ycbcr_to_rgb255 as _ycbcr_to_rgb255
from .common import DeployError

Frame = np.ndarray
_END = object()


@dataclass(frozen=True)
class RealtimeStats:
    """What a run achieved; latencies are capture (frame read) to result (inference done)."""

    frames_in: int
    frames_out: int
    dropped: int
    seconds: float
    fps: float
    latency_ms_p50: float
    latency_ms_p95: float
    infer_ms_p50: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.frames_out}/{self.frames_in} frames out ({self.dropped} dropped) in {self.seconds:.2f} s:"
            f" {self.fps:.1f} FPS, latency p50 {self.latency_ms_p50:.1f} ms, p95 {self.latency_ms_p95:.1f}"
            f" ms, inference p50 {self.infer_ms_p50:.1f} ms"
        )


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_realtime(
    frames: Iterable[Frame],
    infer: Callable[[Frame], Frame],
    *,
    queue_size: int = 2,
    drop: bool = True,
    pace_fps: float | None = None,
    max_frames: int | None = None,
    sink: Callable[[Frame], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> RealtimeStats:
    """Feed ``frames`` (read in this thread) to ``infer`` running in a background thread.

    ``drop``: when the queue is full, discard the oldest waiting frame (live behaviour); else wait.
    ``pace_fps``: release frames at this rate, like a camera (None: as fast as they are read).
    ``sink``: called with each result in the inference thread (display, encoder, network)."""
    if queue_size < 1:
        raise DeployError(f"queue size must be at least 1, not {queue_size}")
    q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
    latencies: list[float] = []
    infer_times: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        while True:
            item = q.get()
            if item is _END:
                return
            captured, frame = item
            try:
                t0 = clock()
                out = infer(frame)
                t1 = clock()
                if sink is not None:
                    sink(out)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)
                stop.set()
                return
            infer_times.append(t1 - t0)
            latencies.append(clock() - captured)

    thread = threading.Thread(target=worker, name="superres-realtime", daemon=True)
    start = clock()
    thread.start()
    frames_in = dropped = 0
    try:
        for frame in frames:
            if stop.is_set() or (max_frames is not None and frames_in >= max_frames):
                break
            if pace_fps:
                wait = start + frames_in / pace_fps - clock()
                if wait > 0:
                    time.sleep(wait)
            frames_in += 1
            item = (clock(), frame)
            if not drop:
                q.put(item)
                continue
            while True:
                try:
                    q.put_nowait(item)
                    break
                except queue.Full:
                    try:
                        q.get_nowait()  # the oldest waiting frame is the least useful one
                        dropped += 1
                    except queue.Empty:
                        pass
    finally:
        while thread.is_alive():
            try:
                q.put(_END, timeout=0.05)
                break
            except queue.Full:
                if stop.is_set():
                    break
        thread.join()
    if errors:
        raise errors[0]
    seconds = clock() - start
    out = len(latencies)
    return RealtimeStats(
        frames_in,
        out,
        dropped,
        seconds,
        out / seconds if seconds > 0 else 0.0,
        _pct(latencies, 50) * 1e3,
        _pct(latencies, 95) * 1e3,
        _pct(infer_times, 50) * 1e3,
    )


def retain_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Ask glibc's allocator to keep freed memory (up to ``limit_bytes``) for reuse instead of returning it
    to the kernel. Each 720p frame allocates several multi-megabyte buffers (network activations, chroma,
    colour planes); by default each is a fresh ``mmap``, faulted in and zeroed page by page, then
    unmapped. Measured on this project's 2-core CPU with ``espcn-m-x4``: 7,200 page faults and ~18 ms of
    kernel time per frame, 35 ms -> 22.5 ms per frame with this set. Process-wide and glibc only (else a
    no-op, returning False); memory use stays at the peak working set of one frame."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's malloc.h
    limit = int(min(limit_bytes, (1 << 31) - 1))
    ok = all(mallopt(opt, val) == 1 for opt, val in (
        (m_mmap_threshold, min(limit, 32 << 20)),  # glibc caps the mmap threshold at 32 MiB on 64-bit
        (m_trim_threshold, limit),
        (m_top_pad, 64 << 20),
    ))
    return ok


# ---- sources -------------------------------------------------------------------------------------------


def _require_av() -> Any:
    from .common import require

    return require("av", "reading video and cameras")


def is_camera(spec: str) -> bool:
    return spec.isdigit() or spec.startswith("/dev/video")


def open_frames(
    spec: str, *, size: tuple[int, int] | None = None, fps: float | None = None
) -> tuple[Iterator[Frame], float | None]:
    """RGB uint8 frames from a video file or a camera (``/dev/videoN`` or ``N``, via FFmpeg's v4l2);
    returns (frames, the source's frame rate or None). ``size`` (w, h) asks a camera for that mode."""
    av = _require_av()
    if is_camera(spec):
        device = f"/dev/video{spec}" if spec.isdigit() else spec
        opts = {}
        if size:
            opts["video_size"] = f"{size[0]}x{size[1]}"
        if fps:
            opts["framerate"] = str(fps)
        try:
            container = av.open(device, format="v4l2", options=opts)
        except Exception as e:  # noqa: BLE001 - FFmpeg errors: no such device, busy, unsupported mode
            raise DeployError(f"cannot open camera '{device}': {str(e).splitlines()[0]}") from None
    else:
        if not Path(spec).is_file():
            raise DeployError(f"video not found: '{spec}'")
        try:
            container = av.open(spec)
        except Exception as e:  # noqa: BLE001
            raise DeployError(f"cannot read video '{spec}': {str(e).splitlines()[0]}") from None
    if not container.streams.video:
        container.close()
        raise DeployError(f"'{spec}' has no video stream")
    stream = container.streams.video[0]
    rate = float(stream.average_rate) if stream.average_rate else None

    def gen() -> Iterator[Frame]:
        try:
            for f in container.decode(stream):
                yield f.to_ndarray(format="rgb24")
        finally:
            container.close()

    return gen(), rate


def upscaler_infer(up: Any) -> Callable[[Frame], Frame]:
    """One whole RGB uint8 frame through an Upscaler's network, no tiling (frames are small and latency
    matters), in float32 torch end to end: the still-image path's float64 colour handling costs more
    than a small network at 720p. Luma (1-channel) models get Y through the network and bicubic chroma,
    with the same BT.601 matrices as :mod:`superres.metrics.color`.

    For luma models the work around the network is what limits the frame rate of a small model, so it
    is arranged for the CPU: chroma is upscaled by :func:`bicubic_upscale_planes` (the same values as
    ``F.interpolate``'s bicubic), and the colour conversion, the 0..255 scaling and the
    rounding are one matrix product and one add over the planes; only the uint8 result is transposed to
    HxWx3 (same bytes as converting with :func:`~superres.metrics.color.ycbcr_to_rgb` and rounding half
    up, except where float32 rounding lands a value on the other side of a .5)."""
    import torch

    from ..metrics.color import rgb_to_ycbcr

    s = int(up.scale)
    luma = up.descriptor.in_channels == 1
    ky, chroma_np, bias_np = _ycbcr_to_rgb255()
    chroma_w = torch.tensor(chroma_np, dtype=torch.float32)
    bias = torch.tensor(bias_np, dtype=torch.float32)[:, None]

    def infer(frame: Frame) -> Frame:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().mul_(1.0 / 255.0)
            if luma:
                ycc = rgb_to_ycbcr(x)
                y = up.forward(ycc[None, :1].contiguous())
                cbcr = bicubic_upscale_planes(ycc[1:], s)
                h, w = cbcr.shape[-2:]
                rgb = torch.addmm(bias, chroma_w, cbcr.reshape(2, h * w))  # 3 x HW, 0..255 + 0.5
                rgb.add_(y.reshape(1, h * w), alpha=ky)
                out = rgb.clamp_(0.0, 255.0).to(torch.uint8)  # truncation of v + 0.5 = round half up
                return out.reshape(3, h, w).permute(1, 2, 0).contiguous().numpy()
            rgb = up.forward(x[None].contiguous())[0]
            out = rgb.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).floor_().to(torch.uint8)
            return out.permute(1, 2, 0).contiguous().numpy()

    return infer
