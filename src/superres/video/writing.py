"""Writing: encode one segment's frames to a NUT file, then assemble the output by remuxing the segments with
everything else the input holds (no second encode).

NUT keeps any codec and any time base exactly, so a segment's packets carry the final timestamps. The
assembly copies every audio track (transcoded only when the output container cannot hold its codec),
every subtitle track the container can hold, chapters, container and stream metadata and the display
rotation; the video stream is tagged with the input's colour primaries, transfer and matrix.
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .formats import OutputFormat
from .reading import FrameIndex, open_input, require_av

__all__ = ["EncodeSettings", "SegmentEncoder", "assemble"]

_SKIP_META = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration"}


@dataclass(frozen=True)
class EncodeSettings:
    codec: str
    pix_fmt: str
    crf: int = 18
    preset: str = "medium"
    width: int = 0
    height: int = 0
    no_reorder: bool = False


def _encoder_options(s: EncodeSettings) -> dict[str, str]:
    if s.codec in ("libx264", "libx265"):
        opts = {"crf": str(s.crf), "preset": s.preset}
        if s.no_reorder:  # AVI has one timestamp per frame: no B-frames, frames stored in display order
            opts["bf"] = "0"
        if s.codec == "libx265":
            opts["x265-params"] = "log-level=error"
        return opts
    if s.codec.startswith("libvpx"):
        return {"crf": str(s.crf), "b": "0", "row-mt": "1", "cpu-used": "4", "deadline": "good"}
    if s.codec == "libsvtav1":
        return {"crf": str(s.crf), "preset": "8"}
    return {}


class SegmentEncoder:
    """One segment's video, frames in, a NUT file out (``close()`` finishes it)."""

    def __init__(self, path: Path, index: FrameIndex, settings: EncodeSettings, fmt: OutputFormat) -> None:
        av = require_av()
        self.av = av
        self.index = index
        self.settings = settings
        self.out = av.open(str(path), "w", format="nut")
        v = self.out.add_stream(settings.codec, rate=index.fps)
        v.width, v.height, v.pix_fmt = settings.width, settings.height, settings.pix_fmt
        v.time_base = index.time_base
        cc = v.codec_context
        cc.time_base = index.time_base
        cc.framerate = index.fps
        c = index.colours
        self.yuv = settings.pix_fmt.startswith(("yuv", "nv", "p01"))
        if self.yuv:
            cc.colorspace, cc.color_range = c.colorspace, c.color_range
            cc.color_primaries, cc.color_trc = c.primaries, c.trc
        if fmt.global_header:  # headers in extradata, as the final container wants them
            cc.flags |= av.codec.context.Flags.global_header
        if settings.codec == "mpeg4" or not _encoder_options(settings):
            cc.bit_rate = int(settings.width * settings.height * float(index.fps) * 0.2)
        v.options = _encoder_options(settings)
        self.stream = v
        self.rgb_format = "rgb48le" if settings.pix_fmt and index.bit_depth > 8 else "rgb24"

    def encode(self, rgb: np.ndarray, pts: int, duration: int) -> None:
        av = self.av
        fmt = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=fmt)
        c = self.index.colours
        if self.yuv:
            frame = frame.reformat(format=self.settings.pix_fmt, dst_colorspace=c.matrix,
                                   dst_color_range=c.range_name)
            frame.colorspace, frame.color_range = c.colorspace, c.color_range
        frame.pts, frame.time_base, frame.duration = pts, self.index.time_base, duration
        self.out.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.out.mux(self.stream.encode(None))
        self.out.close()

    def abort(self) -> None:
        try:
            self.out.close()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass


def _can_copy(av: Any, stream: Any, muxer: str, src: Path) -> bool:
    """Can this container take the stream's codec as is? Ask the muxer: a dry run in memory with the
    stream's real first packet, header to trailer (some refusals only come at the trailer)."""
    try:
        with av.open(str(src), "r") as again:
            s = again.streams[stream.index]
            sample = next((p for p in again.demux(s) if p.size), None)
            data = None if sample is None else bytes(sample)
            duration = 0 if sample is None else (sample.duration or 0)
        with av.open(io.BytesIO(), "w", format=muxer) as probe:
            out = probe.add_stream_from_template(stream)
            probe.start_encoding()
            if data is not None:
                packet = av.Packet(data)
                packet.pts = packet.dts = 0
                packet.duration = duration
                packet.time_base = stream.time_base
                packet.stream = out
                probe.mux(packet)
    except Exception:  # noqa: BLE001 - any refusal means: not as is
        return False
    return True


def _audio_encoder(out: Any, in_a: Any) -> Any:
    supported = out.supported_codecs
    encoder = "aac" if "aac" in supported else "libopus" if "opus" in supported else "mp3"
    rate = in_a.codec_context.sample_rate or 48000
    if encoder == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        rate = 48000
    stream = out.add_stream(encoder, rate=rate)
    channels = in_a.codec_context.channels or 2
    named = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
    stream.layout = named.get(channels if encoder == "aac" else min(channels, 2), "stereo")
    return stream


def _copy_metadata(src: Any, dst: Any) -> None:
    for k, v in dict(src.metadata).items():
        if k.lower() not in _SKIP_META:
            try:
                dst.metadata[k] = v
            except Exception:  # noqa: BLE001 - a key the muxer refuses is dropped
                pass


def assemble(src: Path, index: FrameIndex, segments: list[Path], starts: list[int], fmt: OutputFormat,
             target: Path) -> list[str]:
    """Write ``target`` from the segment files (video; ``starts``: each one's first frame index) and ``src``
    (everything else); returns notes for the user about what could not be carried."""
    av = require_av()
    notes: list[str] = []
    inp = open_input(src)
    segs = [av.open(str(p), "r") for p in segments]
    try:
        out = av.open(str(target), "w", format=fmt.muxer)
        try:
            template = segs[0].streams.video[0]
            out_v = out.add_stream_from_template(template)
            out_v.time_base = (1 / index.fps) if fmt.frame_indexed else index.time_base
            out_v.codec_context.framerate = index.fps  # NUT reports its tick rate; headers want the input's
            in_v = inp.streams.video[0]
            _copy_metadata(in_v, out_v)
            if index.rotation:
                out_v.set_display_rotation(index.rotation)
            copies: dict[int, Any] = {}
            transcodes: dict[int, Any] = {}
            for s in inp.streams:
                if s.type == "audio":
                    if _can_copy(av, s, fmt.muxer, src):
                        copies[s.index] = out.add_stream_from_template(s)
                    else:
                        transcodes[s.index] = _audio_encoder(out, s)
                        notes.append(f"audio track {s.index} ({s.codec_context.name}) re-encoded: "
                                     f"{target.suffix} cannot hold it as is")
                elif s.type == "subtitle":
                    if s.codec_context.name in fmt.supported and _can_copy(av, s, fmt.muxer, src):
                        copies[s.index] = out.add_stream_from_template(s)
                    else:
                        notes.append(f"subtitle track {s.index} ({s.codec_context.name}) dropped: "
                                     f"{target.suffix} cannot hold it (use .mkv)")
                else:
                    continue
                made = copies.get(s.index) or transcodes.get(s.index)
                _copy_metadata(s, made)
            _copy_metadata(inp, out)
            chapters = inp.chapters()
            if chapters:
                try:
                    out.set_chapters(chapters)
                except Exception:  # noqa: BLE001
                    notes.append(f"chapters dropped: {target.suffix} cannot hold them")
            out.start_encoding()
            others = [inp.streams[i] for i in (*copies, *transcodes)]
            firsts = [Fraction(index.out_pts[i]) * index.time_base for i in starts]
            merged = heapq.merge(_video_packets(segs, firsts), _other_packets(inp, others),
                                 key=lambda t: t[0])
            for _, i, packet in merged:
                if i == -1:
                    packet.stream = out_v
                    out.mux(packet)
                elif i in copies:
                    if packet.dts is None or packet.size == 0:
                        continue
                    if fmt.frame_indexed and packet.pts is not None and packet.pts < 0:
                        continue  # encoder priming before 0: AVI would shift every stream, video included
                    packet.stream = copies[i]
                    out.mux(packet)
                else:
                    try:
                        frames = packet.decode()
                    except av.FFmpegError:
                        continue  # a damaged audio packet: skip it rather than lose the whole video
                    for frame in frames:
                        out.mux(transcodes[i].encode(frame))
            for enc in transcodes.values():
                out.mux(enc.encode(None))
        finally:
            out.close()
    finally:
        for s in segs:
            s.close()
        inp.close()
    return notes


def _video_packets(segs: list[Any], firsts: list[Fraction]) -> Iterator[tuple[Fraction, int, Any]]:
    """The segments' packets with final timestamps.

    pts: each segment's are moved back by what its muxer added to avoid negative timestamps (an encoder with
    B-frames starts decoding before the first shown frame), so every frame shows at its own time.
    dts: NUT does not keep them, and segments encoded apart need one decode clock: the k-th packet in
    decode order gets the k-th smallest pts minus the largest reordering delay of the whole video, which
    rises strictly and never passes its packet's pts."""
    tbs = {Fraction(c.streams.video[0].time_base) for c in segs}
    if len(tbs) != 1:
        raise ValueError(f"segments disagree on their time base: {sorted(tbs)}")
    tb = tbs.pop()
    shifts: list[int] = []
    all_pts: list[int] = []
    for c, first in zip(segs, firsts, strict=True):
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.size and p.pts is not None]
        ticks = (Fraction(min(pts)) * tb - first) / tb if pts else Fraction(0)
        if ticks.denominator != 1:
            raise ValueError(f"segment timestamps off the time base by {ticks * tb}")
        shifts.append(int(ticks))
        all_pts.extend(p - int(ticks) for p in pts)
        c.seek(0)
    order = sorted(all_pts)
    decode_pts = all_pts  # in decode order, shifted
    delay = max((o - d for o, d in zip(order, decode_pts)), default=0)
    k = 0
    for c, shift in zip(segs, shifts, strict=True):
        for p in c.demux(c.streams.video[0]):
            if not p.size or p.pts is None:
                continue
            p.pts -= shift
            p.dts = order[k] - delay
            k += 1
            yield (Fraction(p.dts) * tb, -1, p)


def _other_packets(inp: Any, streams: list[Any]) -> Iterator[tuple[Fraction, int, Any]]:
    if not streams:
        return
    av = require_av()
    try:
        for p in inp.demux(*streams):
            t = p.dts if p.dts is not None else p.pts
            if t is None:
                if p.size == 0:
                    continue
                t = 0
            yield (Fraction(t) * Fraction(p.stream.time_base), p.stream.index, p)
    except av.FFmpegError:
        return  # a damaged tail in the other streams: keep what was read
