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
    for an integer ``scale``. As two matrix products a frame's chroma upscale runs on the BLAS, several
    times faster than ``F.interpolate``'s bicubic kernel on a CPU."""

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
    is arranged for the CPU: chroma is upscaled by two matrix products (:func:`bicubic_matrix`, the
    same values as ``F.interpolate``'s bicubic), and the colour conversion, the 0..255 scaling and the
    rounding are one 1x1 convolution writing channels-last memory, which is already the HxWx3 layout of
    the result (same bytes as converting with :func:`~superres.metrics.color.ycbcr_to_rgb` and rounding
    half up, except where float32 rounding lands a value on the other side of a .5)."""
    import torch
    import torch.nn.functional as F

    from ..metrics.color import rgb_to_ycbcr

    s = int(up.scale)
    luma = up.descriptor.in_channels == 1
    ky, chroma_np, bias_np = _ycbcr_to_rgb255()
    chroma_w = torch.tensor(chroma_np, dtype=torch.float32).reshape(3, 2, 1, 1)
    bias = torch.tensor(bias_np, dtype=torch.float32)
    mats: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def upscale_chroma(cbcr: torch.Tensor) -> torch.Tensor:
        h, w = cbcr.shape[-2:]
        if (h, w) not in mats:  # one pair per frame size; a stream keeps its size
            mats[(h, w)] = (torch.tensor(bicubic_matrix(h, s), dtype=torch.float32),
                            torch.tensor(bicubic_matrix(w, s).T.copy(), dtype=torch.float32))
        mh, mw_t = mats[(h, w)]
        return torch.matmul(mh, torch.matmul(cbcr, mw_t))  # rows, then columns: fewer multiplies this way

    def infer(frame: Frame) -> Frame:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().mul_(1.0 / 255.0)
            if luma:
                ycc = rgb_to_ycbcr(x)
                y = up.forward(ycc[None, :1].contiguous())
                cbcr = upscale_chroma(ycc[1:])[None].contiguous(memory_format=torch.channels_last)
                rgb = F.conv2d(cbcr, chroma_w, bias).add_(y.float(), alpha=ky)  # 0..255 + 0.5
                out = rgb.clamp_(0.0, 255.0).to(torch.uint8)  # truncation of v + 0.5 = round half up
                return out.permute(0, 2, 3, 1)[0].contiguous().numpy()
            rgb = up.forward(x[None].contiguous())[0]
            out = rgb.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).floor_().to(torch.uint8)
            return out.permute(1, 2, 0).contiguous().numpy()

    return infer
