"""Video in, frames through a callback, video out: same frames, same timing, same audio.

Users of existing upscalers report lost audio and outputs that are longer or out of sync (field-anchors.md
section 2, #11): the usual cause is re-timing frames (a rounded fps, splitting by time and re-joining).
Here every output frame keeps the presentation timestamp of the input frame it came from, in the input's
time base, so frame count, frame rate (variable rates too) and duration are those of the source. The first
audio stream is copied packet for packet when the output container can hold its codec, else transcoded
(AAC, or Opus for WebM). Colours: frames are converted to RGB with the matrix and range the input is
tagged with (or, untagged, the one players assume from its height) and converted back with the same ones,
and the output is tagged, so a 480p -> 960p upscale doesn't turn BT.601 colours into BT.709 ones.

PyAV is an optional dependency (``pip install "superres[video]"``), imported inside the functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SuperresError
from .atomic import atomic_write

__all__ = ["VideoInfo", "probe_video", "process_video"]

_EXPECTED = "expected MP4, MKV, MOV, WebM, AVI..."

# AVColorSpace (the stream tag) -> swscale matrix name, for converting YUV <-> RGB.
_SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_AVCOL_SPC_BT709, _AVCOL_SPC_SMPTE170M = 1, 6
_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG = 1, 2


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


def _require_av() -> Any:
    try:
        import av
    except ImportError:
        from ..errors import install_hint

        raise SuperresError(f"video needs PyAV: {install_hint('video')}") from None
    return av


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text if len(text) <= 160 else text[:157] + "...") or type(e).__name__


def _open_input(av: Any, path: Path) -> Any:
    where = f"cannot read video '{path}'"
    if not path.exists():
        raise SuperresError(f"{where}: file not found")
    if path.is_dir():
        raise SuperresError(f"{where}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise SuperresError(f"{where}: file is empty ({_EXPECTED})")
    try:
        container = av.open(str(path), "r")
    except PermissionError:
        raise SuperresError(f"{where}: permission denied") from None
    except (av.FFmpegError, OSError, ValueError) as e:
        raise SuperresError(f"{where}: not a video file or unsupported format ({_EXPECTED})") from e
    if not container.streams.video:
        container.close()
        raise SuperresError(f"{where}: no video stream ({_EXPECTED})")
    return container


def _fps(stream: Any) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Size, frame rate, frame count, duration and streams of a video, without decoding it."""
    av = _require_av()
    p = Path(path)
    container = _open_input(av, p)
    try:
        vs = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        duration: float | None = None
        if vs.duration is not None and vs.time_base:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(
            width=int(vs.codec_context.width),
            height=int(vs.codec_context.height),
            fps=_fps(vs),
            frame_count=int(vs.frames) or None,
            duration=duration,
            has_audio=audio is not None,
            video_codec=vs.codec_context.name,
            audio_codec=None if audio is None else audio.codec_context.name,
            container=container.format.name,
        )
    finally:
        container.close()


def process_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    process_batch: Callable[[list[np.ndarray]], list[np.ndarray]],
    *,
    batch_size: int = 4,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    pix_fmt: str = "yuv420p",
    progress: Callable[[int, int | None], None] | None = None,
    overwrite: bool = True,
) -> Path:
    """Decode ``src`` to RGB uint8 H x W x 3 frames, pass them through ``process_batch`` in batches of
    ``batch_size`` and encode what comes back into ``dst`` (container from its suffix).

    ``process_batch`` returns one frame per input frame, uint8 (or float in [0, 1]) H x W x 3, all the
    same size (the output size is taken from the first). ``progress(done, total)`` is called after each
    batch (total None when unknown). The output appears atomically: on any failure, including an
    exception from ``process_batch`` (re-raised unchanged), no partial file is left behind.
    """
    av = _require_av()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    src_p, dst_p = Path(src), Path(dst)
    where_out = f"cannot write video '{dst_p}'"
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        raise SuperresError(
            f"{where_out}: video encoder '{codec}' is not in this FFmpeg build (try libx264 or mpeg4)"
        ) from None
    if dst_p.exists() and src_p.exists() and dst_p.resolve() == src_p.resolve():
        raise SuperresError(f"{where_out}: the output would overwrite the input")
    inp = _open_input(av, src_p)
    tmp = dst_p
    try:
        try:
            with atomic_write(dst_p, overwrite=overwrite, tmp_suffix=".tmp" + dst_p.suffix) as tmp:
                _Transcoder(
                    av,
                    inp,
                    src_p,
                    dst_p,
                    tmp,
                    process_batch,
                    batch_size=batch_size,
                    codec=codec,
                    crf=crf,
                    preset=preset,
                    pix_fmt=pix_fmt,
                    progress=progress,
                ).run()
        except av.FFmpegError as e:  # name the file the user asked for, not our temporary one
            reason = _one_line(e).replace(str(tmp), str(dst_p))
            raise SuperresError(f"{where_out}: encoding failed ({reason})") from e
        except FileExistsError:
            raise SuperresError(f"{where_out}: file exists (pass overwrite=True to replace it)") from None
        except NotADirectoryError:
            raise SuperresError(f"{where_out}: a part of the folder path is a file, not a folder") from None
        except PermissionError:
            raise SuperresError(f"{where_out}: permission denied") from None
        except OSError as e:
            if getattr(e, "errno", None) == 28:
                raise SuperresError(f"{where_out}: no space left on the device") from e
            raise SuperresError(f"{where_out}: {e.strerror or _one_line(e)}") from e
    finally:
        inp.close()
    return dst_p


class _Transcoder:
    """One run of process_video; an object only to keep the many pieces of state readable."""

    def __init__(
        self,
        av: Any,
        inp: Any,
        src: Path,
        dst: Path,
        tmp: Path,
        process_batch: Callable[[list[np.ndarray]], list[np.ndarray]],
        *,
        batch_size: int,
        codec: str,
        crf: int,
        preset: str,
        pix_fmt: str,
        progress: Callable[[int, int | None], None] | None,
    ) -> None:
        self.av, self.inp, self.src, self.dst, self.tmp = av, inp, src, dst, tmp
        self.process_batch, self.batch_size = process_batch, batch_size
        self.codec, self.crf, self.preset, self.pix_fmt, self.progress = codec, crf, preset, pix_fmt, progress
        self.in_v = inp.streams.video[0]
        self.in_a = inp.streams.audio[0] if inp.streams.audio else None
        self.fps = _fps(self.in_v)
        self.in_time_base = Fraction(self.in_v.time_base) if self.in_v.time_base else 1 / self.fps
        self.time_base = _output_time_base(self.in_time_base, self.fps)
        self.total = int(self.in_v.frames) or None
        self.out: Any = None
        self.out_v: Any = None
        self.out_a: Any = None
        self.copy_audio = False
        self.pending_audio: list[Any] = []
        self.done = 0
        self.size: tuple[int, int] | None = None
        self.rotation = 0  # display rotation (phone videos): carried as a tag, frames stay as stored
        cc = self.in_v.codec_context
        tagged = cc.colorspace in _SWS_MATRIX
        # Untagged video: players pick BT.709 from 720 lines up, BT.601 below; decode as they show it.
        self.colorspace = (
            cc.colorspace if tagged else (_AVCOL_SPC_BT709 if cc.height >= 720 else _AVCOL_SPC_SMPTE170M)
        )
        self.color_range = _AVCOL_RANGE_JPEG if cc.color_range == _AVCOL_RANGE_JPEG else _AVCOL_RANGE_MPEG
        self.yuv_out = pix_fmt.startswith(("yuv", "nv", "p01"))

    # -- reading ----------------------------------------------------------------------------------------

    def _read_error(self, e: BaseException) -> SuperresError:
        return SuperresError(
            f"cannot read video '{self.src}': decoding failed after {self.done} frames ({_one_line(e)})"
        )

    def _frames(self) -> Iterator[tuple[np.ndarray, int, int]]:
        """(rgb, pts, duration) in the output time base, in presentation order; audio packets met on the
        way are handed to the audio side.

        Timestamps are the input's. Only a constant-rate input stored in a coarse time base (Matroska's
        milliseconds) is snapped to exact frame times, so that e.g. 23.976 fps stays 24000/1001 in MP4
        instead of becoming the rate of the rounded milliseconds."""
        av = self.av
        self.in_v.thread_type = "AUTO"
        streams = [self.in_v] + ([self.in_a] if self.in_a is not None else [])
        ratio = self.in_time_base / self.time_base  # an integer: see _output_time_base
        frame_ticks = (1 / self.fps) / self.time_base
        exact = frame_ticks.denominator == 1
        step = max(1, round(frame_ticks))
        first: int | None = None
        index = 0
        matrix = _SWS_MATRIX[self.colorspace]
        rng = "JPEG" if self.color_range == _AVCOL_RANGE_JPEG else "MPEG"
        try:
            for packet in self.inp.demux(*streams):
                if packet.stream.type == "audio":
                    self._audio_packet(packet)
                    continue
                for frame in packet.decode():
                    rgb = frame.to_ndarray(format="rgb24", src_colorspace=matrix, src_color_range=rng)
                    if first is None:
                        first = round(frame.pts * ratio) if frame.pts is not None else 0
                        self.rotation = int(getattr(frame, "rotation", 0) or 0)
                    ideal = first + index * step
                    pts = round(frame.pts * ratio) if frame.pts is not None else ideal
                    duration = round(frame.duration * ratio) if frame.duration else step
                    if exact and ratio > 1 and abs(pts - ideal) <= ratio:
                        pts, duration = ideal, step
                    index += 1
                    yield rgb, pts, duration
        except av.FFmpegError as e:
            raise self._read_error(e) from e

    # -- audio ------------------------------------------------------------------------------------------

    def _audio_packet(self, packet: Any) -> None:
        if self.out_a is None:  # output not started yet (waits for the first processed frame's size)
            self.pending_audio.append(packet)
            return
        if self.copy_audio:
            if packet.dts is None or packet.size == 0:
                return  # demuxer's flush packet
            packet.stream = self.out_a
            self.out.mux(packet)
            return
        try:
            frames = packet.decode()
        except self.av.FFmpegError:
            return  # a damaged audio packet: skip it rather than lose the whole video
        for frame in frames:  # timestamps kept: a track that starts late stays in sync
            self.out.mux(self.out_a.encode(frame))

    def _can_copy_audio(self) -> bool:
        """Can this container take the audio codec as is? Ask the muxer itself: a dry run in memory with
        the real first audio packet, header to trailer (some refusals only come at the trailer, e.g. PCM
        with an unnamed channel layout in MP4)."""
        av, in_a = self.av, self.in_a
        if in_a is None or in_a.codec_context.name not in self.out.supported_codecs:
            return False
        import io

        try:
            with av.open(str(self.src), "r") as again:
                sample = next((p for p in again.demux(again.streams.audio[0]) if p.size), None)
                data = None if sample is None else bytes(sample)
                duration = 0 if sample is None else (sample.duration or 0)
            with av.open(io.BytesIO(), "w", format=self.out.format.name) as probe:
                stream = probe.add_stream_from_template(in_a)
                probe.start_encoding()
                if data is not None:
                    packet = av.Packet(data)
                    packet.pts = packet.dts = 0
                    packet.duration = duration
                    packet.time_base = in_a.time_base
                    packet.stream = stream
                    probe.mux(packet)
        except Exception:  # noqa: BLE001 - any refusal means: transcode
            return False
        return True

    def _add_audio_stream(self) -> None:
        if self.in_a is None:
            return
        if self._can_copy_audio():
            self.out_a = self.out.add_stream_from_template(self.in_a)
            self.copy_audio = True
            return
        supported = self.out.supported_codecs
        encoder = "aac" if "aac" in supported else "libopus" if "opus" in supported else "mp3"
        rate = self.in_a.codec_context.sample_rate or 48000
        if encoder == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
            rate = 48000
        self.out_a = self.out.add_stream(encoder, rate=rate)
        channels = self.in_a.codec_context.channels or 2
        # Named layouts only: encoders (and MP4) refuse "N channels" with no channel order.
        named = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
        self.out_a.layout = named.get(channels if encoder == "aac" else min(channels, 2), "stereo")

    def _flush_audio(self) -> None:
        if self.out_a is not None and not self.copy_audio:
            self.out.mux(self.out_a.encode(None))

    # -- writing ----------------------------------------------------------------------------------------

    def _start_output(self, width: int, height: int) -> None:
        where = f"cannot write video '{self.dst}'"
        if self.yuv_out and "420" in self.pix_fmt and (width % 2 or height % 2):
            raise SuperresError(
                f"{where}: {self.pix_fmt} needs an even frame size, got {width}x{height} "
                "(crop or pad the frames, or use pix_fmt='yuv444p')"
            )
        v = self.out.add_stream(self.codec, rate=self.fps)
        v.width, v.height, v.pix_fmt = width, height, self.pix_fmt
        v.time_base = self.time_base
        cc = v.codec_context
        cc.time_base = self.time_base
        cc.framerate = self.fps
        if self.yuv_out:
            cc.colorspace = self.colorspace
            cc.color_range = self.color_range
            src_cc = self.in_v.codec_context
            cc.color_primaries = src_cc.color_primaries
            cc.color_trc = src_cc.color_trc
        options: dict[str, str] = {}
        if self.codec in ("libx264", "libx265"):
            options = {"crf": str(self.crf), "preset": self.preset}
        elif self.codec in ("libvpx", "libvpx-vp9", "libsvtav1", "libaom-av1"):
            options = (
                {"crf": str(self.crf), "b": "0"}
                if self.codec.startswith("libvpx")
                else {"crf": str(self.crf)}
            )
        else:
            cc.bit_rate = int(width * height * float(self.fps) * 0.2)  # ~0.2 bit/pixel: visually clean
        v.options = options
        if self.rotation and hasattr(v, "set_display_rotation"):
            v.set_display_rotation(self.rotation)
        self.out_v = v
        self._add_audio_stream()
        self.out.start_encoding()
        pending, self.pending_audio = self.pending_audio, []
        for packet in pending:
            self._audio_packet(packet)

    def _encode(self, batch: list[tuple[np.ndarray, int, int]]) -> None:
        av = self.av
        outs = self.process_batch([rgb for rgb, _, _ in batch])
        if not isinstance(outs, (list, tuple)) or len(outs) != len(batch):
            got = len(outs) if isinstance(outs, (list, tuple)) else type(outs).__name__
            raise SuperresError(f"process_batch returned {got} frames for a batch of {len(batch)}")
        matrix = _SWS_MATRIX[self.colorspace]
        rng = "JPEG" if self.color_range == _AVCOL_RANGE_JPEG else "MPEG"
        for out, (_, pts, duration) in zip(outs, batch, strict=True):
            arr = _as_rgb8(out)
            h, w = arr.shape[:2]
            if self.size is None:
                self.size = (w, h)
                self._start_output(w, h)
            elif (w, h) != self.size:
                raise SuperresError(
                    f"process_batch changed the frame size from {self.size[0]}x{self.size[1]} to {w}x{h}"
                )
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if self.yuv_out:
                frame = frame.reformat(format=self.pix_fmt, dst_colorspace=matrix, dst_color_range=rng)
                frame.colorspace, frame.color_range = self.colorspace, self.color_range
            frame.pts, frame.time_base, frame.duration = pts, self.time_base, duration
            self.out.mux(self.out_v.encode(frame))
        self.done += len(batch)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def run(self) -> None:
        av = self.av
        try:  # before any frame is processed: an unknown suffix should not cost a batch of work
            self.out = av.open(str(self.tmp), "w")
        except (ValueError, av.FFmpegError) as e:
            raise SuperresError(
                f"cannot write video '{self.dst}': unknown video container '{self.dst.suffix}' ({_EXPECTED})"
            ) from e
        finished = False
        try:
            batch: list[tuple[np.ndarray, int, int]] = []
            for item in self._frames():
                batch.append(item)
                if len(batch) == self.batch_size:
                    self._encode(batch)
                    batch = []
            if batch:
                self._encode(batch)
            if self.out_v is None:
                raise SuperresError(f"cannot read video '{self.src}': no frame could be decoded")
            self.out.mux(self.out_v.encode(None))
            self._flush_audio()
            finished = True
        finally:
            if self.out is not None:
                try:
                    self.out.close()
                except Exception:  # noqa: BLE001 - after a failure the first error is the one to report
                    if finished:
                        raise


def _output_time_base(in_tb: Fraction, fps: Fraction) -> Fraction:
    """The input's time base, refined when it cannot express one frame exactly (1/1000 at 24000/1001):
    the finest of the two (lcm of denominators) holds both the input timestamps and exact frame times."""
    frame = 1 / fps
    if (frame / in_tb).denominator == 1 or in_tb.numerator != 1:
        return in_tb
    denom = math.lcm(in_tb.denominator, fps.numerator)
    return Fraction(1, denom) if denom <= 10_000_000 and (frame * denom).denominator == 1 else in_tb


def _as_rgb8(frame: Any) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise SuperresError(f"process_batch must return H x W x 3 RGB frames, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "f":
        from .image import to_uint

        return to_uint(arr, 8)
    raise SuperresError(f"process_batch must return uint8 or float frames, got {arr.dtype}")
