"""Image I/O: what a user notices when a file goes in and comes out (alpha, gray, 16 bits, colours,
rotation, metadata, clear errors, no half-written files)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, TiffImagePlugin

from superres.errors import ImageReadError, ImageWriteError
from superres.io import ImageData, encode_image, from_array, read_image, read_image_bytes, write_image
from superres.io import image as image_mod
from superres.io.atomic import atomic_write
from superres.io.image import DEFAULT_MAX_PIXELS, from_pil, to_pil, to_uint

SEED = 1234


def _rng(offset: int = 0) -> np.random.Generator:
    return np.random.default_rng(SEED + offset)


def _samples16(img: ImageData) -> np.ndarray:
    """The 16-bit samples of an ImageData, alpha last."""
    parts = [to_uint(img.color, 16)]
    if img.alpha is not None:
        parts.append(to_uint(img.alpha, 16)[..., None])
    return np.concatenate(parts, axis=2)


def _samples8(img: ImageData) -> np.ndarray:
    parts = [to_uint(img.color, 8)]
    if img.alpha is not None:
        parts.append(to_uint(img.alpha, 8)[..., None])
    return np.concatenate(parts, axis=2)


def _deep_random(h: int, w: int, c: int, offset: int = 0) -> np.ndarray:
    """16-bit samples with no value a multiple of 257 (an 8-bit value scaled up would be), a smooth
    band (exercises PNG's Sub/Up/Paeth filters) and the extremes."""
    arr = _rng(offset).integers(0, 65536, (h, w, c), dtype=np.uint16)
    arr[: h // 3] = np.linspace(1, 65534, w).astype(np.uint16)[None, :, None]
    arr[arr % 257 == 0] += 1
    arr[0, 0] = 0
    arr[-1, -1] = 65535
    return arr


def _png(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def _only_line(msg: str) -> str:
    assert "\n" not in msg, msg
    return msg


# ---- modes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_rgba_round_trip_keeps_alpha_exactly(tmp_path: Path, suffix: str) -> None:
    arr = _rng().integers(0, 256, (33, 47, 4), dtype=np.uint8)
    arr[:5, :, 3] = 0  # fully transparent rows with colour underneath
    src = tmp_path / "in.png"
    Image.fromarray(arr, "RGBA").save(src)
    img = read_image(src)
    assert img.mode == "RGBA" and img.channels == 3 and img.alpha is not None and img.bit_depth == 8
    out = write_image(img, tmp_path / f"out{suffix}", quality=100)  # 100 = lossless WebP
    back = read_image(out)
    assert Image.open(out).mode == "RGBA"
    assert np.array_equal(_samples8(back)[..., 3], arr[..., 3])
    assert np.array_equal(_samples8(back), arr)


def test_gray_stays_gray(tmp_path: Path) -> None:
    arr = _rng().integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(arr, "L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.mode == "L" and img.color.shape == (20, 30, 1) and img.alpha is None
    for suffix in (".png", ".jpg", ".tif", ".bmp"):
        out = write_image(img, tmp_path / f"o{suffix}")
        assert Image.open(out).mode == "L", suffix
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), arr)


def test_gray_alpha_stays_gray_alpha(tmp_path: Path) -> None:
    arr = _rng().integers(0, 256, (20, 30, 2), dtype=np.uint8)
    Image.fromarray(arr, "LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.mode == "LA" and img.channels == 1 and img.alpha is not None
    out = write_image(img, tmp_path / "o.png")
    reopened = Image.open(out)
    assert reopened.mode == "LA"
    assert np.array_equal(np.asarray(reopened), arr)


def test_one_bit_becomes_gray(tmp_path: Path) -> None:
    bits = _rng().integers(0, 2, (16, 24)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    assert img.mode == "1" and img.channels == 1
    assert set(np.unique(to_uint(img.color))) <= {0, 255}
    assert np.array_equal(to_uint(img.color)[..., 0] == 255, bits)


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    idx = _rng().integers(0, 4, (12, 18), dtype=np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [0] * (256 * 3 - 12))
    im.save(tmp_path / "p.png", transparency=2)  # index 2 (blue) is transparent
    img = read_image(tmp_path / "p.png")
    assert img.mode == "P" and img.channels == 3 and img.alpha is not None
    assert np.array_equal(img.alpha == 0, idx == 2)
    rgb = to_uint(img.color)
    assert np.array_equal(rgb[idx == 0], np.tile([255, 0, 0], ((idx == 0).sum(), 1)))
    out = write_image(img, tmp_path / "o.png")
    assert Image.open(out).mode == "RGBA"


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    Image.fromarray(_rng().integers(0, 255, (8, 8), dtype=np.uint8), "P").save(tmp_path / "p.gif")
    img = read_image(tmp_path / "p.gif")
    assert img.channels == 3 and img.alpha is None


def test_cmyk_jpeg_becomes_rgb_with_sensible_colours(tmp_path: Path) -> None:
    patches = {
        "cyan": (255, 0, 0, 0),
        "magenta": (0, 255, 0, 0),
        "yellow": (0, 0, 255, 0),
        "black": (0, 0, 0, 255),
        "white": (0, 0, 0, 0),
    }
    expect = {
        "cyan": (0, 255, 255),
        "magenta": (255, 0, 255),
        "yellow": (255, 255, 0),
        "black": (0, 0, 0),
        "white": (255, 255, 255),
    }
    arr = np.concatenate([np.tile(np.array(v, np.uint8), (16, 16, 1)) for v in patches.values()], axis=1)
    Image.fromarray(arr, "CMYK").save(tmp_path / "c.jpg", quality=95)
    img = read_image(tmp_path / "c.jpg")
    assert img.mode == "CMYK" and img.channels == 3 and img.icc_profile is None
    rgb = to_uint(img.color).astype(int)
    for i, name in enumerate(patches):
        centre = rgb[8, 16 * i + 8]
        assert np.abs(centre - np.array(expect[name])).max() <= 12, (name, centre)


def test_cmyk_with_unusable_profile_falls_back_to_plain_conversion(tmp_path: Path) -> None:
    bogus_icc = b"\x00" * 16 + b"CMYK" + b"\x00" * 108  # says CMYK, is not a valid profile
    arr = np.tile(np.array([255, 0, 0, 0], np.uint8), (8, 8, 1))
    Image.fromarray(arr, "CMYK").save(tmp_path / "c.jpg", quality=95, icc_profile=bogus_icc)
    rgb = to_uint(read_image(tmp_path / "c.jpg").color)[4, 4].astype(int)
    assert rgb[0] < 20 and rgb[1] > 235 and rgb[2] > 235


# ---- 16 bits --------------------------------------------------------------------------------------------


def test_16bit_gray_png_keeps_all_16_bits(tmp_path: Path) -> None:
    arr = _deep_random(23, 31, 1)[..., 0]
    Image.fromarray(arr).save(tmp_path / "g16.png")  # Pillow's own 16-bit gray encoder
    img = read_image(tmp_path / "g16.png")
    assert img.bit_depth == 16 and img.mode.startswith("I;16") and img.channels == 1
    assert np.array_equal(_samples16(img)[..., 0], arr)
    out = write_image(img, tmp_path / "o.png")
    reopened = Image.open(out)
    assert reopened.mode.startswith("I;16")
    assert np.array_equal(np.asarray(reopened).astype(np.uint16), arr)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_round_trip_keeps_all_16_bits(tmp_path: Path, channels: int, suffix: str) -> None:
    arr = _deep_random(37, 53, channels, offset=channels)
    img = from_array(arr)
    assert img.bit_depth == 16
    out = write_image(img, tmp_path / f"o{suffix}")
    back = read_image(out)
    stored_as_rgba = channels == 2 and suffix == ".tif"  # 16-bit gray+alpha TIFF is stored as RGBA
    assert back.bit_depth == 16 and back.channels == (1 if channels <= 2 and not stored_as_rgba else 3)
    got = _samples16(back)
    if stored_as_rgba:
        assert np.array_equal(got[..., 0], got[..., 1])
        got = got[..., [0, 3]]
    assert np.array_equal(got, arr)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_files_from_another_encoder_keep_16_bits(tmp_path: Path, channels: int) -> None:
    """FFmpeg (through PyAV) writes the 16-bit PNG and TIFFs (several compressions), and decodes ours."""
    av = pytest.importorskip("av", reason="PyAV is the independent 16-bit encoder/decoder here")
    arr = _deep_random(21, 17, channels, offset=10 + channels)
    cases = [("png", {3: "rgb48be", 4: "rgba64be"}[channels], {})] + [
        ("tiff", {3: "rgb48le", 4: "rgba64le"}[channels], {"compression_algo": a})
        for a in ("raw", "packbits", "lzw", "deflate")
    ]
    for codec, pix, opts in cases:
        path = (
            tmp_path / f"ff_{codec}_{opts.get('compression_algo', '')}.{'png' if codec == 'png' else 'tif'}"
        )
        with av.open(str(path), "w", format="image2") as out:
            stream = out.add_stream(codec, rate=1)
            stream.width, stream.height, stream.pix_fmt = arr.shape[1], arr.shape[0], pix
            stream.options = opts
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format=pix)):
                out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        assert np.array_equal(_samples16(read_image(path)), arr), path.name
    for suffix in (".png", ".tif"):
        ours = write_image(from_array(arr), tmp_path / f"ours{suffix}")
        with av.open(str(ours)) as container:
            frame = next(container.decode(video=0))
            decoded = frame.reformat(format={3: "rgb48le", 4: "rgba64le"}[channels]).to_ndarray()
        assert np.array_equal(decoded, arr), suffix


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + tag
        + payload
        + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)
    )


def _png16_interlaced(arr: np.ndarray) -> bytes:
    """A hand-made Adam7-interlaced 16-bit PNG (unfiltered rows), independent of the module's writer."""
    h, w, c = arr.shape
    raw = b""
    for y0, x0, dy, dx in [
        (0, 0, 8, 8),
        (0, 4, 8, 8),
        (4, 0, 8, 4),
        (0, 2, 4, 4),
        (2, 0, 4, 2),
        (0, 1, 2, 2),
        (1, 0, 2, 1),
    ]:
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            rows = sub.astype(">u2").view(np.uint8).reshape(sub.shape[0], -1)
            raw += b"".join(b"\x00" + r.tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_interlaced_16bit_png_keeps_16_bits(channels: int) -> None:
    arr = _deep_random(13, 11, channels, offset=20 + channels)
    img = read_image_bytes(_png16_interlaced(arr))
    assert img.mode == {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    assert np.array_equal(_samples16(img), arr)


@pytest.mark.parametrize("order", [b"II", b"MM"])
def test_uncompressed_16bit_tiff_either_byte_order(order: bytes) -> None:
    arr = _deep_random(9, 7, 4, offset=30)
    end = "<" if order == b"II" else ">"
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=order)
    pixels = arr.astype(end + "u2").tobytes()
    for tag, value, typ in [
        (256, 7, 4),
        (257, 9, 4),
        (258, (16,) * 4, 3),
        (259, 1, 3),
        (262, 2, 3),
        (273, 0, 4),
        (277, 4, 3),
        (278, 9, 4),
        (279, len(pixels), 4),
        (284, 1, 3),
        (338, 2, 3),
    ]:
        ifd[tag] = value
        ifd.tagtype[tag] = typ
    magic = order + (b"*\x00" if order == b"II" else b"\x00*")
    data = magic + struct.pack(end + "I", 8) + ifd.tobytes(8) + pixels
    img = read_image_bytes(data)
    assert img.mode == "RGBA;16"
    assert np.array_equal(_samples16(img), arr)


def test_16bit_source_to_jpeg(tmp_path: Path) -> None:
    img = from_array(_deep_random(8, 8, 3))
    out = write_image(img, tmp_path / "o.jpg")  # default: the best the format holds (8-bit)
    assert Image.open(out).mode == "RGB"
    with pytest.raises(ImageWriteError, match=r"8 bits per channel.*\.png or \.tif") as e:
        write_image(img, tmp_path / "p.jpg", bit_depth=16)
    _only_line(str(e.value))
    assert not (tmp_path / "p.jpg").exists()


def test_bit_depth_8_on_request(tmp_path: Path) -> None:
    img = from_array(_deep_random(8, 8, 3))
    back = read_image(write_image(img, tmp_path / "o.png", bit_depth=8))
    assert back.bit_depth == 8
    assert np.abs(_samples16(back).astype(int) - _deep_random(8, 8, 3).astype(int)).max() <= 129


# ---- orientation and metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(orientation: int) -> None:
    arr = _rng().integers(0, 256, (4, 6, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "superres-test"
    data = _png(im, exif=exif)
    img = read_image_bytes(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert np.array_equal(to_uint(img.color), expected)
    out_exif = Image.Exif()
    out_exif.load(img.exif)
    assert out_exif[0x0112] == 1 and out_exif[0x010F] == "superres-test"


def test_rotated_jpeg_comes_out_upright(tmp_path: Path) -> None:
    arr = np.zeros((40, 64, 3), np.uint8)
    arr[:, :32] = (255, 0, 0)  # left half red, right half blue, as stored
    arr[:, 32:] = (0, 0, 255)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    exif[0x010F] = "superres-test"
    im.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    img = read_image(tmp_path / "phone.jpg")
    assert img.size == (40, 64)  # width and height swapped
    rgb = to_uint(img.color).astype(int)
    assert rgb[5, 20, 0] > 200 and rgb[-5, 20, 2] > 200  # red on top, blue at the bottom
    out = write_image(img, tmp_path / "out.jpg")
    reopened = Image.open(out)
    assert reopened.size == (40, 64)
    assert reopened.getexif()[0x0112] == 1 and reopened.getexif()[0x010F] == "superres-test"


@pytest.mark.parametrize(
    "suffix,bit_depth",
    [(".png", 8), (".png", 16), (".jpg", 8), (".webp", 8), (".tif", 8), (".tif", 16), (".avif", 8)],
)
def test_icc_profile_and_exif_are_carried(tmp_path: Path, suffix: str, bit_depth: int) -> None:
    if suffix == ".avif":
        from PIL import features

        if not features.check("avif"):
            pytest.skip("this Pillow build has no AVIF")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(_rng().integers(0, 256, (16, 16, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x010F] = "superres-test"
    exif[0x0110] = "model-42"
    img = read_image_bytes(_png(im, exif=exif, icc_profile=icc))
    assert img.icc_profile == icc
    out = write_image(img, tmp_path / f"o{suffix}", bit_depth=bit_depth)
    reopened = Image.open(out)
    assert reopened.info.get("icc_profile") == icc
    assert reopened.getexif().get(0x010F) == "superres-test" and reopened.getexif().get(0x0110) == "model-42"
    again = read_image(out)
    assert again.icc_profile == icc and again.exif is not None


def test_gray_profile_not_written_onto_rgb(tmp_path: Path) -> None:
    gray_icc = b"\x00" * 16 + b"GRAY" + b"\x00" * 108
    img = ImageData(color=np.zeros((4, 4, 3), np.float32), icc_profile=gray_icc)
    assert "icc_profile" not in Image.open(write_image(img, tmp_path / "o.png")).info


# ---- alpha into formats without it ------------------------------------------------------------------------


def test_jpeg_with_alpha_refuses_with_a_clear_message(tmp_path: Path) -> None:
    img = from_array(_rng().integers(0, 256, (8, 8, 4), dtype=np.uint8))
    for suffix in (".jpg", ".bmp"):
        with pytest.raises(ImageWriteError) as e:
            write_image(img, tmp_path / f"o{suffix}")
        msg = _only_line(str(e.value))
        assert f"o{suffix}" in msg and "transparency" in msg and ".png" in msg and "flatten_alpha" in msg
    assert list(tmp_path.iterdir()) == []


def test_flatten_alpha_composites_onto_the_background(tmp_path: Path) -> None:
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 255
    arr[:4, :, 3] = 255  # top: opaque red; bottom: fully transparent
    img = from_array(arr)
    out = write_image(img, tmp_path / "o.png", flatten_alpha=(255, 255, 255))
    px = np.asarray(Image.open(out))
    assert px.shape == (8, 8, 3)
    assert tuple(px[0, 0]) == (255, 0, 0) and tuple(px[7, 7]) == (255, 255, 255)
    assert write_image(img, tmp_path / "o.jpg", flatten_alpha=(0, 0, 0)).exists()


# ---- limits and broken inputs -----------------------------------------------------------------------------


def test_bomb_limit(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big\.png.*10,000 pixels.*5,000") as e:
        read_image(tmp_path / "big.png", max_pixels=5000)
    _only_line(str(e.value))
    assert read_image(tmp_path / "big.png", max_pixels=None).size == (100, 100)


def test_huge_declared_size_is_refused_before_decoding(tmp_path: Path) -> None:
    """A few hundred bytes that claim 40000 x 40000 pixels: refused by our limit, and by Pillow's when
    ours is switched off (no decode is attempted, so this is fast and uses no memory)."""
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )
    (tmp_path / "bomb.png").write_bytes(data)
    for limit in (DEFAULT_MAX_PIXELS, None):
        with pytest.raises(ImageReadError, match="bomb.png.*1,600,000,000 pixels, over") as e:
            read_image(tmp_path / "bomb.png", max_pixels=limit)
        _only_line(str(e.value))


def _valid_png(tmp_path: Path) -> bytes:
    Image.fromarray(_rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    return (tmp_path / "ok.png").read_bytes()


@pytest.mark.parametrize("case", ["missing", "empty", "truncated_png", "truncated_jpeg", "text", "folder"])
def test_unreadable_files_give_one_line_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.png"
    expect = {
        "missing": "file not found",
        "empty": "file is empty",
        "truncated_png": "truncated",
        "truncated_jpeg": "truncated",
        "text": "not an image",
        "folder": "folder",
    }[case]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated_png":
        data = _valid_png(tmp_path)
        path.write_bytes(data[: len(data) // 2])
    elif case == "truncated_jpeg":
        path = tmp_path / "truncated.jpg"
        Image.fromarray(_rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "text":
        path.write_text("this is not a picture\n" * 10)
    elif case == "folder":
        path.mkdir()
    with pytest.raises(ImageReadError) as e:
        read_image(path)
    msg = _only_line(str(e.value))
    assert f"'{path}'" in msg and expect in msg
    if case == "text":
        assert "expected PNG, JPEG" in msg


def test_read_image_bytes_names_the_upload() -> None:
    with pytest.raises(ImageReadError, match="cannot read 'upload.png': not an image"):
        read_image_bytes(b"GIF? no", name="upload.png")


def test_heic_without_plugin_names_the_plugin(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    try:
        import pillow_heif  # noqa: F401

        pytest.skip("pillow-heif is installed")
    except ImportError:
        pass
    with pytest.raises(ImageWriteError, match="pillow-heif"):
        write_image(from_array(np.zeros((4, 4, 3), np.uint8)), tmp_path / "o.heic")
    fake_heic = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64
    with pytest.raises(ImageReadError, match="pip install pillow-heif"):
        read_image_bytes(fake_heic, name="photo.heic")


def test_unknown_output_suffix(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match=r"unknown image format \.gif") as e:
        write_image(from_array(np.zeros((4, 4, 3), np.uint8)), tmp_path / "o.gif")
    _only_line(str(e.value))


# ---- atomic writes ----------------------------------------------------------------------------------------


def test_write_into_a_path_whose_parent_is_a_file_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ImageWriteError) as e:
        write_image(from_array(np.zeros((4, 4, 3), np.uint8)), tmp_path / "afile" / "o.png")
    msg = _only_line(str(e.value))
    assert "o.png" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_encoder_failure_mid_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bit_depth: int
) -> None:
    def half_then_disk_full(fp: io.BufferedWriter, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000)
        raise OSError(28, "No space left on device")

    if bit_depth == 16:
        monkeypatch.setattr(image_mod, "_write_png16", half_then_disk_full)
    else:
        monkeypatch.setattr(Image.Image, "save", lambda self, fp, *a, **k: half_then_disk_full(fp))
    img = from_array(np.zeros((4, 4, 3), np.uint16 if bit_depth == 16 else np.uint8))
    with pytest.raises(ImageWriteError, match="o.png.*no space left") as e:
        write_image(img, tmp_path / "o.png")
    _only_line(str(e.value))
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "o.png"
    target.write_bytes(b"old contents")

    def boom(self: Image.Image, fp: io.BufferedWriter, *a: object, **k: object) -> None:
        fp.write(b"partial")
        raise ValueError("encoder exploded")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(ImageWriteError, match="PNG encoder failed"):
        write_image(from_array(np.zeros((4, 4, 3), np.uint8)), target)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_no_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "o.png"
    target.write_bytes(b"old contents")
    with pytest.raises(ImageWriteError, match="exists"):
        write_image(from_array(np.zeros((4, 4, 3), np.uint8)), target, overwrite=False)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_atomic_write_temp_name_and_permissions(tmp_path: Path) -> None:
    seen: list[Path] = []
    with atomic_write(tmp_path / "sub" / "f.bin") as tmp:
        seen.append(tmp)
        assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"done")
    assert (tmp_path / "sub" / "f.bin").read_bytes() == b"done" and not seen[0].exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "sub" / "f.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "g.bin") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "new" / "deeper" / "h.bin") as tmp:
        raise RuntimeError("failed before anything was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # folders made for it are gone too


# ---- arrays, rounding, servers ----------------------------------------------------------------------------


def test_to_uint_is_exact_for_every_integer_value_and_clips() -> None:
    for depth, maxv in ((8, 255), (16, 65535)):
        values = np.arange(maxv + 1)
        assert np.array_equal(to_uint(values.astype(np.float32) / maxv, depth), values)
    assert to_uint(np.array([-0.5, 1.5, np.nan, np.inf], np.float32), 8).tolist() == [0, 255, 0, 255]
    assert to_uint(np.array([0.5], np.float32), 8).tolist() == [128]  # 127.5 rounds up


def test_from_array_shapes_and_dtypes() -> None:
    assert from_array(np.zeros((4, 5), np.uint8)).mode == "L"
    rgba16 = from_array(np.zeros((4, 5, 4), np.uint16))
    assert rgba16.mode == "RGBA;16" and rgba16.bit_depth == 16 and rgba16.alpha is not None
    assert rgba16.size == (5, 4)
    gray_alpha = from_array(np.ones((4, 5, 2), np.float32))
    assert gray_alpha.mode == "LA" and gray_alpha.channels == 1
    assert from_array(np.zeros((4, 5, 3), np.uint8), alpha=np.full((4, 5), 255, np.uint8)).alpha.min() == 1.0
    with pytest.raises(ValueError):
        from_array(np.zeros((4, 5, 3), np.int64))
    with pytest.raises(ValueError):
        from_array(np.zeros((4, 5, 4), np.uint8), alpha=np.zeros((4, 5), np.uint8))


def test_pil_conversions_round_trip() -> None:
    arr = _rng().integers(0, 256, (6, 7, 4), dtype=np.uint8)
    back = to_pil(from_pil(Image.fromarray(arr, "RGBA")))
    assert back.mode == "RGBA" and np.array_equal(np.asarray(back), arr)
    gray16 = to_pil(from_array(_deep_random(5, 5, 1)[..., 0]))
    assert gray16.mode == "I;16"


def test_encode_image_bytes_for_servers() -> None:
    arr = _rng().integers(0, 256, (10, 12, 4), dtype=np.uint8)
    data = encode_image(from_array(arr), "png")
    assert data.startswith(b"\x89PNG")
    assert np.array_equal(_samples8(read_image_bytes(data)), arr)
    assert encode_image(from_array(arr[..., :3]), "jpeg")[:2] == b"\xff\xd8"
    with pytest.raises(ImageWriteError, match="transparency"):
        encode_image(from_array(arr), ".jpg")


def test_real_photo_round_trips(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / "Set5" / "HR" / "baby.png"
    if not src.exists():
        pytest.skip(f"{src} not found")
    img = read_image(src)
    original = np.asarray(Image.open(src).convert("RGB"))
    assert np.array_equal(to_uint(img.color), original)
    assert np.array_equal(np.asarray(Image.open(write_image(img, tmp_path / "b.png"))), original)
    jpeg = np.asarray(Image.open(write_image(img, tmp_path / "b.jpg", quality=95))).astype(float)
    mse = np.mean((jpeg - original) ** 2)
    assert 10 * np.log10(255**2 / mse) > 38  # q95 4:4:4: no visible colour shift
    assert np.abs(jpeg.mean(axis=(0, 1)) - original.mean(axis=(0, 1))).max() < 1.0


def test_importing_superres_io_does_not_import_av() -> None:
    code = "import sys, superres.io; assert 'av' not in sys.modules, 'av imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
