"""What the output file will be, decided before a model loads: container from the suffix, encoder, pixel
format and whether the name may be written at all.

A suffix the tool cannot honour must cost the user one line, not a model load and a traceback at the
first frame (``'webm' format does not support 'libx264' codec``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import SuperresError
from .reading import bit_depth, require_av

__all__ = ["OutputFormat", "check_output", "choose_pix_fmt", "CONTAINERS"]

#: suffix -> (FFmpeg muxer, default video encoders in order of preference)
CONTAINERS: dict[str, tuple[str, tuple[str, ...]]] = {
    ".mp4": ("mp4", ("libx264", "libx265", "libsvtav1", "mpeg4")),
    ".m4v": ("mp4", ("libx264", "libx265", "mpeg4")),
    ".mov": ("mov", ("libx264", "libx265", "mpeg4")),
    ".mkv": ("matroska", ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "mpeg4")),
    ".webm": ("webm", ("libvpx-vp9", "libsvtav1", "libvpx")),
    ".avi": ("avi", ("libx264", "mpeg4")),
}
_NAMES = "MP4, MKV, MOV, WebM or AVI"
_IMAGE = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".heif", ".tga",
          ".ppm", ".pgm", ".exr")
_GLOBAL_HEADER = 0x40  # AVFMT_GLOBALHEADER: codec headers go in the container, not in each keyframe


@dataclass(frozen=True)
class OutputFormat:
    """The output's container and encoder, known to work together."""

    path: Path
    muxer: str
    codec: str
    global_header: bool  # encoders must put their headers in extradata (MP4, MKV, MOV, WebM)
    frame_indexed: bool  # AVI: timestamps are frame numbers, so the rate must be constant
    supported: frozenset[str]  # codec names the muxer takes (for audio and subtitle copies)


def _encoder_exists(name: str) -> bool:
    av = require_av()
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        return False
    return True


def _encoder_formats(name: str) -> list[str]:
    av = require_av()
    return [f.name for f in (av.codec.Codec(name, "w").video_formats or [])]


def choose_pix_fmt(codec: str, in_pix_fmt: str) -> str:
    """The input's pixel format when the encoder takes it, else the same bit depth in 4:2:0 (10-bit stays
    10-bit), else 8-bit 4:2:0; ``yuvj*`` (full range) becomes its ``yuv*`` twin with a full-range tag."""
    formats = _encoder_formats(codec)
    want = in_pix_fmt.replace("yuvj", "yuv")
    depth = bit_depth(in_pix_fmt)
    if want in formats:
        return want
    candidates = ["yuv420p"] if depth == 8 else [f"yuv420p{depth}le", "yuv420p10le", "p010le", "yuv420p12le"]
    for f in candidates:
        if f in formats:
            return f
    return "yuv420p" if "yuv420p" in formats else formats[0]


def _high_depth_ok(codec: str) -> bool:
    return any(bit_depth(f) > 8 for f in _encoder_formats(codec))


def check_output(src: Path, dst: Path, *, codec: str | None = None, overwrite: bool = False,
                 in_pix_fmt: str = "yuv420p") -> OutputFormat:
    """Refuse, with one line, an output the run could not write; else say how it will be written."""
    suffix = dst.suffix.lower()
    where = f"cannot write video '{dst}'"
    if suffix == ".gif":
        raise SuperresError(f"{where}: GIF output is not supported (256 colours would undo the upscale); "
                            "write .mp4 or .webm")
    if suffix in _IMAGE:
        raise SuperresError(f"{where}: '{suffix}' is an image format; give a video name (.mp4, .mkv, .webm, "
                            f"...), or upscale still images with 'superres upscale'")
    if suffix not in CONTAINERS:
        shown = f"'{suffix}'" if suffix else "(no suffix)"
        raise SuperresError(f"{where}: unknown video container {shown} (expected {_NAMES})")
    if dst.is_dir():
        raise SuperresError(f"{where}: is a folder; give a file name")
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise SuperresError(f"output '{dst}' is the input video itself; choose another -o")
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise SuperresError(f"output '{dst}' exists; pass --overwrite to replace it")
    av = require_av()
    muxer, defaults = CONTAINERS[suffix]
    with av.open(io.BytesIO(), "w", format=muxer) as probe:
        supported = frozenset(probe.supported_codecs)
    high = bit_depth(in_pix_fmt) > 8
    if codec is None:
        usable = [c for c in defaults if _encoder_exists(c) and _codec_name(c) in supported]
        if high:
            usable = [c for c in usable if _high_depth_ok(c)] or usable
        if not usable:
            raise SuperresError(f"{where}: this FFmpeg build has no encoder for {suffix} video")
        codec = usable[0]
    elif not _encoder_exists(codec):
        raise SuperresError(
            f"{where}: video encoder '{codec}' is not in this FFmpeg build (try libx264 or mpeg4)")
    if _codec_name(codec) not in supported:
        raise SuperresError(f"{where}: {suffix} cannot hold '{codec}' video (try {defaults[0]})")
    flags = int(av.format.ContainerFormat(muxer, "w").flags)
    return OutputFormat(dst, muxer, codec, bool(flags & _GLOBAL_HEADER), muxer == "avi", supported)


def _codec_name(encoder: str) -> str:
    """The codec an encoder writes (libx264 -> h264), as muxers list them."""
    av = require_av()
    return str(av.codec.Codec(encoder, "w").canonical_name)
