"""The frame pipeline: decode, network and encode in their own threads, joined by bounded queues.

Decoding and encoding (FFmpeg, which releases the GIL) then run while the network computes, and at most
``queue_size`` frames wait on each side, so memory does not grow with the video's length. The network runs
in the calling thread (Ctrl-C and SIGTERM arrive there); it takes up to ``batch_size`` frames of one
segment at a time. Each segment is written by :func:`encode_segment` to a temporary file renamed into place
when complete, and gets a fresh temporal filter, so a resumed run writes the same bytes as an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..io.atomic import atomic_write
from .reading import decode_frames

__all__ = ["run_pipeline"]

_END = object()
FrameFn = Callable[[list[np.ndarray]], list[np.ndarray]]


class _Stopped(Exception):
    """Another stage failed or the run was interrupted: leave quietly."""


class _Channel:
    """A bounded queue whose waits give up when the run is stopping."""

    def __init__(self, size: int, stop: threading.Event) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.stop = stop

    def put(self, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                continue

    def get_nowait(self) -> Any:
        return self.q.get_nowait()


#: How much nicer than the network the decode and encode threads run (Linux; 0: the same).
CODEC_NICE = 5


def _lower_priority(step: int) -> None:
    """Run this thread, and the codec threads it starts (x264's, FFmpeg's frame threads: they inherit it),
    ``step`` nice levels below the network. On a few cores the network's parallel regions then stall less
    for a codec thread that took one of their cores: decode and encode fill the gaps, and when they fall
    behind, the bounded queues stop the network until they catch up."""
    if step <= 0 or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))


def _to_float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0)


def _from_float(a: np.ndarray, like: np.dtype) -> np.ndarray:
    maxv = 65535.0 if like == np.uint16 else 255.0
    return np.floor(np.clip(a, 0.0, 1.0) * maxv + 0.5).astype(like)


def encode_segment(job: Any, seg: Any, frames: Iterator[tuple[int, np.ndarray, np.ndarray]],
                   on_frame: Callable[[], None] | None = None) -> None:
    """Encode ``frames`` ((index, lr, sr) in order) as segment ``seg`` of ``job``, atomically."""
    from .writing import SegmentEncoder

    index = job.index
    filt = job.make_temporal()
    with atomic_write(job.files.path(seg), tmp_suffix=".nut") as tmp:
        enc = SegmentEncoder(tmp, index, job.settings, job.fmt)
        try:
            waiting: deque[int] = deque()
            dtype: Any = None

            def emit(outs: list[np.ndarray]) -> None:
                for out in outs:
                    i = waiting.popleft()
                    enc.encode(_from_float(out, dtype), index.out_pts[i], index.durations[i])
                    if on_frame is not None:
                        on_frame()

            for i, lr, sr in frames:
                if filt is None:
                    enc.encode(sr, index.out_pts[i], index.durations[i])
                    if on_frame is not None:
                        on_frame()
                    continue
                dtype = sr.dtype
                waiting.append(i)
                emit(filt.push(_to_float(lr), _to_float(sr)))
            if filt is not None and waiting:
                emit(filt.flush())
            enc.close()
        except BaseException:
            enc.abort()
            raise


def _runs(segments: list[Any]) -> list[list[Any]]:
    """``segments`` grouped into runs where each starts where the previous one stopped."""
    runs: list[list[Any]] = []
    for seg in segments:
        if runs and runs[-1][-1].stop == seg.start:
            runs[-1].append(seg)
        else:
            runs.append([seg])
    return runs


def run_pipeline(job: Any, todo: list[Any], frame_fn: FrameFn, *, batch_size: int = 1, queue_size: int = 4,
                 on_frame: Callable[[], None] | None = None, codec_nice: int = CODEC_NICE) -> None:
    """Upscale and encode the segments ``todo`` of ``job`` (a :class:`superres.video.engine.VideoJob`);
    decode and encode run ``codec_nice`` levels below the network (see :func:`_lower_priority`)."""
    from .engine import check_frames

    stop = threading.Event()
    errors: list[BaseException] = []
    decoded = _Channel(queue_size, stop)
    upscaled = _Channel(queue_size, stop)

    def guard(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except _Stopped:
                pass
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(e)
                stop.set()
        return run

    def decoder() -> None:
        _lower_priority(codec_nice)
        # Consecutive segments are decoded in one pass: a segment inside a long group of pictures would
        # otherwise decode again from the keyframe before it (quadratic in a clip with one keyframe).
        for run in _runs(todo):
            k = 0
            decoded.put(("start", run[0]))
            for i, rgb in decode_frames(job.src, job.index, run[0].start, run[-1].stop):
                while i >= run[k].stop:
                    decoded.put(("end", run[k]))
                    k += 1
                    decoded.put(("start", run[k]))
                decoded.put(("frame", i, rgb))
            for seg in run[k:]:
                decoded.put(("end", seg))
                if seg is not run[-1]:
                    decoded.put(("start", run[run.index(seg) + 1]))
        decoded.put(_END)

    def encoder() -> None:
        _lower_priority(codec_nice)
        while True:
            item = upscaled.get()
            if item is _END:
                return
            _, seg = item  # a "start"

            def frames() -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
                while True:
                    nxt = upscaled.get()
                    if nxt[0] == "end":
                        return
                    yield nxt[1], nxt[2], nxt[3]

            encode_segment(job, seg, frames(), on_frame)

    threads = [threading.Thread(target=guard(decoder), name="superres-decode", daemon=True),
               threading.Thread(target=guard(encoder), name="superres-encode", daemon=True)]
    for t in threads:
        t.start()
    try:
        pending: Any = None
        while True:
            item = pending if pending is not None else decoded.get()
            pending = None
            if item is _END or item[0] != "frame":
                upscaled.put(item)
                if item is _END:
                    break
                continue
            batch = [item]
            while len(batch) < batch_size:
                try:
                    nxt = decoded.get_nowait()
                except queue.Empty:
                    break
                if nxt is _END or nxt[0] != "frame":
                    pending = nxt
                    break
                batch.append(nxt)
            outs = check_frames(frame_fn([b[2] for b in batch]), len(batch), job.size, batch[0][2].dtype)
            for b, out in zip(batch, outs, strict=True):
                upscaled.put(("frame", b[1], b[2], out))
        threads[1].join()
    except _Stopped:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        if errors or not threads[1].is_alive():
            stop.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
