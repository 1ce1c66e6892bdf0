"""Image files in and out without losing what users notice.

The field's complaints (field-anchors.md section 2: alpha turned black, 16-bit PNGs saved as 8-bit,
colour shifts, rotated phone photos) all come from the file layer, not from the network. So the rules
here are: pixels become float32 in [0, 1] with the colour channels and the alpha kept apart; the source
bit depth, ICC profile and EXIF travel with the pixels so that the output can match the input; EXIF
orientation is applied once on read (and reset to 1), so the pixels are always the way a viewer shows
them; nothing is silently dropped on write (alpha into JPEG is refused, 16-bit into JPEG on request is
refused); every write is atomic.

16-bit colour: Pillow has no 16-bit RGB(A) mode and decodes such PNG/TIFF files to their high bytes
only. :func:`read_image` keeps all 16 bits by letting Pillow's own C decoder run twice over the same
file with two unpackers, one that keeps the high byte of every sample and one that keeps the low byte
(PNG filtering, interlacing and TIFF compression are handled by Pillow both times), then joins them.
16-bit gray+alpha PNGs need only one pass (4 bytes per pixel unpacked as RGBA). Writing 16-bit PNG and
TIFF files uses small encoders in this module (zlib + PNG filters; deflate TIFF with a horizontal
predictor) because Pillow cannot encode them either.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import sys
import threading
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError, ImageWriteError, one_line
from .atomic import atomic_write

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageData",
    "encode_image",
    "from_array",
    "from_pil",
    "os_reason",
    "read_image",
    "read_image_bytes",
    "to_pil",
    "to_uint",
    "write_image",
]

log = logging.getLogger(__name__)

#: Twice Pillow's default warning limit: the size at which Pillow itself refuses an image.
DEFAULT_MAX_PIXELS = 178_956_970

_EXPECTED = "expected PNG, JPEG, WebP, TIFF, BMP..."
_EXIF_PREFIX = b"Exif\x00\x00"
_ORIENTATION = 0x0112

# Output format by suffix; which formats hold alpha and 16-bit samples.
_SUFFIX_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".avif": "AVIF",
    ".heic": "HEIF",
    ".heif": "HEIF",
}
#: what ``write_image`` can write (``--ext`` takes these without the dot)
WRITABLE_SUFFIXES = tuple(_SUFFIX_FORMATS)
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "AVIF", "HEIF"}
_DEEP_FORMATS = {"PNG", "TIFF"}
_RGB_ONLY_FORMATS = {"WEBP", "AVIF", "HEIF"}  # no gray mode in these encoders
_NO_METADATA_FORMATS = {"BMP"}


# ---- the in-memory image -----------------------------------------------------------------------------


@dataclass
class ImageData:
    """Decoded pixels plus what is needed to write them back the way they came.

    ``color`` is float32 H x W x C in [0, 1], C = 3 (RGB) or 1 (gray); ``alpha`` is float32 H x W in
    [0, 1] (straight, not premultiplied) or None. Either may instead hold quantised samples (uint8 with
    ``bit_depth`` 8, uint16 with 16): big upscaled images are kept that way, a quarter of the float size;
    :func:`as_float` gives the [0, 1] view. ``bit_depth`` (8 or 16) and ``mode`` describe the
    *source* so a writer can keep 16-bit end to end. ``exif`` always starts with ``b"Exif\\0\\0"`` and
    its orientation is 1, because the pixels are already upright.
    """

    color: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    mode: str = "RGB"
    format: str | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    #: what decoding could not keep (extra frames, clipped float samples): the CLI shows these as warnings
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        color = np.asarray(self.color)
        if color.ndim == 2:
            color = color[..., None]
        if color.ndim != 3 or color.shape[2] not in (1, 3):
            raise ValueError(f"color must be H x W x 1 or H x W x 3, got shape {color.shape}")
        self.color = color if _keeps_dtype(color, self.bit_depth) else color.astype(np.float32)
        if self.alpha is not None:
            alpha = np.asarray(self.alpha)
            if alpha.ndim == 3 and alpha.shape[2] == 1:
                alpha = alpha[..., 0]
            if alpha.shape != color.shape[:2]:
                raise ValueError(f"alpha must be H x W = {color.shape[:2]}, got shape {alpha.shape}")
            self.alpha = alpha if _keeps_dtype(alpha, self.bit_depth) else alpha.astype(np.float32)
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), like Pillow."""
        return int(self.color.shape[1]), int(self.color.shape[0])

    @property
    def channels(self) -> int:
        """Colour channels (1 or 3), alpha not counted."""
        return int(self.color.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.alpha is not None


# ---- reading -------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode an image file into :class:`ImageData` (see the module docstring for what is kept).

    ``max_pixels`` refuses images larger than that before their pixels are decoded (a tiny file can
    declare a gigantic image). Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, process-wide, twice
    its value refuses) still applies on top; raising it is the application's decision, not this
    function's. Every failure is an :class:`ImageReadError` with a one-line message naming the file.
    """
    p = Path(path)
    where = f"cannot read '{p}'"
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{where}: is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError(f"{where}: permission denied") from None
    except OSError as e:
        raise ImageReadError(f"{where}: {os_reason(e)}") from e
    return _decode(data, where, max_pixels)


def read_image_bytes(
    data: bytes, *, name: str = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> ImageData:
    """:func:`read_image` for bytes already in memory (an HTTP upload); ``name`` goes into messages."""
    return _decode(bytes(data), f"cannot read '{name}'", max_pixels)


_OPEN_LOCK = threading.Lock()


def _open(data: bytes, where: str) -> Image.Image:
    """Parse the header only. Pillow warns (DecompressionBombWarning) above half its hard limit; our
    own ``max_pixels`` check decides instead, so the warning is silenced here. ``catch_warnings`` swaps
    process-wide state, hence the lock (held for the header parse only, never for decoding)."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageReadError(
            f"{where}: image is {size}, over Pillow's decompression-bomb limit of "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,} (PIL.Image.MAX_IMAGE_PIXELS)"
        ) from None
    except UnidentifiedImageError:
        pass
    except Exception as e:  # noqa: BLE001 - any parser failure on user data is a read error
        raise ImageReadError(f"{where}: file is truncated or corrupt ({one_line(e)})") from e
    brand = data[8:12] if data[4:8] == b"ftyp" else b""
    if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
        if _register_heif():
            return _open_retry(data, where)
        raise ImageReadError(
            f"{where}: HEIC/HEIF images need the pillow-heif plugin (pip install pillow-heif)"
        )
    if brand in (b"avif", b"avis"):
        raise ImageReadError(f"{where}: this Pillow build cannot decode AVIF (pip install -U pillow)")
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        raise ImageReadError(f"{where}: TIFF is truncated, corrupt or of a layout Pillow cannot read")
    raise ImageReadError(f"{where}: not an image ({_EXPECTED})")


def _open_retry(data: bytes, where: str) -> Image.Image:
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(f"{where}: file is truncated or corrupt ({one_line(e)})") from e


def _register_heif() -> bool:
    """Enable HEIC/HEIF through the optional pillow-heif plugin, if it is installed."""
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _decode(data: bytes, where: str, max_pixels: int | None) -> ImageData:
    if not data:
        raise ImageReadError(f"{where}: file is empty ({_EXPECTED})")
    im = _open(data, where)
    try:
        w, h = im.size
        if max_pixels is not None and w * h > max_pixels:
            raise ImageReadError(
                f"{where}: image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                "(raise max_pixels to allow it)"
            )
        notes = _losses(im)
        img = _to_image_data(im, data, where)
        return replace(img, notes=img.notes + notes) if notes else img
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(f"{where}: image is over Pillow's decompression-bomb limit") from None
    except MemoryError:
        raise ImageReadError(
            f"{where}: not enough memory to decode a {im.size[0]}x{im.size[1]} image"
        ) from None
    except Exception as e:  # noqa: BLE001 - decoders raise many types on damaged files
        raise ImageReadError(f"{where}: file is truncated or corrupt ({one_line(e)})") from e
    finally:
        im.close()


def _losses(im: Image.Image) -> tuple[str, ...]:
    """What the single-frame, [0, 1] model of an image drops, said before the pixels are decoded
    (frames) or from the float samples themselves (clipping)."""
    notes = []
    frames = getattr(im, "n_frames", 1) or 1
    if frames > 1:
        notes.append(f"has {frames} frames; only the first is upscaled (use 'superres video' for animations)")
    if im.mode in ("P", "PA"):  # an upscale has far more than 256 colours: a palette would band it
        notes.append("palette image: upscaled and written in full colour (RGB), not as a palette")
    elif im.mode == "CMYK":
        notes.append("CMYK image: converted to RGB; the output is an RGB file")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if lo < 0.0 or hi > 1.0 or np.isnan(arr).any():
            notes.append(f"float samples span {lo:g}..{hi:g}; clipped to 0..1 (NaN as 0)")
        im.seek(0)
    return tuple(notes)


def _tile_rawmodes(im: Image.Image) -> list[str]:
    modes = []
    for tile in getattr(im, "tile", None) or []:
        args = tile[3]
        raw = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else None)
        if isinstance(raw, str):
            modes.append(raw)
    return modes


def _with_rawmode(im: Image.Image, change: dict[str, str]) -> None:
    """Point every decoder tile of a not-yet-loaded image at another unpacker (see module docstring)."""
    tiles = []
    for tile in im.tile:
        args = tile[3]
        if isinstance(args, str):
            args = change.get(args, args)
        elif isinstance(args, tuple) and args and isinstance(args[0], str):
            args = (change.get(args[0], args[0]), *args[1:])
        tiles.append(tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args))
    im.tile = tiles


def _low_byte_rawmode(raw: str) -> str:
    """The unpacker that keeps the low byte of each 16-bit sample, given the one that keeps the high
    byte (Pillow's ``X;16B`` keeps byte 0 of each pair, ``X;16L`` byte 1, ``X;16N`` means native)."""
    stem, order = raw[:-1], raw[-1]
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    return stem + ("L" if order == "B" else "B")


def _to_image_data(im: Image.Image, data: bytes, where: str) -> ImageData:
    fmt = im.format
    src_mode = im.mode
    icc = im.info.get("icc_profile") or None
    rawmodes = _tile_rawmodes(im)
    deep = [r for r in rawmodes if r.endswith(("16B", "16L", "16N"))]

    alpha16: np.ndarray | None = None
    if im.mode in ("RGB", "RGBA") and deep and len(deep) == len(rawmodes):
        # 16-bit colour that Pillow would cut to 8 bits.
        if deep[0].startswith("LA;"):  # gray+alpha PNG: 4 bytes/pixel, unpack them untouched as RGBA
            _with_rawmode(im, {r: "RGBA" for r in deep})
            im.load()
            b = np.asarray(im).astype(np.uint16)
            color16 = (b[..., 0] << 8 | b[..., 1])[..., None]
            alpha16 = b[..., 2] << 8 | b[..., 3]
            mode = "LA;16"
        else:
            im.load()
            hi = np.asarray(im).astype(np.uint16)
            lo_im = _open_retry(data, where)
            try:
                _with_rawmode(lo_im, {r: _low_byte_rawmode(r) for r in deep})
                lo_im.load()
                lo = np.asarray(lo_im)
            finally:
                lo_im.close()
            if lo.shape != hi.shape:
                raise ValueError("16-bit planes disagree")
            full = hi << 8 | lo
            color16, alpha16 = (full[..., :3], full[..., 3]) if full.shape[2] == 4 else (full, None)
            mode = "RGBA;16" if alpha16 is not None else "RGB;16"
        key = im.info.get("transparency")
        if alpha16 is None and isinstance(key, tuple) and len(key) == 3:
            alpha16 = np.where(np.all(color16 == np.array(key, np.uint16), axis=2), 0, 65535).astype(
                np.uint16
            )
        color = color16.astype(np.float32) / 65535.0
        alpha = None if alpha16 is None else alpha16.astype(np.float32) / 65535.0
        bit_depth = 16
    else:
        im.load()
        color, alpha, bit_depth, icc = _pil_pixels(im, icc)
        mode = src_mode

    exif_obj = im.getexif()
    orientation = exif_obj.get(_ORIENTATION, 1)
    color = _orient(color, orientation)
    if alpha is not None:
        alpha = _orient(alpha, orientation)
    exif = _exif_bytes(im, exif_obj)
    return ImageData(
        color=np.ascontiguousarray(color),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        bit_depth=bit_depth,
        mode=mode,
        format=fmt,
        icc_profile=icc,
        exif=exif,
    )


def _pil_pixels(
    im: Image.Image, icc: bytes | None
) -> tuple[np.ndarray, np.ndarray | None, int, bytes | None]:
    """A loaded Pillow image -> (color HxWxC float, alpha HxW float | None, bit depth, icc)."""
    mode = im.mode
    key = im.info.get("transparency")
    if mode == "1":
        im, mode = im.convert("L"), "L"
        key = None
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or key is not None
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode, key = im.mode, None
    elif mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc)
        mode, key = "RGB", None
    elif mode in ("RGBa", "La"):
        im = im.convert("RGBA" if mode == "RGBa" else "LA")
        mode = im.mode
    elif mode == "RGBX":
        im, mode = im.convert("RGB"), "RGB"
    elif mode in ("YCbCr", "HSV"):
        im, mode = im.convert("RGB"), "RGB"
    elif mode == "LAB":
        im, icc = _lab_to_rgb(im), None
        mode = "RGB"

    if mode in ("L", "LA", "RGB", "RGBA"):
        arr = np.asarray(im)
        if arr.ndim == 2:
            arr = arr[..., None]
        n = arr.shape[2]
        has_alpha = n in (2, 4)
        color8 = arr[..., : n - 1] if has_alpha else arr
        alpha = arr[..., n - 1].astype(np.float32) / 255.0 if has_alpha else None
        if alpha is None and key is not None:
            alpha = _key_alpha(color8, key)
        return color8.astype(np.float32) / 255.0, alpha, 8, icc
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        gray = np.clip(arr, 0, 65535).astype(np.uint16)[..., None]
        alpha = _key_alpha(gray, key) if key is not None else None
        return gray.astype(np.float32) / 65535.0, alpha, 16, icc
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0)
        return np.clip(arr, 0.0, 1.0)[..., None], None, 16, icc
    raise ValueError(f"unsupported colour mode {mode!r}")


def _key_alpha(color: np.ndarray, key: Any) -> np.ndarray | None:
    """PNG tRNS colour key -> a 0/1 alpha plane (only the exact key colour is transparent)."""
    if isinstance(key, int):
        key = (key,)
    if not isinstance(key, tuple) or len(key) != color.shape[2]:
        return None
    hit = np.all(color == np.array(key, dtype=color.dtype), axis=2)
    return np.where(hit, 0.0, 1.0).astype(np.float32)


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK -> sRGB. With an embedded CMYK ICC profile and LittleCMS (PIL.ImageCms) this is a real
    colour-managed conversion (perceptual intent). Without one it is Pillow's naive formula
    (R = (1 - C)(1 - K)), which is only an approximation of how the print would look. Either way the
    result is sRGB, so the CMYK profile is not carried over."""
    if icc and icc[16:20] == b"CMYK":
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if out is not None:
                return out, None
        except Exception as e:  # noqa: BLE001 - broken profile or no LittleCMS: fall back, but say so
            log.warning("CMYK ICC conversion failed (%s); using the plain CMYK->RGB formula", one_line(e))
    return im.convert("RGB"), None


def _lab_to_rgb(im: Image.Image) -> Image.Image:
    from PIL import ImageCms

    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    out = ImageCms.profileToProfile(im, lab, srgb, outputMode="RGB")
    assert out is not None
    return out


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to H x W [x C] pixels (same result as ImageOps.exif_transpose)."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


# Tags that describe a TIFF's own pixel layout: never copied into EXIF for another file.
_TIFF_LAYOUT_TAGS = {
    254,
    255,
    256,
    257,
    258,
    259,
    262,
    263,
    266,
    273,
    277,
    278,
    279,
    280,
    281,
    282,
    283,
    284,
    290,
    291,
    292,
    293,
    296,
    317,
    318,
    319,
    320,
    322,
    323,
    324,
    325,
    330,
    332,
    338,
    339,
    340,
    341,
    347,
    530,
    531,
    532,
    700,
    33723,
    34377,
    34675,
}


def _exif_bytes(im: Image.Image, exif_obj: Image.Exif) -> bytes | None:
    """The source's EXIF as bytes with orientation reset to 1 (the pixels are upright now)."""
    raw = im.info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        return _reset_orientation(_normalise_exif(bytes(raw)))
    if im.format != "TIFF" and len(exif_obj):  # e.g. PNG "Raw profile type exif" text chunks
        try:
            if _ORIENTATION in exif_obj:
                exif_obj[_ORIENTATION] = 1
            return _normalise_exif(exif_obj.tobytes())
        except Exception as e:  # noqa: BLE001 - metadata is best effort, pixels are what matter
            log.debug("EXIF not carried: %s", e)
            return None
    if im.format == "TIFF" and len(exif_obj):
        # TIFF keeps EXIF-like tags in its own directory: copy the descriptive ones only.
        try:
            out = Image.Exif()
            for tag, value in exif_obj.items():
                if tag in (0x8769, 0x8825):
                    sub = exif_obj.get_ifd(tag)
                    if sub:
                        out[tag] = sub
                elif tag not in _TIFF_LAYOUT_TAGS:
                    out[tag] = value
            if _ORIENTATION in out:
                out[_ORIENTATION] = 1
            return _normalise_exif(out.tobytes()) if len(out) else None
        except Exception as e:  # noqa: BLE001 - metadata is best effort, pixels are what matter
            log.debug("TIFF EXIF not carried: %s", e)
    return None


def _normalise_exif(raw: bytes) -> bytes:
    """One spelling for EXIF bytes: the JPEG APP1 form, ``Exif\\0\\0`` + TIFF header."""
    if raw.startswith(_EXIF_PREFIX):
        return raw
    if raw[:4] in (b"II*\x00", b"MM\x00*"):
        return _EXIF_PREFIX + raw
    return raw


def _reset_orientation(exif: bytes) -> bytes:
    """Set the orientation entry of IFD0 to 1 in place, byte for byte, so maker notes and every
    offset stay valid (re-serialising EXIF through Pillow can break them)."""
    tiff = 6 if exif.startswith(_EXIF_PREFIX) else 0
    head = exif[tiff : tiff + 8]
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return exif
    end = "<" if head[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(end + "I", head[4:8])
        (count,) = struct.unpack_from(end + "H", exif, tiff + ifd)
        for i in range(count):
            pos = tiff + ifd + 2 + 12 * i
            tag, typ, n = struct.unpack_from(end + "HHI", exif, pos)
            if tag == _ORIENTATION and typ == 3 and n == 1:
                (value,) = struct.unpack_from(end + "H", exif, pos + 8)
                if value == 1:
                    return exif
                out = bytearray(exif)
                struct.pack_into(end + "H", out, pos + 8, 1)
                return bytes(out)
    except struct.error:
        return exif
    return exif


# ---- building ImageData from arrays and Pillow images ------------------------------------------------------


def from_array(
    arr: np.ndarray, *, alpha: np.ndarray | None = None, bit_depth: int | None = None
) -> ImageData:
    """Wrap an array: uint8 (8-bit), uint16 (16-bit) or float in [0, 1]; H x W (gray), H x W x 1,
    H x W x 2 (gray + alpha), H x W x 3 (RGB) or H x W x 4 (RGBA). ``bit_depth`` overrides the one
    inferred from the dtype (floats default to 8)."""
    a = np.asarray(arr)
    depth, scale = _dtype_depth(a, "array")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected H x W or H x W x 1/2/3/4 pixels, got shape {np.asarray(arr).shape}")
    color = a
    alpha_arr: np.ndarray | None = None
    if a.shape[2] in (2, 4):
        if alpha is not None:
            raise ValueError("alpha given twice: in the array's last channel and as alpha=")
        color, alpha_arr = a[..., :-1], a[..., -1]
        alpha_scale = scale
    elif alpha is not None:
        alpha_arr = np.asarray(alpha)
        _, alpha_scale = _dtype_depth(alpha_arr, "alpha")
    color_f = color.astype(np.float32) / scale if scale != 1 else color.astype(np.float32)
    alpha_f = None
    if alpha_arr is not None:
        alpha_f = (
            alpha_arr.astype(np.float32) / alpha_scale if alpha_scale != 1 else alpha_arr.astype(np.float32)
        )
    depth = bit_depth or depth
    gray = color.shape[2] == 1
    mode = ("LA" if gray else "RGBA") if alpha_f is not None else ("L" if gray else "RGB")
    if depth == 16:
        mode = "I;16" if mode == "L" else mode + ";16"
    return ImageData(color=color_f, alpha=alpha_f, bit_depth=depth, mode=mode)


def _dtype_depth(a: np.ndarray, what: str) -> tuple[int, float]:
    if a.dtype == np.uint8:
        return 8, 255.0
    if a.dtype == np.uint16:
        return 16, 65535.0
    if a.dtype.kind == "f":
        return 8, 1.0
    if a.dtype == np.bool_:
        return 8, 1.0
    raise ValueError(f"{what} must be uint8, uint16 or float in [0, 1], got {a.dtype}")


def from_pil(im: Image.Image) -> ImageData:
    """An in-memory Pillow image -> ImageData (no EXIF rotation: the caller holds the image as is)."""
    icc = im.info.get("icc_profile") or None
    mode = im.mode
    color, alpha, depth, icc = _pil_pixels(im, icc)
    raw_exif = im.info.get("exif")
    exif = _normalise_exif(bytes(raw_exif)) if isinstance(raw_exif, (bytes, bytearray)) and raw_exif else None
    return ImageData(
        color=color, alpha=alpha, bit_depth=depth, mode=mode, format=im.format, icc_profile=icc, exif=exif
    )


def to_pil(img: ImageData) -> Image.Image:
    """ImageData -> Pillow image (L, LA, RGB, RGBA; I;16 for opaque 16-bit gray). Pillow has no 16-bit
    colour mode, so 16-bit colour comes back as 8-bit here: use :func:`write_image` to keep 16 bits."""
    if img.bit_depth == 16 and img.channels == 1 and img.alpha is None:
        im = Image.fromarray(to_uint(img.color[..., 0], 16))
    else:
        im = Image.fromarray(_samples(img, 8))
    if img.icc_profile and _icc_fits(img.icc_profile, img.channels):
        im.info["icc_profile"] = img.icc_profile
    if img.exif:
        im.info["exif"] = img.exif
    return im


def _keeps_dtype(a: np.ndarray, bit_depth: int) -> bool:
    """float32, or integer samples whose full scale is ``bit_depth``: stored without conversion."""
    return a.dtype == np.float32 or (a.dtype == np.uint8 and bit_depth == 8) or (a.dtype == np.uint16 and bit_depth == 16)


def as_float(a: np.ndarray) -> np.ndarray:
    """[0, 1] float32 view of float or quantised (uint8/uint16) samples."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a if a.dtype == np.float32 else a.astype(np.float32)


def to_uint(img_float: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float [0, 1] -> uint8/uint16 with clipping and round-half-up (NaN -> 0), the one rounding rule
    used for every file written, so an 8-bit value read and written back is unchanged. Integer samples
    pass through (or are rescaled between 8 and 16 bits) without a float copy."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    a = np.asarray(img_float)
    if a.dtype == np.uint8:
        return a if bit_depth == 8 else a.astype(np.uint16) * 257
    if a.dtype == np.uint16:
        return a if bit_depth == 16 else ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    maxv = 255.0 if bit_depth == 8 else 65535.0
    y = np.array(img_float, dtype=np.float32, copy=True)
    np.nan_to_num(y, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(y, 0.0, 1.0, out=y)
    y *= maxv
    y += 0.5
    np.floor(y, out=y)
    return y.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _samples(img: ImageData, bit_depth: int) -> np.ndarray:
    """Interleaved H x W x C integer samples, alpha last."""
    color = to_uint(img.color, bit_depth)
    if img.alpha is None:
        return color[..., 0] if color.shape[2] == 1 else color
    return np.concatenate([color, to_uint(img.alpha, bit_depth)[..., None]], axis=2)


def _icc_fits(icc: bytes, channels: int) -> bool:
    """An ICC profile describes one colour space; a gray profile on RGB pixels (or the reverse) makes
    decoders ignore or reject it, so such a profile is not written."""
    space = icc[16:20]
    return (space == b"GRAY") if channels == 1 else (space == b"RGB ")


# ---- writing -------------------------------------------------------------------------------------------


class _Prepared(NamedTuple):
    format: str
    samples: np.ndarray  # H x W [x C] uint8 / uint16, alpha last
    bit_depth: int
    icc: bytes | None
    exif: bytes | None
    quality: int


def write_image(
    img: ImageData,
    path: str | os.PathLike[str],
    *,
    quality: int = 95,
    bit_depth: int | None = None,
    overwrite: bool = True,
    flatten_alpha: tuple[int, int, int] | None = None,
) -> Path:
    """Write ``img`` in the format its suffix names (.png .jpg .webp .tif .bmp; .avif when Pillow has
    AVIF; .heic with pillow-heif) and return the path.

    ``bit_depth`` defaults to the source's where the format can hold it (16 for PNG/TIFF), else 8;
    asking for 16 in a format that cannot hold it is an error, never a silent downgrade. Alpha is
    written where the format has it; for JPEG/BMP it is refused unless ``flatten_alpha`` gives an
    (r, g, b) 0-255 background to composite onto (given, it always flattens). ICC and EXIF are carried
    to formats that hold them (EXIF orientation forced to 1). Missing parent folders are created. The
    write is atomic: either the complete file appears or nothing does (an old file is kept).
    """
    p = Path(path)
    where = f"cannot write '{p}'"
    fmt = _SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        shown = p.suffix or "(no suffix)"
        raise ImageWriteError(
            f"{where}: unknown image format {shown} (expected .png, .jpg, .webp, .tif, .bmp)"
        )
    prepared = _prepare(img, fmt, quality, bit_depth, flatten_alpha, where)
    try:
        with atomic_write(p, overwrite=overwrite) as tmp, open(tmp, "wb") as fp:
            _encode(prepared, fp, where)
    except ImageWriteError:
        raise
    except FileExistsError:
        raise ImageWriteError(f"{where}: file exists (pass overwrite=True to replace it)") from None
    except OSError as e:
        raise ImageWriteError(f"{where}: {os_reason(e)}") from e
    except MemoryError:
        raise ImageWriteError(
            f"{where}: not enough memory to encode a {img.size[0]}x{img.size[1]} image"
        ) from None
    except Exception as e:  # noqa: BLE001 - encoder failures become one-line user errors
        raise ImageWriteError(f"{where}: {fmt} encoder failed ({one_line(e)})") from e
    return p


def encode_image(
    img: ImageData,
    format: str = "png",
    *,
    quality: int = 95,
    bit_depth: int | None = None,
    flatten_alpha: tuple[int, int, int] | None = None,
) -> bytes:
    """The bytes :func:`write_image` would write, for responses that never touch the disk.
    ``format`` is a name or suffix: "png", ".jpg", "JPEG", "webp", "tiff", ..."""
    key = "." + format.lower().lstrip(".")
    fmt = _SUFFIX_FORMATS.get(key) or _SUFFIX_FORMATS.get(
        "." + {"jpeg": "jpg", "tiff": "tif"}.get(key[1:], "")
    )
    where = f"cannot encode image as {format!r}"
    if fmt is None:
        raise ImageWriteError(f"{where}: unknown image format (expected png, jpeg, webp, tiff, bmp)")
    prepared = _prepare(img, fmt, quality, bit_depth, flatten_alpha, where)
    buf = io.BytesIO()
    try:
        _encode(prepared, buf, where)
    except ImageWriteError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageWriteError(f"{where}: {fmt} encoder failed ({one_line(e)})") from e
    return buf.getvalue()


def _prepare(
    img: ImageData,
    fmt: str,
    quality: int,
    bit_depth: int | None,
    flatten_alpha: tuple[int, int, int] | None,
    where: str,
) -> _Prepared:
    """Every check that can fail without touching the disk, done before a temporary file exists."""
    if not 1 <= int(quality) <= 100:
        raise ImageWriteError(f"{where}: quality must be 1-100, got {quality}")
    if bit_depth is None:
        depth = img.bit_depth if fmt in _DEEP_FORMATS else 8
    elif bit_depth not in (8, 16):
        raise ImageWriteError(f"{where}: bit_depth must be 8 or 16, got {bit_depth}")
    elif bit_depth == 16 and fmt not in _DEEP_FORMATS:
        raise ImageWriteError(f"{where}: {fmt} holds 8 bits per channel; use .png or .tif for 16-bit")
    else:
        depth = bit_depth

    color, alpha = img.color, img.alpha
    if alpha is not None and flatten_alpha is not None:
        color, alpha = as_float(color), as_float(alpha)
        bg = np.asarray(flatten_alpha, dtype=np.float32).reshape(-1) / 255.0
        if bg.size not in (1, 3):
            raise ImageWriteError(
                f"{where}: flatten_alpha must be an (r, g, b) colour, got {flatten_alpha!r}"
            )
        if color.shape[2] == 1 and bg.size == 3 and not np.all(bg == bg[0]):
            color = np.repeat(color, 3, axis=2)
        if color.shape[2] == 1:
            bg = bg[:1]
        a = alpha[..., None]
        color = color * a + bg * (1.0 - a)
        alpha = None
    if alpha is not None and fmt not in _ALPHA_FORMATS:
        raise ImageWriteError(
            f"{where}: {fmt} cannot store transparency; save as .png or .webp, "
            "or pass flatten_alpha=(r, g, b) to composite onto a background"
        )
    if fmt in _RGB_ONLY_FORMATS and color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    if fmt == "AVIF":
        from PIL import features

        if not features.check("avif"):
            raise ImageWriteError(f"{where}: this Pillow build cannot write AVIF (pip install -U pillow)")
    if fmt == "HEIF" and not _register_heif():
        raise ImageWriteError(
            f"{where}: HEIC/HEIF output needs the pillow-heif plugin (pip install pillow-heif)"
        )

    channels = color.shape[2]
    icc = img.icc_profile if img.icc_profile and _icc_fits(img.icc_profile, channels) else None
    exif = _reset_orientation(_normalise_exif(img.exif)) if img.exif else None
    if fmt in _NO_METADATA_FORMATS:
        icc = exif = None
    samples = _samples(ImageData(color=color, alpha=alpha, bit_depth=depth), depth)
    return _Prepared(fmt, samples, depth, icc, exif, int(quality))


def _encode(p: _Prepared, fp: IO[bytes], where: str) -> None:
    if p.bit_depth == 16 and p.format == "PNG":
        _write_png16(fp, p.samples, p.icc, p.exif)
        return
    if p.bit_depth == 16 and p.format == "TIFF":
        _write_tiff16(fp, p.samples, p.icc, p.exif, where)
        return
    im = Image.fromarray(p.samples)
    kw: dict[str, Any] = {}
    if p.icc:
        kw["icc_profile"] = p.icc
    if p.exif:
        kw["exif"] = p.exif
    has_alpha = im.mode in ("LA", "RGBA")
    if p.format == "PNG":
        kw["compress_level"] = 6
    elif p.format == "JPEG":
        # 4:4:4 chroma at high quality: 4:2:0 smears coloured edges, one of the "colour shift" reports.
        kw.update(quality=p.quality, subsampling=0 if p.quality >= 90 else 2)
    elif p.format == "WEBP":
        kw.update(quality=p.quality, lossless=p.quality >= 100, method=4)
        if has_alpha:
            kw["exact"] = True  # keep colours under transparent pixels (no halo after re-editing)
    elif p.format == "TIFF":
        from PIL import features

        if features.check("libtiff"):
            kw["compression"] = "tiff_deflate"
    elif p.format in ("AVIF", "HEIF"):
        kw["quality"] = p.quality
    im.save(fp, p.format, **kw)


# ---- 16-bit PNG ------------------------------------------------------------------------------------------


def _png_chunk(fp: IO[bytes], tag: bytes, payload: bytes) -> None:
    fp.write(struct.pack(">I", len(payload)) + tag + payload)
    fp.write(struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF))


def _write_png16(fp: IO[bytes], samples: np.ndarray, icc: bytes | None, exif: bytes | None) -> None:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA) with iCCP and eXIf chunks; rows use the adaptive
    filter choice libpng uses (smallest sum of absolute signed bytes)."""
    if samples.ndim == 2:
        samples = samples[..., None]
    h, w, c = samples.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    fp.write(b"\x89PNG\r\n\x1a\n")
    _png_chunk(fp, b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
    if icc:
        _png_chunk(fp, b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        _png_chunk(fp, b"eXIf", exif[len(_EXIF_PREFIX) :] if exif.startswith(_EXIF_PREFIX) else exif)
    rows = samples.astype(">u2").view(np.uint8).reshape(h, w * c * 2)
    bpp = 2 * c
    comp = zlib.compressobj(6)
    pending = bytearray()
    block = max(1, (1 << 22) // max(1, rows.shape[1]))  # ~4 MiB of rows at a time bounds memory
    for y0 in range(0, h, block):
        prev = rows[y0 - 1 : y0] if y0 else np.zeros((1, rows.shape[1]), np.uint8)
        pending += comp.compress(_png_filter(rows[y0 : y0 + block], prev, bpp).tobytes())
        while len(pending) >= 1 << 20:
            _png_chunk(fp, b"IDAT", bytes(pending[: 1 << 20]))
            del pending[: 1 << 20]
    pending += comp.flush()
    for i in range(0, len(pending), 1 << 20):
        _png_chunk(fp, b"IDAT", bytes(pending[i : i + (1 << 20)]))
    if not pending:
        _png_chunk(fp, b"IDAT", b"")
    _png_chunk(fp, b"IEND", b"")


def _png_filter(x: np.ndarray, prev_row: np.ndarray, bpp: int) -> np.ndarray:
    """Filter a block of raw rows (all five PNG filters are vectorised; encoding, unlike decoding, only
    looks at the unfiltered neighbours) and prefix each row with the chosen filter byte."""
    up = np.concatenate([prev_row, x[:-1]], axis=0)
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)
    upleft[:, bpp:] = up[:, :-bpp]
    a, b, c = left.astype(np.int16), up.astype(np.int16), upleft.astype(np.int16)
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)
    avg = ((a + b) >> 1).astype(np.uint8)
    cands = np.stack([x, x - left, x - up, x - avg, x - paeth])  # uint8 arithmetic wraps mod 256
    cost = np.abs(cands.view(np.int8).astype(np.int32)).sum(axis=2)
    best = np.argmin(cost, axis=0)
    out = np.empty((x.shape[0], x.shape[1] + 1), np.uint8)
    out[:, 0] = best
    out[:, 1:] = cands[best, np.arange(x.shape[0])]
    return out


# ---- 16-bit TIFF -----------------------------------------------------------------------------------------


def _write_tiff16(
    fp: IO[bytes], samples: np.ndarray, icc: bytes | None, exif: bytes | None, where: str
) -> None:
    """A baseline 16-bit TIFF: little-endian, chunky, deflate with the horizontal predictor, unassociated
    alpha. The directory is serialised by Pillow's TIFF tag writer; the pixels are ours."""
    from PIL import TiffImagePlugin, TiffTags

    if samples.ndim == 2:
        samples = samples[..., None]
    if samples.shape[2] == 2:
        # Pillow (and some viewers) cannot open 16-bit gray+alpha TIFFs: store it as RGBA, losslessly.
        samples = samples[..., [0, 0, 0, 1]]
    h, w, c = samples.shape
    pred = samples.astype("<u2")
    pred[:, 1:] -= samples[:, :-1].astype("<u2")  # predictor 2: differences along the row, mod 2**16
    row_bytes = w * c * 2
    rows_per_strip = max(1, min(h, (1 << 18) // max(1, row_bytes)))
    strips = [zlib.compress(pred[y : y + rows_per_strip].tobytes(), 6) for y in range(0, h, rows_per_strip)]
    if sum(map(len, strips)) + len(icc or b"") + len(exif or b"") > (1 << 32) - (1 << 20):
        raise ImageWriteError(f"{where}: image too large for a classic TIFF (over 4 GiB); use .png")

    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    short, long_ = TiffTags.SHORT, TiffTags.LONG

    def put(tag: int, value: Any, typ: int) -> None:
        ifd[tag] = value
        ifd.tagtype[tag] = typ

    if exif:
        ex = Image.Exif()
        ex.load(exif)
        for tag, value in ex.items():
            if tag in (0x8769, 0x8825):
                sub = ex.get_ifd(tag)
                if sub:
                    put(tag, dict(sub), long_)
            elif tag not in _TIFF_LAYOUT_TAGS:
                ifd[tag] = value  # Pillow infers the type from its tag table or the value
        if _ORIENTATION in ifd:
            put(_ORIENTATION, 1, short)
    put(256, w, long_)
    put(257, h, long_)
    put(258, (16,) * c, short)
    put(259, 8, short)  # Adobe deflate
    put(262, 1 if c <= 2 else 2, short)  # BlackIsZero / RGB
    put(273, tuple(int(v) for v in np.cumsum([0] + [len(s) for s in strips[:-1]])), long_)
    put(277, c, short)
    put(278, rows_per_strip, long_)
    put(279, tuple(len(s) for s in strips), long_)
    put(282, TiffImagePlugin.IFDRational(72, 1), TiffTags.RATIONAL)
    put(283, TiffImagePlugin.IFDRational(72, 1), TiffTags.RATIONAL)
    put(284, 1, short)
    put(296, 2, short)
    put(317, 2, short)  # horizontal differencing
    if c in (2, 4):
        put(338, 2, short)  # unassociated (straight) alpha
    put(339, (1,) * c, short)
    if icc:
        put(34675, icc, TiffTags.UNDEFINED)
    # Pillow's layout: header, directory (+ its data), then the strips; StripOffsets are stored
    # relative to the end of the directory and shifted by tobytes().
    fp.write(b"II*\x00" + struct.pack("<I", 8))
    fp.write(ifd.tobytes(8))
    for s in strips:
        fp.write(s)


# ---- messages --------------------------------------------------------------------------------------------


def os_reason(e: OSError) -> str:
    """One line saying why a file operation failed (permission, no space, a file in the folder path...)."""
    if isinstance(e, NotADirectoryError):
        return "a part of the folder path is a file, not a folder"
    if isinstance(e, PermissionError):
        return "permission denied"
    if e.errno == 28:
        return "no space left on the device"
    return e.strerror or one_line(e)
