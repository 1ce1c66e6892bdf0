"""Real-time path: frames from a file or camera through a background inference thread.

A live source does not wait for us: when inference falls behind, the bounded queue fills and the oldest
waiting frame is dropped, so what is shown stays at most ``queue_size`` frames behind the camera instead
of drifting further every second. Reported: frames in / out / dropped, achieved output FPS, and the
capture-to-result latency (p50, p95), which is what a viewer feels.

A video file is paced at its own frame rate (``pace_fps``) to behave like a camera; without pacing and
with ``drop=False`` the run measures throughput (every frame processed, as fast as possible).
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

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


def bicubic_matrix(n_in: int, scale: int) -> np.ndarray:
    """``(n_in * scale, n_in)`` weights of PyTorch's bicubic upsampling along one axis (A = -0.75,
    half-pixel centres, edge samples repeated), so that ``M @ x`` equals ``F.interpolate(..., "bicubic")``
    for an integer ``scale``."""

    def cubic(d: float, a: float = -0.75) -> float:
        d = abs(d)
        if d <= 1.0:
            return (a + 2.0) * d**3 - (a + 3.0) * d**2 + 1.0
        return a * d**3 - 5.0 * a * d**2 + 8.0 * a * d - 4.0 * a if d < 2.0 else 0.0

    m = np.zeros((n_in * scale, n_in), dtype=np.float64)
    for o in range(n_in * scale):
        t = (o + 0.5) / scale - 0.5
        i0 = int(np.floor(t))
        f = t - i0
        for k, d in enumerate((1.0 + f, f, 1.0 - f, 2.0 - f)):
            m[o, min(max(i0 - 1 + k, 0), n_in - 1)] += cubic(d)
    return m


@functools.lru_cache(maxsize=8)
def _bicubic_taps(scale: int) -> np.ndarray:
    """``(scale, 5)``: the five taps of each output phase, read off an interior row of the matrix."""
    return bicubic_matrix(8, scale)[4 * scale:5 * scale, 2:7]


def bicubic_upscale_planes(x: Any, scale: int) -> Any:
    """``C x H x W`` float tensor -> ``C x sH x sW``, the values of ``F.interpolate(..., "bicubic")``.

    For an integer scale every output sample of one phase (its position modulo ``scale``) uses the same
    five taps (:func:`bicubic_matrix`'s interior rows) around its source pixel, so each axis is one small
    convolution with ``scale`` output channels after repeating two edge pixels, then an interleave:
    about three times faster on a CPU than ``F.interpolate``'s bicubic kernel at 320x180 -> 1280x720."""
    import torch
    import torch.nn.functional as F

    s = int(scale)
    c, h, w = x.shape
    taps = torch.tensor(_bicubic_taps(s), dtype=x.dtype, device=x.device)  # (s, 5)
    rows = F.conv1d(F.pad(x.reshape(c * h, 1, w), (2, 2), mode="replicate"), taps[:, None, :])
    rows = rows.transpose(1, 2).reshape(c, 1, h, s * w)  # (c*h, s, w) -> interleaved columns
    out = F.conv2d(F.pad(rows, (0, 0, 2, 2), mode="replicate"), taps[:, None, :, None])  # (c, s, h, s*w)
    return out.permute(0, 2, 1, 3).reshape(c, s * h, s * w)


def _ycbcr_to_rgb255() -> tuple[float, np.ndarray, np.ndarray]:
    """The inverse BT.601 conversion folded with the 0..255 output scale and the +0.5 of rounding: RGB =
    ``ky * Y + C @ (Cb, Cr) + bias`` (Y, Cb, Cr on the [0, 1] scale). Y's weight is the same for R, G and B
    (grey has Cb = Cr = neutral), so the network's luma is added once, broadcast over the channels."""
    from ..metrics.color import RGB_TO_YCBCR, YCBCR_OFFSET

    a = np.linalg.inv(RGB_TO_YCBCR) * 255.0 * 255.0
    bias = -a @ (YCBCR_OFFSET / 255.0) + 0.5
    return float(a[0, 0]), a[:, 1:], bias


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
