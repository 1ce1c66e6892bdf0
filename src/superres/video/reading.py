"""Reading a video: open and check, index the frames' timestamps and keyframes without decoding, decode a
range of frames to RGB with the colours the file is tagged with.

The index (one pass over the video packets, no decoding) is what lets everything else be planned before a
model loads: frame count and rate for the headers, variable frame rate, keyframe-aligned segments, and the
exact output timestamp of every frame. Frames keep the presentation timestamp of the input frame they come
from, so frame count, rate (variable too) and duration are the source's.

PyAV is an optional dependency (``pip install "superres[video]"``), imported inside the functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SuperresError, one_line

__all__ = ["ColourTags", "FrameIndex", "VideoInfo", "require_av", "open_input", "probe_video", "index_video",
           "decode_frames", "EXPECTED"]

EXPECTED = "expected MP4, MKV, MOV, WebM, AVI..."

# AVColorSpace (the stream tag) -> swscale matrix name, for converting YUV <-> RGB.
SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_AVCOL_SPC_BT709, _AVCOL_SPC_SMPTE170M = 1, 6
AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG = 1, 2
#: Largest decoded frame accepted (a header may declare 65535 x 65535 in a 1 kB file).
MAX_FRAME_PIXELS = 8192 * 8192


def require_av() -> Any:
    try:
        import av
    except ImportError:
        from ..errors import install_hint

        raise SuperresError(f"video needs PyAV: {install_hint('video')}") from None
    return av


def open_input(path: Path) -> Any:
    """An open PyAV container with at least one video stream, or a one-line ``SuperresError``."""
    av = require_av()
    where = f"cannot read video '{path}'"
    if not path.exists():
        raise SuperresError(f"{where}: file not found")
    if path.is_dir():
        raise SuperresError(f"{where}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise SuperresError(f"{where}: file is empty ({EXPECTED})")
    try:
        container = av.open(str(path), "r")
    except PermissionError:
        raise SuperresError(f"{where}: permission denied") from None
    except (av.FFmpegError, OSError, ValueError) as e:
        raise SuperresError(f"{where}: not a video file or unsupported format ({EXPECTED})") from e
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
        container.close()
        raise SuperresError(f"{where}: no video stream (it holds {kinds}; {EXPECTED})")
    vs = container.streams.video[0]
    if vs.codec_context is None:  # FFmpeg has no decoder for it
        tag = getattr(vs, "codec_tag", "") or "unknown"
        container.close()
        raise SuperresError(f"{where}: unsupported video codec ({tag}); convert it first, e.g. to H.264")
    return container


@dataclass(frozen=True)
class ColourTags:
    """How the input's YUV maps to RGB (``colorspace``/``color_range`` as used, untagged resolved the way
    players do) and the tags carried to the output unchanged (primaries, transfer: no tone-mapping)."""

    colorspace: int
    color_range: int
    primaries: int
    trc: int

    @property
    def matrix(self) -> str:
        return SWS_MATRIX[self.colorspace]

    @property
    def range_name(self) -> str:
        return "JPEG" if self.color_range == AVCOL_RANGE_JPEG else "MPEG"


def colour_tags(cc: Any) -> ColourTags:
    tagged = int(cc.colorspace) in SWS_MATRIX
    # Untagged video: players pick BT.709 from 720 lines up, BT.601 below; decode as they show it.
    space = int(cc.colorspace) if tagged else (_AVCOL_SPC_BT709 if cc.height >= 720 else _AVCOL_SPC_SMPTE170M)
    rng = AVCOL_RANGE_JPEG if int(cc.color_range) == AVCOL_RANGE_JPEG else AVCOL_RANGE_MPEG
    return ColourTags(space, rng, int(cc.color_primaries), int(cc.color_trc))


@dataclass(frozen=True)
class VideoInfo:
    """What a user wants to know before committing to a long run."""

    width: int
    height: int
    fps: Fraction
    frame_count: int | None  # None when the container doesn't say
    duration: float | None  # seconds
    has_audio: bool
    video_codec: str
    audio_codec: str | None
    container: str
    pix_fmt: str = "yuv420p"
    bit_depth: int = 8


def stream_fps(stream: Any) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def bit_depth(pix_fmt: str) -> int:
    """8 for the usual formats, 10/12/16 for the high-bit-depth ones (yuv420p10le, p010le, ...)."""
    for depth in (16, 12, 10):
        if f"p{depth}" in pix_fmt or f"{depth}le" in pix_fmt or f"{depth}be" in pix_fmt:
            return depth
    return 16 if pix_fmt in ("rgb48le", "rgb48be", "gray16le") else 8


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Size, frame rate, frame count, duration and streams of a video, without decoding it."""
    container = open_input(Path(path))
    try:
        vs = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        duration: float | None = None
        if vs.duration is not None and vs.time_base:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        cc = vs.codec_context
        fmt = cc.format.name if cc.format is not None else "yuv420p"
        return VideoInfo(
            width=int(cc.width),
            height=int(cc.height),
            fps=stream_fps(vs),
            frame_count=int(vs.frames) or None,
            duration=duration,
            has_audio=audio is not None,
            video_codec=cc.name,
            audio_codec=None if audio is None else audio.codec_context.name,
            container=container.format.name,
            pix_fmt=fmt,
            bit_depth=bit_depth(fmt),
        )
    finally:
        container.close()


@dataclass(frozen=True)
class FrameIndex:
    """Every frame of the video stream, known from its packets: presentation timestamps in presentation
    order, the keyframes that are safe cut points, and each frame's output timestamp and duration."""

    width: int
    height: int
    pix_fmt: str
    fps: Fraction
    in_time_base: Fraction
    time_base: Fraction  # of the output (the input's, refined when it cannot hold exact frame times)
    pts: tuple[int, ...]  # input pts, sorted
    out_pts: tuple[int, ...]  # output pts, same order
    durations: tuple[int, ...]  # output ticks
    cuts: tuple[int, ...]  # indexes into pts where a closed group of pictures starts (0 first)
    vfr: bool
    colours: ColourTags
    rotation: int
    timed: bool = True  # False: the packets carry no timestamps (raw streams); frames go in decode order

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    @property
    def bit_depth(self) -> int:
        return bit_depth(self.pix_fmt)


def _output_time_base(in_tb: Fraction, fps: Fraction) -> Fraction:
    """The input's time base, refined when it cannot express one frame exactly (1/1000 at 24000/1001):
    the finest of the two (lcm of denominators) holds both the input timestamps and exact frame times."""
    frame = 1 / fps
    if (frame / in_tb).denominator == 1 or in_tb.numerator != 1:
        return in_tb
    denom = math.lcm(in_tb.denominator, fps.numerator)
    return Fraction(1, denom) if denom <= 10_000_000 and (frame * denom).denominator == 1 else in_tb


def index_video(path: str | os.PathLike[str], *, max_frames: int = 2_000_000) -> FrameIndex:
    """Read the video packets (no decoding, except the first frame for its rotation) and index them.

    Refuses, with one line, a stream with no frames, more than ``max_frames`` (bounded memory), or a
    declared frame size over ``MAX_FRAME_PIXELS``."""
    av = require_av()
    p = Path(path)
    where = f"cannot read video '{p}'"
    container = open_input(p)
    try:
        vs = container.streams.video[0]
        cc = vs.codec_context
        w, h = int(cc.width), int(cc.height)
        if w < 1 or h < 1:
            raise SuperresError(f"{where}: the video stream declares no frame size ({w}x{h})")
        if w * h > MAX_FRAME_PIXELS:
            raise SuperresError(f"{where}: declared frame size {w}x{h} is larger than this tool accepts "
                                f"({MAX_FRAME_PIXELS // 8192}x8192 pixels at most)")
        fps = stream_fps(vs)
        in_tb = Fraction(vs.time_base) if vs.time_base else 1 / fps
        decode_order: list[tuple[int | None, bool]] = []
        rotation = 0
        try:
            for packet in container.demux(vs):
                if packet.size == 0:
                    continue
                decode_order.append((packet.pts, bool(packet.is_keyframe)))
                if len(decode_order) > max_frames:
                    raise SuperresError(f"{where}: more than {max_frames:,} frames")
        except av.FFmpegError as e:
            if not decode_order:
                raise SuperresError(f"{where}: no readable video packet ({one_line(e)})") from e
        if not decode_order:
            raise SuperresError(f"{where}: the video stream has no frames")
        try:
            container.seek(0)
            first = next(container.decode(vs), None)
            if first is None:
                raise SuperresError(f"{where}: no frame could be decoded")
            rotation = int(getattr(first, "rotation", 0) or 0)
        except av.FFmpegError as e:
            raise SuperresError(f"{where}: no frame could be decoded ({one_line(e)})") from e
        fmt = cc.format.name if cc.format is not None else "yuv420p"
        colours = colour_tags(cc)
    finally:
        container.close()
    return _build_index(decode_order, w, h, fmt, fps, in_tb, colours, rotation)


def _build_index(decode_order: list[tuple[int | None, bool]], w: int, h: int, fmt: str, fps: Fraction,
                 in_tb: Fraction, colours: ColourTags, rotation: int) -> FrameIndex:
    tb = _output_time_base(in_tb, fps)
    ratio = in_tb / tb  # an integer: see _output_time_base
    frame_ticks = (1 / fps) / tb
    step = max(1, round(frame_ticks))
    # Raw streams (no timestamps) and broken muxers (two frames at one time): frames in decode order at the
    # nominal rate, rather than frames lost.
    if any(pts is None for pts, _ in decode_order) or len({p for p, _ in decode_order}) < len(decode_order):
        n = len(decode_order)
        pts_in = tuple(range(n))
        out = tuple(i * step for i in range(n))
        return FrameIndex(w, h, fmt, fps, in_tb, tb, pts_in, out, (step,) * n, (0,), False, colours, rotation,
                          timed=False)
    pts_sorted = sorted({int(p) for p, _ in decode_order})  # type: ignore[arg-type]
    out_pts = [int(round(p * ratio)) for p in pts_sorted]
    # Constant-rate input in a coarse time base (Matroska's milliseconds): snap to exact frame times, so
    # 23.976 fps stays 24000/1001 instead of becoming the rate of the rounded milliseconds.
    if frame_ticks.denominator == 1 and ratio > 1:
        first = out_pts[0]
        if all(abs(o - (first + i * step)) <= ratio for i, o in enumerate(out_pts)):
            out_pts = [first + i * step for i in range(len(out_pts))]
    durations = [b - a for a, b in zip(out_pts, out_pts[1:])] + [step]
    vfr = any(abs(d - step) > max(1, ratio) for d in durations[:-1])
    # A keyframe is a cut point when everything before it in decode order shows before it and everything
    # after shows after it (a closed group of pictures): then segments decode and encode independently.
    position = {p: i for i, p in enumerate(pts_sorted)}
    cuts = [0]
    seen_max = -1  # largest presentation index among the packets before this one in decode order
    order = [position[int(p)] for p, _ in decode_order]  # type: ignore[arg-type]
    suffix_min = [0] * (len(order) + 1)
    suffix_min[len(order)] = len(pts_sorted)
    for i in range(len(order) - 1, -1, -1):
        suffix_min[i] = min(order[i], suffix_min[i + 1])
    for i, ((_, key), idx) in enumerate(zip(decode_order, order)):
        if key and i > 0 and seen_max < idx and suffix_min[i] == idx and idx > 0:
            cuts.append(idx)
        seen_max = max(seen_max, idx)
    return FrameIndex(w, h, fmt, fps, in_tb, tb, tuple(pts_sorted), tuple(out_pts), tuple(durations),
                      tuple(sorted(set(cuts))), vfr, colours, rotation)


def decode_frames(path: Path, index: FrameIndex, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    """Frames ``start <= i < stop`` of the index as (i, RGB array): uint8, or uint16 for inputs above 8 bits.

    Seeks to the last cut point (closed-GOP keyframe) at or before ``start`` and decodes forward, dropping the
    frames before ``start``, until every wanted frame is out: a segment may start inside a group of pictures
    and still get exactly the frames an uninterrupted decode gives. A frame the decoder cannot produce
    (damaged data) is skipped; a stream that ends early just ends."""
    av = require_av()
    where = f"cannot read video '{path}'"
    wanted = {index.pts[i]: i for i in range(start, stop)}
    fmt = "rgb48le" if index.bit_depth > 8 else "rgb24"
    matrix, rng = index.colours.matrix, index.colours.range_name
    container = open_input(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        key = max((c for c in index.cuts if c <= start), default=0)
        if key > 0 and index.timed:
            container.seek(index.pts[key], stream=vs, backward=True, any_frame=False)
        untimed = not index.timed
        count = 0
        try:
            for frame in container.decode(vs):
                if untimed:
                    i = count
                    count += 1
                elif frame.pts is None:
                    continue
                else:
                    i = wanted.pop(int(frame.pts), -1)
                if not start <= i < stop:
                    continue
                if frame.width * frame.height > MAX_FRAME_PIXELS:
                    raise SuperresError(
                        f"{where}: frame {i} is {frame.width}x{frame.height}, larger than declared")
                if (frame.width, frame.height) != (index.width, index.height):
                    frame = frame.reformat(width=index.width, height=index.height)
                rgb = frame.to_ndarray(format=fmt, src_colorspace=matrix, src_color_range=rng)
                yield i, rgb
                if not untimed and not wanted:
                    return
                if untimed and count >= stop:
                    return
        except av.FFmpegError as e:
            raise SuperresError(f"{where}: decoding failed near frame {start + count} ({one_line(e)})") from e
    finally:
        container.close()
