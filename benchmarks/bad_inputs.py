"""Bad-input corpus: builds 40+ nasty inputs and option combinations itself, runs the real `superres`
command on each and prints one row per case: exit status, the message, lines on stderr, tracebacks,
and what was left in the output folder (partial or temporary files).

A case passes when it ends either with a correct output (exit 0, the expected files present and
decodable) or with a one-line error (non-zero exit, one `error:` line per failure, no traceback), and
in both cases leaves no temporary or partial file and every file that existed outside the output
folder before the run (the inputs) byte-identical after it. Some cases also name text the answer must
contain (the reason, not just any error) and files that must not exist afterwards.

    python benchmarks/bad_inputs.py            # the table; exit status 1 if any case fails
    python benchmarks/bad_inputs.py --keep DIR # keep the corpus and outputs for a look
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

MODEL = "espcn-s-x4"
TEMP_MARKER = ".superres-tmp-"


@dataclass
class Case:
    name: str
    make: Callable[[Path], list[str]]  # builds inputs in the folder, returns the CLI arguments after the verb
    expect_ok: bool = False
    verb: str = "upscale"
    outputs: list[str] = field(default_factory=list)  # files that must exist (relative to out/) when ok
    says: str = ""  # text the answer (stdout + stderr) must contain
    absent: list[str] = field(default_factory=list)  # paths (relative to the case folder) that must not exist
    keeps: str = ""  # a file name pattern (glob, in out/) that must still exist afterwards
    model: bool = True  # add "-m MODEL" (off: the case names its model its own way)
    prelude: str = ""  # Python run before the command in its process (e.g. hide an installed extra)


def _rng() -> np.random.Generator:
    return np.random.default_rng(13)


def _photo(w: int = 48, h: int = 32, mode: str = "RGB") -> Image.Image:
    a = (_rng().random((h, w, 3)) * 255).astype(np.uint8)
    return Image.fromarray(a).convert(mode)


def _png_bytes(img: Image.Image) -> bytes:
    b = io.BytesIO()
    img.save(b, "PNG")
    return b.getvalue()


def _header_bomb(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _write(name: str, data: bytes) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        (d / name).write_bytes(data)
        return [str(d / name), "-o", str(d / "out")]
    return make


def _save(name: str, img_fn: Callable[[], Image.Image], **kw: object) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        img_fn().save(d / name, **kw)
        return [str(d / name), "-o", str(d / "out")]
    return make


def _with_opts(*opts: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        _photo().save(d / "p.png")
        return [str(d / "p.png"), "-o", str(d / "out"), *opts]
    return make


def _cases() -> list[Case]:
    good = _png_bytes(_photo())
    jpg = io.BytesIO()
    _photo().save(jpg, "JPEG", quality=90)
    jpeg = jpg.getvalue()
    cases = [
        Case("empty .png", _write("e.png", b"")),
        Case("text named .png", _write("t.png", b"hello, I am not an image\n")),
        Case("truncated PNG", _write("c.png", good[: len(good) // 2])),
        Case("truncated JPEG", _write("c.jpg", jpeg[: len(jpeg) // 3])),
        Case("random bytes .jpg", _write("r.jpg", _rng().bytes(5000))),
        Case("random bytes .webp", _write("r.webp", b"RIFF" + _rng().bytes(3000))),
        Case("random bytes .tif", _write("r.tif", b"II*\x00" + _rng().bytes(3000))),
        Case("random bytes .bmp", _write("r.bmp", b"BM" + _rng().bytes(3000))),
        Case("PNG header bomb 100000^2", _write("bomb.png", _header_bomb(100_000, 100_000))),
        Case("PNG named .jpg", _write("png.jpg", good), expect_ok=True, outputs=["png.jpg"]),
        Case("JPEG named .png", _write("jpg.png", jpeg), expect_ok=True, outputs=["jpg.png"]),
        Case("1x1 image", _save("one.png", lambda: _photo(1, 1)), expect_ok=True, outputs=["one.png"]),
        Case("palette PNG", _save("pal.png", lambda: _photo().convert("P")), expect_ok=True, outputs=["pal.png"]),
        Case("grey+alpha PNG", _save("la.png", lambda: _photo(mode="LA")), expect_ok=True, outputs=["la.png"]),
        Case("16-bit grey PNG", _save("g16.png", lambda: Image.fromarray(
            (_rng().random((20, 30)) * 65535).astype(np.uint16))), expect_ok=True, outputs=["g16.png"]),
        Case("CMYK JPEG", _save("cmyk.jpg", lambda: _photo(mode="CMYK")), expect_ok=True, outputs=["cmyk.jpg"]),
        Case("animated GIF", _save("anim.gif", lambda: _photo(mode="P"), save_all=True,
                                   append_images=[_photo(mode="P").rotate(90)]), expect_ok=True, outputs=["anim.png"]),
        Case("multi-page TIFF", _save("multi.tif", _photo, save_all=True, append_images=[_photo().rotate(90)]),
             expect_ok=True, outputs=["multi.tif"]),
        Case("float32 TIFF", _save("f.tif", lambda: Image.fromarray(
            _rng().random((20, 30)).astype(np.float32) * 2.0, mode="F")), expect_ok=True, outputs=["f.tif"]),
        Case("folder named x.png", lambda d: ((d / "x.png").mkdir(), [str(d / "x.png"), "-o", str(d / "out")])[1]),
        Case("missing file", lambda d: [str(d / "nope.png"), "-o", str(d / "out")]),
        Case("dangling link", lambda d: ((d / "l.png").symlink_to(d / "gone.png"), [str(d / "l.png"), "-o", str(d / "out")])[1]),
        Case("folder: dangling link + good", lambda d: _folder_with(d, dangling=True)),
        Case("folder: link loop + good", lambda d: _folder_with(d, loop=True), expect_ok=True, outputs=["ok.png"]),
        Case("empty folder", lambda d: ((d / "in").mkdir(), [str(d / "in"), "-o", str(d / "out")])[1]),
        Case("folder: text + good", lambda d: _folder_with(d, junk=True)),
        Case("output = input", lambda d: (_photo().save(d / "p.png"), [str(d / "p.png"), "-o", str(d / "p.png"), "--overwrite"])[1]),
        Case("output = input via link", lambda d: _output_link(d)),
        Case("output exists, no --overwrite", lambda d: _existing(d)),
        Case("two inputs one output (x.png, x.gif)", lambda d: _same_stem(d)),
        Case("two inputs one output (d1/y, d2/y)", lambda d: _same_name(d)),
        Case("output folder inside input", lambda d: _nested(d), expect_ok=True, outputs=["p.png"]),
        Case("-s nan", _with_opts("-s", "nan")),
        Case("-s inf", _with_opts("-s", "inf")),
        Case("-s 0", _with_opts("-s", "0")),
        Case("-s -2", _with_opts("-s", "-2")),
        Case("-s 1e4", _with_opts("-s", "1e4")),
        Case("-s 2 --width 9", _with_opts("-s", "2", "--width", "9")),
        Case("--width 0", _with_opts("--width", "0")),
        Case("--height -1", _with_opts("--height", "-1")),
        Case("--tile -5", _with_opts("--tile", "-5")),
        Case("--ext xyz", _with_opts("--ext", "xyz")),
        Case("--alpha sideways", _with_opts("--alpha", "sideways")),
        Case("--precision fp7", _with_opts("--precision", "fp7")),
        Case("--device cuda (no GPU here)", _with_opts("--device", "cuda")),
        Case("unknown model", _with_opts("-m", "realesrgan-x5")),
        Case("garbage .pth weights", lambda d: _garbage_weights(d, "w.pth")),
        Case("garbage .safetensors", lambda d: _garbage_weights(d, "w.safetensors")),
        *_weights_bomb_cases(),
        Case("output over --max-output-pixels", _with_opts("--max-output-pixels", "1000")),
        Case("4100^2 grey at x4 (default limit)", _save("huge.png", lambda: Image.fromarray(np.zeros((4100, 4100), np.uint8)))),
        Case("1x20000 strip (side > 65535)", _save("strip.png", lambda: _photo(20000, 1))),
        Case("-o under an existing file", lambda d: (_photo().save(d / "p.png"), [str(d / "p.png"), "-o", str(d / "p.png" / "o.png")])[1]),
        Case("name with spaces and unicode", _save("my phötö 1.png", _photo), expect_ok=True, outputs=["my phötö 1.png"]),
        Case("video of a still image", lambda d: (_photo().save(d / "p.png"), [str(d / "p.png"), "-o", str(d / "out" / "v.mp4")])[1], verb="video"),
        Case("video: missing file", lambda d: [str(d / "nope.mp4"), "-o", str(d / "out" / "v.mp4")], verb="video"),
        Case("video: garbage .mp4", lambda d: ((d / "g.mp4").write_bytes(_rng().bytes(4000)), [str(d / "g.mp4"), "-o", str(d / "out" / "v.mp4")])[1], verb="video"),
        Case("zssr --seed 2^64", lambda d: _zssr_seed(d, 2**64), verb="zssr", model=False),
        Case("zssr --seed 2^63", lambda d: _zssr_seed(d, 2**63), verb="zssr", model=False),
        # issue 24, round two
        Case("link in output tree onto inputs", lambda d: _link_into_inputs(d), says="leads through a link"),
        Case("link in output tree, --overwrite", lambda d: _link_into_inputs(d, "--overwrite"),
             says="leads through a link"),
        Case("live batch's temporary file in out/", lambda d: _live_temp(d), expect_ok=True, outputs=["p.png"],
             keeps=f".q.png{TEMP_MARKER}*-live.tmp"),
        Case("README: weights.pth in/ -o out/", lambda d: _weights_first(d), expect_ok=True,
             outputs=["a.png", "sub/b.png"], model=False),
        Case("weights file among inputs", lambda d: _weights_first(d, last=True), model=False,
             says="is a weights file, not an image"),
        Case("two inputs -o out.png", lambda d: _same_name(d)[:-1] + [str(d / "out.png")], says="give a folder",
             absent=["out.png"]),
        Case("folder -o out.png", lambda d: _folder_with(d)[:-1] + [str(d / "out.png")], says="give a folder",
             absent=["out.png"]),
        Case("-o existing.txt", lambda d: (_photo().save(d / "p.png"), (d / "n.txt").write_text("keep"),
                                           [str(d / "p.png"), "-o", str(d / "n.txt")])[2],
             says=".txt is not an image format"),
        Case("rerun with another scale", lambda d: _made_with(d, "-s", "2"), expect_ok=True, outputs=["p.png"],
             says="made with other settings"),
        Case("output made by something else", lambda d: _made_with(d), expect_ok=True, outputs=["p.png"],
             says="unknown settings"),
        Case("JPEG wider than 65,500 at x4", _save("w.jpg", lambda: _photo(16_376, 2)), says="too large for JPEG"),
        Case("WebP wider than 16,383 at x4", _save("w.webp", lambda: _photo(4_096, 2)), says="too large for WebP"),
        Case("photos/2024 -o photos", lambda d: _inside_output(d), says="lie inside the output folder"),
        Case("palette GIF", _save("pal.gif", lambda: _photo().convert("P")), expect_ok=True, outputs=["pal.png"],
             says="written as PNG: GIF is not an output format"),
        Case("CMYK JPEG (said)", _save("c.jpg", lambda: _photo(mode="CMYK")), expect_ok=True, outputs=["c.jpg"],
             says="CMYK image: converted to RGB"),
        Case("same stem: a hint that works", lambda d: _same_stem(d), says="rename one of them"),
        Case("video without PyAV", lambda d: [str(_garbage_clip(d)), "-o", str(d / "out" / "v.mp4")], verb="video",
             prelude="import sys; sys.modules['av'] = None", says="pip install 'superres[video]'"),
        Case("serve without fastapi", lambda d: ["--port", "1"], verb="serve", model=False,
             prelude="import sys; sys.modules['fastapi'] = None", says="bash scripts/setup.sh serve"),
        *_video_cases(),
    ]
    return cases


def _zssr_seed(d: Path, seed: int) -> list[str]:
    _photo().save(d / "p.png")
    return [str(d / "p.png"), "-o", str(d / "out" / "z.png"), "--seed", str(seed), "--max-time", "1"]


_LIVE: list[subprocess.Popen[bytes]] = []  # processes a case keeps alive while the command runs


def _link_into_inputs(d: Path, *opts: str) -> list[str]:
    (d / "in" / "sub").mkdir(parents=True)
    _photo().save(d / "in" / "a.png")
    _photo().rotate(90).save(d / "in" / "sub" / "a.png")
    (d / "out").mkdir()
    (d / "out" / "sub").symlink_to(d / "in")  # out/sub/a.png is in/a.png
    return [str(d / "in"), "-o", str(d / "out"), *opts]


def _live_temp(d: Path) -> list[str]:
    """Another batch, still running, is writing into the same folder: its temporary file must survive."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from superres.io.atomic import owner_tag

    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    _LIVE.append(live)
    (d / "out").mkdir()
    (d / "out" / f".q.png{TEMP_MARKER}{owner_tag(live.pid)}-live.tmp").write_bytes(b"half")
    _photo().save(d / "p.png")
    return [str(d / "p.png"), "-o", str(d / "out")]


def _weights_first(d: Path, last: bool = False) -> list[str]:
    """A real weights file (the bundled espcn-s-x4, saved as a plain .pth state dict)."""
    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import superres

    bundled = Path(superres.__file__).parent / "zoo" / "weights" / f"{MODEL}.safetensors"
    torch.save(load_file(str(bundled)), d / "my_weights.pth")
    (d / "in" / "sub").mkdir(parents=True)
    _photo().save(d / "in" / "a.png")
    _photo().save(d / "in" / "sub" / "b.png")
    if last:
        return [str(d / "in"), str(d / "my_weights.pth"), "-o", str(d / "out")]
    return [str(d / "my_weights.pth"), str(d / "in"), "-o", str(d / "out")]


def _made_with(d: Path, *opts: str) -> list[str]:
    _photo().save(d / "p.png")
    (d / "out").mkdir()
    if opts:  # a first run with other settings
        subprocess.run([sys.executable, "-m", "superres.cli", "upscale", str(d / "p.png"), "-o", str(d / "out"),
                        "-m", MODEL, *opts], check=True, capture_output=True)
    else:  # a file that superres did not record
        _photo(192, 128).save(d / "out" / "p.png")
    return [str(d / "p.png"), "-o", str(d / "out")]


def _inside_output(d: Path) -> list[str]:
    (d / "photos" / "2024").mkdir(parents=True)
    _photo().save(d / "photos" / "2024" / "p.png")
    return [str(d / "photos" / "2024"), "-o", str(d / "photos")]


def _garbage_clip(d: Path) -> Path:
    (d / "clip.mp4").write_bytes(_rng().bytes(4000))
    return d / "clip.mp4"


# ---- video (issue 29) ---------------------------------------------------------------------------------------

def _clip(path: Path, frames: int = 8, codec: str = "libx264", audio: bool = True) -> Path:
    import av

    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        a = out.add_stream("aac", rate=48000) if audio else None
        if a is not None:
            a.layout = "stereo"
        for i in range(frames):
            arr = np.full((24, 32, 3), (40 * i) % 255, np.uint8)
            f = av.VideoFrame.from_ndarray(arr, format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        if a is not None:
            for k in range(frames * 2):
                block = av.AudioFrame.from_ndarray(np.zeros((2, 960), np.float32), format="fltp", layout="stereo")
                block.sample_rate, block.pts = 48000, 960 * k
                out.mux(a.encode(block))
            out.mux(a.encode(None))
    return path


def _good(d: Path) -> Path:
    return _clip(d / "in.mp4")


def _video(make_input: Callable[[Path], Path], out_name: str = "v.mp4", *opts: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        return [str(make_input(d)), "-o", str(d / "out" / out_name), *opts]
    return make


def _truncated(d: Path) -> Path:
    full = _clip(d / "full.mp4", frames=40).read_bytes()
    (d / "full.mp4").unlink()
    (d / "cut.mp4").write_bytes(full[: len(full) // 2])
    return d / "cut.mp4"


def _truncated_mkv(d: Path) -> Path:
    full = _clip(d / "full.mkv", frames=40).read_bytes()
    (d / "full.mkv").unlink()
    (d / "cut.mkv").write_bytes(full[: len(full) * 2 // 3])
    return d / "cut.mkv"


def _audio_only(d: Path) -> Path:
    import av

    with av.open(str(d / "song.m4a"), "w") as out:
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        for k in range(10):
            block = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            block.sample_rate, block.pts = 48000, 1024 * k
            out.mux(a.encode(block))
        out.mux(a.encode(None))
    return d / "song.m4a"


def _subtitles_only(d: Path) -> Path:
    (d / "s.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n\n")
    return d / "s.srt"


def _y4m(name: str, w: int, h: int, body: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode() + body)
        return d / name
    return make


def _unknown_codec(d: Path) -> Path:
    data = _clip(d / "m.avi", codec="mpeg4", audio=False).read_bytes()
    (d / "m.avi").unlink()
    (d / "odd.avi").write_bytes(data.replace(b"FMP4", b"ZQZQ").replace(b"fmp4", b"zqzq"))
    return d / "odd.avi"


def _still_as_mp4(d: Path) -> Path:
    _photo().save(d / "photo.mp4", format="JPEG")
    return d / "photo.mp4"


def _existing_video(d: Path) -> list[str]:
    src = _clip(d / "in.mp4")
    (d / "out").mkdir()
    (d / "out" / "v.mp4").write_bytes(b"keep me")
    return [str(src), "-o", str(d / "out" / "v.mp4")]


def _video_cases() -> list[Case]:
    frame = bytes(32 * 24 * 3 // 2)
    return [
        Case("video: a good clip (control)", _video(_good), expect_ok=True, verb="video", outputs=["v.mp4"]),
        Case("video: truncated mp4", _video(_truncated), verb="video"),
        Case("video: truncated mkv (frames up to the cut)", _video(_truncated_mkv), expect_ok=True, verb="video",
             outputs=["v.mp4"]),
        Case("video: no video stream (subtitles only)", _video(_subtitles_only), verb="video"),
        Case("video: audio only (.m4a)", _video(_audio_only), verb="video"),
        Case("video: lying dimensions (y4m says 64x48, frames of 32x24)",
             _video(_y4m("lie.y4m", 64, 48, (b"FRAME\n" + frame) * 3)), verb="video"),
        Case("video: huge declared size (y4m 65535x65535)",
             _video(_y4m("huge.y4m", 65535, 65535, b"FRAME\n" + frame)), verb="video"),
        Case("video: unsupported codec (AVI fourcc ZQZQ)", _video(_unknown_codec), verb="video"),
        Case("video: a still image named .mp4", _video(_still_as_mp4), expect_ok=True, verb="video",
             outputs=["v.mp4"]),
        Case("video: -o out.gif", _video(_good, "v.gif"), verb="video"),
        Case("video: -o out.png", _video(_good, "v.png"), verb="video"),
        Case("video: -o out.webm (VP9 + Opus)", _video(_good, "v.webm"), expect_ok=True, verb="video",
             outputs=["v.webm"]),
        Case("video: existing output, no --overwrite", _existing_video, verb="video"),
        Case("video: -s 0.001", _video(_good, "v.mp4", "-s", "0.001"), verb="video"),
    ]


def _folder_with(d: Path, dangling: bool = False, loop: bool = False, junk: bool = False) -> list[str]:
    src = d / "in"
    src.mkdir()
    _photo().save(src / "ok.png")
    if dangling:
        (src / "gone.png").symlink_to(d / "nowhere.png")
    if loop:
        (src / "loop").symlink_to(src)
    if junk:
        (src / "junk.png").write_text("not an image")
    return [str(src), "-o", str(d / "out")]


def _output_link(d: Path) -> list[str]:
    _photo().save(d / "p.png")
    (d / "link.png").symlink_to(d / "p.png")
    return [str(d / "p.png"), "-o", str(d / "link.png"), "--overwrite"]


def _existing(d: Path) -> list[str]:
    _photo().save(d / "p.png")
    (d / "out").mkdir()
    (d / "out" / "o.png").write_bytes(b"precious")
    return [str(d / "p.png"), "-o", str(d / "out" / "o.png")]


def _same_stem(d: Path) -> list[str]:
    (d / "in").mkdir()
    _photo().save(d / "in" / "x.png")
    _photo().convert("P").save(d / "in" / "x.gif")
    return [str(d / "in"), "-o", str(d / "out")]


def _same_name(d: Path) -> list[str]:
    for sub in ("d1", "d2"):
        (d / sub).mkdir()
        _photo().save(d / sub / "y.png")
    return [str(d / "d1" / "y.png"), str(d / "d2" / "y.png"), "-o", str(d / "out")]


def _nested(d: Path) -> list[str]:
    (d / "in").mkdir()
    _photo().save(d / "in" / "p.png")
    (d / "in" / "out").mkdir()
    _photo().save(d / "in" / "out" / "p.png")  # an earlier output: must not be read back as an input
    os.symlink(d / "in" / "out", d / "out")  # so the report's out/ is the nested folder
    return [str(d / "in"), "-o", str(d / "in" / "out"), "--overwrite"]


def _garbage_weights(d: Path, name: str) -> list[str]:
    (d / name).write_bytes(_rng().bytes(2000))
    _photo().save(d / "p.png")
    return [str(d / "p.png"), "-o", str(d / "out"), "-m", str(d / name)]


def _weights_bomb_cases() -> list[Case]:
    """Issue 24 item 4 (small files declaring huge networks or records), the ncnn part of item 13 and
    the `fetch --from` part of item 9; the files come from tests/weights_bombs.py
    (benchmarks/weights_bombs.py measures their memory)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import weights_bombs as bombs

    def with_weights(build: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
        def make(d: Path) -> list[str]:
            _photo().save(d / "p.png")
            return [str(d / "p.png"), "-o", str(d / "out"), "-m", str(build(d))]
        return make

    def fetch_from(target: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
        return lambda d: ["realsr-df2k-x4", "--from", str(target(d))]

    return [
        Case("weights: SRVGG 30000 wide, empty tensors",
             with_weights(lambda d: bombs.srvgg_bomb(d / "a.safetensors"))),
        Case("weights: 3000 empty RRDB blocks", with_weights(lambda d: bombs.rrdb_bomb(d / "b.safetensors"))),
        Case("weights: 3000 RRDB blocks, 1 float each",
             with_weights(lambda d: bombs.rrdb_bomb(d / "b1.safetensors", one_value=True))),
        Case("weights: .pth, 2 GiB deflated record",
             with_weights(lambda d: bombs.pth_deflated_bomb(d / "c.pth"))),
        Case("weights: .pth stride-0 view", with_weights(lambda d: bombs.pth_stride_bomb(d / "s.pth"))),
        Case("weights: legacy .pth declaring 32 GiB",
             with_weights(lambda d: bombs.pth_legacy_bomb(d / "l.pth"))),
        Case("weights: ncnn weight_data_size -64", with_weights(bombs.ncnn_negative_size)),
        Case("fetch --from missing file", fetch_from(lambda d: d / "nope.tar.gz"), verb="fetch",
             model=False),
        Case("fetch --from a folder", fetch_from(lambda d: d), verb="fetch", model=False),
    ]


def _leftovers(d: Path) -> list[str]:
    return [str(p.relative_to(d)) for p in d.rglob("*") if (TEMP_MARKER in p.name and "-live." not in p.name)
            or p.name.endswith(".tmp") and "-live." not in p.name]


def _inputs(d: Path, args: list[str]) -> dict[str, str]:
    """sha256 of every file outside the output folder (not through links): what must not change."""
    import hashlib

    out = Path(args[args.index("-o") + 1]).resolve() if "-o" in args else d / "out"
    found = {}
    for p in d.rglob("*"):
        if p.is_file() and not p.is_symlink() and not p.resolve().is_relative_to(out) \
                and not p.resolve().is_relative_to((d / "out").resolve()):
            found[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def _decodes(p: Path) -> bool:
    if p.suffix in (".mp4", ".webm", ".mkv", ".mov", ".avi"):
        try:
            import av

            with av.open(str(p)) as c:
                return next(c.decode(video=0), None) is not None
        except Exception:  # noqa: BLE001
            return False
    try:
        with Image.open(p) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001
        return False


def run(keep: Path | None) -> int:
    root = Path(tempfile.mkdtemp(prefix="superres-bad-")) if keep is None else keep
    rows, bad = [], 0
    for i, case in enumerate(_cases()):
        d = root / f"{i:02d}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        args = case.make(d)
        before = _inputs(d, args)
        extra = [] if "-m" in args or not case.model else ["-m", MODEL]
        start = ["-m", "superres.cli"] if not case.prelude else [
            "-c", f"{case.prelude}; import sys; from superres.cli import main; sys.argv[0] = 'superres'; main()"]
        cmd = [sys.executable, *start, case.verb, *args, *extra]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        finally:
            for live in _LIVE:
                live.stdin.close()  # type: ignore[union-attr]
                live.wait()
            _LIVE.clear()
        after = _inputs(d, args)
        changed = sorted(k for k in before if after.get(k) != before[k])
        err_lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        tb = "Traceback" in r.stderr or "Traceback" in r.stdout
        left = _leftovers(d)
        out = d / "out"
        if case.expect_ok:
            ok = r.returncode == 0 and all(_decodes(out / o) for o in case.outputs)
            message = (r.stdout.strip().splitlines() or [""])[-1]
        else:
            errors = [ln for ln in err_lines if ln.startswith("error:")]
            one_line = len(errors) == 1 and (len(err_lines) == 1 or r.returncode == 1)
            ok = r.returncode != 0 and one_line
            message = errors[0] if errors else (err_lines[-1] if err_lines else "")
            if r.returncode == 1:  # a batch: the per-file reason follows the count
                reasons = [ln.strip() for ln in err_lines if ln.startswith("  ")]
                message = reasons[0] if reasons else message
        if case.says and case.says not in r.stdout + r.stderr:
            ok = False
            message = f"(expected: {case.says}) {message}"
        present = [a for a in case.absent if (d / a).exists()]
        if case.keeps and not list((d / "out").glob(case.keeps)):
            present.append(f"out/{case.keeps} was removed; it")
        ok = ok and not tb and not left and not changed and not present
        left = left + [f"{c} (input changed)" for c in changed] + [f"{a} (must not exist)" for a in present]
        bad += not ok
        rows.append((case.name, r.returncode, message, len(err_lines), tb, left, ok))
    print(f"| # | input | exit | message | stderr lines | traceback | leftovers | ok |")
    print("|---|---|---:|---|---:|---|---|---|")
    for i, (name, code, msg, n, tb, left, ok) in enumerate(rows):
        msg = msg.replace("|", "\\|").replace(str(root), "…")[:150]
        print(f"| {i} | {name} | {code} | {msg} | {n} | {'YES' if tb else 'no'} | {', '.join(left) or '-'} | "
              f"{'ok' if ok else '**FAIL**'} |")
    changed = sum(1 for r in rows if any("(input changed)" in x for x in r[5]))
    print(f"\n{len(rows) - bad}/{len(rows)} cases answered by a correct output or a one-line error, "
          f"{sum(1 for r in rows if r[5])} with leftovers, {sum(1 for r in rows if r[4])} with tracebacks, "
          f"{changed} with inputs changed")
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, default=None, help="keep the corpus here")
    sys.exit(run(ap.parse_args().keep))


if __name__ == "__main__":
    main()
