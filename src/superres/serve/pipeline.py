"""What one request does, independent of HTTP: validate options, decode with the right refusal, upscale
with the shared model, encode. Runs in a worker thread; raises :class:`ApiError` for the caller to map.

Status codes are decided here from our own header probe, not from error-message text: an input Pillow
does not recognise is 415, a header that declares more pixels than allowed is 413 (before any pixel is
decoded: a 60 kB PNG can declare 64 megapixels), and a recognised image that fails to decode (truncated,
corrupt) is 422.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..inference import limits
from .errors import ApiError

if TYPE_CHECKING:  # pragma: no cover

    from ..inference.upscaler import Upscaler
    from ..io.image import ImageData

__all__ = [
    "CONTENT_TYPES",
    "Cancelled",
    "Outcome",
    "UpscaleParams",
    "WorkControl",
    "check_output",
    "parse_params",
    "probe",
    "process",
]

#: Output formats by request name -> (encoder name, content type, file suffix).
CONTENT_TYPES: dict[str, tuple[str, str, str]] = {
    "png": ("png", "image/png", ".png"),
    "jpeg": ("jpg", "image/jpeg", ".jpg"),
    "jpg": ("jpg", "image/jpeg", ".jpg"),
    "webp": ("webp", "image/webp", ".webp"),
    "tiff": ("tif", "image/tiff", ".tif"),
    "bmp": ("bmp", "image/bmp", ".bmp"),
}
_FORMATS = ("auto", *CONTENT_TYPES)
_BY_PIL_FORMAT = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "TIFF": "tiff", "BMP": "bmp"}
_ALPHA_OK = {"png", "webp", "tiff"}
# A shared server caps the scale lower than the command line (inference.limits.MAX_OUTSCALE = 64): one
# request must not be able to ask for 64x the pixels of an already large upload.
MAX_OUTSCALE = 16.0
MAX_SIDE = limits.MAX_SIDE


class UpscaleParams(BaseModel):
    """Form fields of ``/v1/upscale`` and ``/v1/jobs`` (all optional)."""

    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = Field(None, description="Model name from /v1/models (default: the first served).")
    outscale: Optional[float] = Field(None, gt=0, le=MAX_OUTSCALE, description="Final scale, e.g. 2 or 2.5.")
    width: Optional[int] = Field(None, ge=1, le=MAX_SIDE, description="Output width (height follows).")
    height: Optional[int] = Field(None, ge=1, le=MAX_SIDE, description="Output height (width follows).")
    format: str = Field("png", description="png, jpeg, webp, tiff, bmp, or auto (the input's).")
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality.")
    self_ensemble: bool = Field(False, description="Average the 8 flips/rotations (about 8x slower).")
    report: bool = Field(False, description="Quality check: x8 self-ensemble (about 8x slower), NIQE gate, "
                                            "uncertainty heatmap (job result variant=uncertainty).")
    fallback: Optional[str] = Field(None, description="With report: 'bicubic' is sent for a flagged image.")

    @model_validator(mode="after")
    def _check(self) -> "UpscaleParams":
        self.format = self.format.lower()
        if self.format not in _FORMATS:
            raise ValueError(f"format must be one of {', '.join(_FORMATS)}")
        if self.outscale is not None and (self.width or self.height):
            raise ValueError("give outscale or width/height, not both")
        if self.fallback is not None and (self.fallback != "bicubic" or not self.report):
            raise ValueError("fallback takes 'bicubic', together with report=true")
        return self


def parse_params(fields: dict[str, str]) -> UpscaleParams:
    """Form fields -> params; ``scale`` is accepted as an alias of ``outscale``; empty fields are absent."""
    data: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
    if "scale" in data and "outscale" not in data:
        data["outscale"] = data["scale"]
    data.pop("scale", None)
    for key in ("outscale",):
        if isinstance(data.get(key), str):
            data[key] = data[key].strip().lstrip("xX")  # "x4" is what people type
    try:
        return UpscaleParams.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "options"
            msgs.append(f"{where}: {err['msg']}")
        raise ApiError(422, "invalid_options", "; ".join(msgs)) from None


class Cancelled(Exception):
    """Raised inside the network loop when the work was cancelled (client gone, timeout, DELETE)."""


class WorkControl:
    """Shared between the worker thread and the event loop: a cancel flag and tile progress."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self.tiles_done = 0
        self.tiles_total = 0
        self.stage = "queued"

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    @property
    def progress(self) -> float:
        """0..1: decode 5 %, network 90 % (by tiles), encode 5 %."""
        if self.stage == "done":
            return 1.0
        if self.stage in ("queued", "decoding"):
            return 0.0
        frac = min(1.0, self.tiles_done / self.tiles_total) if self.tiles_total else 0.0
        base = 0.05 + 0.9 * frac
        return round(min(0.99, base if self.stage == "upscaling" else 0.95), 4)


@dataclass
class Outcome:
    data: bytes
    content_type: str
    suffix: str
    width: int
    height: int
    quality: Optional[dict[str, Any]] = None  # the quality check's fields (report=true)
    heatmap: Optional[bytes] = None  # the uncertainty heatmap PNG (report=true)


def probe(data: "bytes | Path", name: str, max_pixels: int, limit_hint: str = "") -> None:
    """Refuse by header: 415 when no decoder knows the bytes, 413 when the declared size is over the limit.
    ``data`` may be the spooled file: only its header is read (jobs are refused at submission)."""
    from PIL import Image, UnidentifiedImageError

    from ..errors import ImageReadError
    from ..io.image import read_image_bytes

    if (data.stat().st_size if isinstance(data, Path) else len(data)) == 0:
        raise ApiError(
            415, "unsupported_media_type", f"'{name}' is empty; expected PNG, JPEG, WebP, TIFF, BMP..."
        )
    try:
        with Image.open(data if isinstance(data, Path) else io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise ApiError(
            413, "image_too_large", f"'{name}' declares more pixels than the decoder allows"
        ) from None
    except UnidentifiedImageError:
        try:  # formats only a plugin reads (HEIC) get read_image's own message
            read_image_bytes(data.read_bytes() if isinstance(data, Path) else data, name=name, max_pixels=1)
        except ImageReadError as e:
            if "over the limit" not in str(e):
                raise ApiError(415, "unsupported_media_type", str(e)) from None
        return
    except Exception as e:
        raise ApiError(
            422, "corrupt_image", f"'{name}' is truncated or corrupt ({type(e).__name__})"
        ) from None
    if w * h > max_pixels:
        raise ApiError(
            413,
            "image_too_large",
            f"'{name}' is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}{limit_hint}",
        )


def decode(data: bytes, name: str, max_pixels: int, limit_hint: str = "") -> "ImageData":
    from ..errors import ImageReadError
    from ..io.image import read_image_bytes

    probe(data, name, max_pixels, limit_hint)
    try:
        return read_image_bytes(data, name=name, max_pixels=max_pixels)
    except ImageReadError as e:
        if "over the limit" in str(e):  # a plugin format whose size only the full read knows
            raise ApiError(413, "image_too_large", str(e)) from None
        raise ApiError(422, "corrupt_image", str(e)) from None


def check_output(out_w: int, out_h: int, fmt: str, max_output_pixels: int) -> None:
    """Refuse (422) an output that cannot be written, naming the limit that was hit: the side limit of
    every image (65,535 px) or of the chosen format (WebP 16,383, JPEG 65,500), or the server's pixel
    limit. Checked before any inference, so a refusal costs nothing."""
    name, side = limits.FORMAT_MAX_SIDE.get(f".{fmt}", ("", MAX_SIDE))  # the CLI's table of encoder limits
    if max(out_w, out_h) > side:
        whose = f"{name} images" if side < MAX_SIDE else "an image"
        raise ApiError(
            422,
            "invalid_options",
            f"output {out_w}x{out_h} has a side over {side:,} pixels, the most {whose} can have; "
            "ask for a smaller scale" + (" or another format" if side < MAX_SIDE else ""),
        )
    if out_w * out_h > max_output_pixels:
        raise ApiError(
            422,
            "invalid_options",
            f"output {out_w}x{out_h} = {out_w * out_h:,} pixels is over the server's limit of "
            f"{max_output_pixels:,} pixels; ask for a smaller scale",
        )


def expected_tiles(up: "Upscaler", w: int, h: int, size: tuple[int, int], alpha: bool) -> int:
    """Network calls an upscale will make (for progress)."""
    return up.count_tiles(w, h, size, alpha)


def _tracked(up: "Upscaler", control: WorkControl) -> "Upscaler":
    """A per-request view of the shared upscaler whose tile calls count progress and honour cancel."""

    def done() -> None:
        control.tiles_done += 1

    return up.with_tile_hooks(before=control.check, after=done)


def process(
    up: "Upscaler",
    data: bytes,
    name: str,
    params: UpscaleParams,
    control: WorkControl,
    *,
    max_pixels: int,
    max_output_pixels: int,
    limit_hint: str = "",
) -> Outcome:
    """Decode -> upscale -> encode one image. Raises ApiError (4xx) or Cancelled."""
    from ..errors import SuperresError
    from ..inference.limits import output_size
    from ..io.image import encode_image

    control.check()
    control.stage = "decoding"
    img = decode(data, name, max_pixels, limit_hint)
    w, h = img.size
    out_w, out_h = output_size(w, h, up.scale, params.outscale, params.width, params.height)
    if out_w < 1 or out_h < 1:
        raise ApiError(
            422, "invalid_options", f"a {w}x{h} image at this scale would be {out_w}x{out_h}: nothing left"
        )
    fmt = params.format
    if fmt == "auto":
        fmt = _BY_PIL_FORMAT.get(img.format or "", "png")
    if img.alpha is not None and fmt not in _ALPHA_OK:
        if params.format == "auto":
            fmt = "png"
        else:
            raise ApiError(
                422, "invalid_options", f"{fmt} cannot hold the image's transparency; use png or webp"
            )
    check_output(out_w, out_h, fmt, max_output_pixels)
    encoder, content_type, suffix = CONTENT_TYPES[fmt]
    calls = 1
    if params.report or params.self_ensemble:
        from .quality import ENSEMBLE_CALLS, checked_upscale, ensembled

        calls = ENSEMBLE_CALLS
    control.tiles_total = max(1, calls * expected_tiles(up, w, h, (out_w, out_h), img.alpha is not None))
    control.stage = "upscaling"
    control.check()
    quality = heat = None
    try:
        if params.report:
            result, quality, heat = checked_upscale(_tracked(up, control), img, out_w, out_h, params.fallback)
        elif params.self_ensemble:
            result = ensembled(_tracked(up, control)).upscale_image(img, width=out_w, height=out_h)
        else:
            result = _tracked(up, control).upscale_image(img, width=out_w, height=out_h)
    except SuperresError as e:
        raise ApiError(422, "upscale_failed", str(e)) from None
    control.stage = "encoding"
    control.check()
    try:
        out = encode_image(result, encoder, quality=params.quality)
    except SuperresError as e:
        raise ApiError(422, "invalid_options", str(e)) from None
    return Outcome(out, content_type, suffix, out_w, out_h, quality, heat)
