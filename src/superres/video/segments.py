"""Segments: a long video cut at keyframes into pieces of a few seconds, each encoded to its own file beside
the output and renamed into place only when complete.

A killed run (``kill -9``, a lost machine) loses at most the segment it was writing: the same command finds
the finished segment files and starts at the first missing one. The files carry a key made from everything
that decides their content (input file, model, size, encoder settings), so a changed command never reuses
another's segments. One run at a time writes an output: a lock file (``flock``, released by the kernel when
a process dies) says whose the leftovers are, so a rerun removes a killed run's temporaries but never those
of a run still going.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import SuperresError
from ..io.atomic import TEMP_MARKER, remove_stale_temps
from .reading import FrameIndex

__all__ = ["Segment", "plan_segments", "SegmentFiles", "job_key", "output_lock"]

SEGMENT_MARKER = ".superres-seg-"
LOCK_SUFFIX = ".superres-lock"


@dataclass(frozen=True)
class Segment:
    """Frames ``start <= i < stop`` (presentation order); ``start`` is a closed-GOP keyframe, or any frame
    in a long group of pictures (then decoding starts at the keyframe before it)."""

    number: int
    start: int
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.start


def plan_segments(index: FrameIndex, seconds: float) -> list[Segment]:
    """Segments of about ``seconds`` (0: one segment).

    A segment ends at the first closed-GOP keyframe at least ``seconds`` after its start: there both the
    decode and our encode start clean. Where the next such keyframe is more than ``2 x seconds`` away (a
    long-GOP clip: a camera or streaming encode with one keyframe every 10 s, or only one), it ends at the
    first frame ``seconds`` after its start instead, unless less than half a segment would follow. Our
    output is encoded by us, so an output segment may start on any frame; decoding it starts at the
    keyframe before it (:func:`decode_frames` drops the frames before the segment), so the frames are those
    of an uninterrupted decode. Streams without timestamps decode in one piece (there is nothing to seek
    by)."""
    tb = index.time_base
    n = index.frame_count
    if seconds <= 0 or n == 0:
        return [Segment(0, 0, n)]
    span = Fraction(seconds)

    def after(a: int, b: int) -> Fraction:
        return (index.out_pts[b] - index.out_pts[a]) * tb

    cuts = sorted(c for c in index.cuts if c > 0)
    end = index.out_pts[-1] + index.durations[-1]
    bounds = [0]
    k = 0  # the first cut point not yet passed
    i = 1
    while i < n:
        if after(bounds[-1], i) < span:
            i += 1
            continue
        while k < len(cuts) and cuts[k] < i:
            k += 1
        if k < len(cuts) and after(bounds[-1], cuts[k]) <= 2 * span:
            i = cuts[k]  # a keyframe close enough: cut there
        elif not index.timed or (end - index.out_pts[i]) * tb < span / 2:
            break  # no tail segment of a few frames
        bounds.append(i)
        i += 1
    bounds.append(n)
    return [Segment(k, a, b) for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def job_key(**settings: Any) -> str:
    """A short digest of what decides the segments' bytes."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def input_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass(frozen=True)
class SegmentFiles:
    """Where the segments of one output live: ``.<output name>.superres-seg-<key>-<n>.nut`` beside it."""

    output: Path
    key: str

    def path(self, seg: Segment) -> Path:
        return self.output.parent / f".{self.output.name}{SEGMENT_MARKER}{self.key}-{seg.number:05d}.nut"

    def done(self, seg: Segment) -> bool:
        return self.path(seg).is_file()

    def _mine(self) -> list[Path]:
        pattern = f".{glob.escape(self.output.name)}{SEGMENT_MARKER}*"
        return sorted(p for p in self.output.parent.glob(pattern) if p.is_file() and not p.is_symlink())

    def remove_stale(self) -> list[Path]:
        """Remove what an earlier run of this output left: temporaries of the output and of segments, and
        segments of another job key. Call only while holding :func:`output_lock`."""
        removed = remove_stale_temps(self.output.parent, recursive=False, name=self.output.name)
        prefix = f".{self.output.name}{SEGMENT_MARKER}{self.key}-"
        for p in self._mine():
            if TEMP_MARKER in p.name or not p.name.startswith(prefix):
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
        # a segment's own temporary is ".<segment name>.superres-tmp-...": one more dot in front
        for p in self.output.parent.glob(f"..{glob.escape(self.output.name)}{SEGMENT_MARKER}*{TEMP_MARKER}*"):
            if p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
        return removed

    def remove_all(self) -> None:
        for p in self._mine():
            with contextlib.suppress(OSError):
                p.unlink()


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[Path]:
    """Hold ``.<output name>.superres-lock`` for the run; a second run on the same output gets one line."""
    import fcntl

    output.parent.mkdir(parents=True, exist_ok=True)
    lock = output.parent / f".{output.name}{LOCK_SUFFIX}"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SuperresError(f"another superres run is writing '{output}' (lock {lock.name}); "
                                "wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield lock
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)
