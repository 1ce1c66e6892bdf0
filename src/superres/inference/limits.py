"""Checks made before any work starts: sane size options, and an output that will fit.

A bad ``--outscale`` (nan, 1e4, 1e-9) or an input whose output would need tens of gigabytes must be
refused with one line before a model runs, not end in a 1x1 image, a MemoryError traceback or a
machine swapping itself to death. The CLI, the batch runner and the server share these checks."""

from __future__ import annotations

import math

from ..errors import SuperresError

#: Largest ``--outscale`` accepted: beyond this no model adds detail and outputs explode in size.
MAX_OUTSCALE = 64.0
#: Default ``--max-output-pixels``: 16384 x 16384 (about 270 MP; 0.8 GB as 8-bit RGB, 1.6 GB as 16-bit).
DEFAULT_MAX_OUTPUT_PIXELS = 16384 * 16384
#: Largest output side: PNG/TIFF allow more, but JPEG and WebP stop at 65,535 and 16,383.
MAX_SIDE = 65_535
#: What the encoders themselves refuse: checked before a model runs, not found after the whole inference.
FORMAT_MAX_SIDE = {".jpg": ("JPEG", 65_500), ".jpeg": ("JPEG", 65_500), ".webp": ("WebP", 16_383)}


def check_size_options(outscale: float | None = None, width: int | None = None, height: int | None = None,
                       tile: int | None = None) -> None:
    """Raise a one-line ``SuperresError`` for options that cannot describe a sensible output."""
    if outscale is not None:
        if not math.isfinite(outscale) or outscale <= 0:
            raise SuperresError(f"--outscale must be a positive number, not {outscale!r}")
        if outscale > MAX_OUTSCALE:
            raise SuperresError(f"--outscale {outscale:g} is absurd (at most {MAX_OUTSCALE:g})")
        if width or height:
            raise SuperresError("give --outscale or --width/--height, not both")
    for flag, value in (("--width", width), ("--height", height)):
        if value is not None and not 1 <= value <= MAX_SIDE:
            raise SuperresError(f"{flag} must be between 1 and {MAX_SIDE}, not {value}")
    if tile is not None and tile < 0:
        raise SuperresError(f"--tile must be 0 (no tiling) or a positive LR tile size, not {tile}")


def check_output_size(src_w: int, src_h: int, out_w: int, out_h: int, max_output_pixels: int | None,
                      suffix: str = "") -> None:
    """Refuse an output that is empty, larger than ``max_output_pixels`` (None: no limit) or wider than its
    format (``suffix``: ".jpg", ".webp", ...) can store."""
    if out_w < 1 or out_h < 1:
        raise SuperresError(f"a {src_w}x{src_h} image at this scale would be {out_w}x{out_h}: nothing left")
    if max(out_w, out_h) > MAX_SIDE:
        raise SuperresError(f"output {out_w}x{out_h} is wider or taller than {MAX_SIDE} pixels")
    fmt = FORMAT_MAX_SIDE.get(suffix.lower())
    if fmt is not None and max(out_w, out_h) > fmt[1]:
        raise SuperresError(f"output {out_w}x{out_h} is too large for {fmt[0]} (at most {fmt[1]:,} pixels a "
                            "side); write PNG or TIFF (--ext png) or use a smaller scale")
    if max_output_pixels is not None and out_w * out_h > max_output_pixels:
        raise SuperresError(
            f"output {out_w}x{out_h} ({out_w * out_h / 1e6:.0f} MP) exceeds --max-output-pixels "
            f"{max_output_pixels:,} ({max_output_pixels / 1e6:.0f} MP); use a smaller scale or raise the limit")


def output_size(w: int, h: int, scale: int, outscale: float | None, width: int | None,
                height: int | None) -> tuple[int, int]:
    """The (width, height) an upscale will produce, without clamping to 1 (so 1e-9 shows as 0x0)."""
    if width and height:
        return int(width), int(height)
    if width:
        return int(width), int(round(h * width / w))
    if height:
        return int(round(w * height / h)), int(height)
    f = float(outscale) if outscale else float(scale)
    return int(round(w * f)), int(round(h * f))
