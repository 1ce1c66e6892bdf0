"""The video engine (issue 29): resume after a kill, everything in the container kept, 10-bit and colour tags,
exact timestamps, headers per container, refusals before the model loads, the Ray engine. Clips are made by
the tests with PyAV (64x48, 12-30 frames), so each test takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video tests need PyAV (pip install 'superres[video]')")

from test_video import _frame_rgb, decode_all, make_clip, nearest_2x  # noqa: E402

from superres.errors import SuperresError  # noqa: E402
from superres.video import process_video  # noqa: E402
from superres.video.reading import index_video  # noqa: E402
from superres.video.segments import output_lock  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- resume ---------------------------------------------------------------------------------------------

_KILLED_RUN = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from superres.video import process_video
    limit = int(sys.argv[3])

    def progress(done, total):  # called by the encoder thread after each encoded frame
        if done > limit:
            os._exit(9)  # like kill -9: no cleanup, temporaries and the lock file stay

    process_video(Path(sys.argv[1]), Path(sys.argv[2]), lambda fs: [f.repeat(2, 0).repeat(2, 1) for f in fs],
                  batch_size=1, segment_seconds=0.3, progress=progress)
""")


# keyframe interval, segments' first frames, and after a kill at 3 / 14 / 26 frames: (segments finished,
# frames left to upscale)
_GOPS = {
    "keyframe-cuts": (6, [0, 12, 24], {3: (0, 30), 14: (1, 18), 26: (2, 6)}),
    # one keyframe in 30 frames (x264's default keyint 250): cut every 0.3 s (8 frames at 23.976 frames/s)
    "long-gop": (None, [0, 8, 16, 24], {3: (0, 30), 14: (1, 22), 26: (3, 6)}),
}


@pytest.mark.parametrize("gop", list(_GOPS))
@pytest.mark.parametrize("kill_after", [3, 14, 26])
def test_killed_run_resumes_to_the_same_frames_and_leaves_nothing(tmp_path: Path, kill_after: int,
                                                                  gop: str) -> None:
    """Killed (os._exit, no clean-up) in the first, second and third segment: the same call finishes the
    job from the first unfinished segment; decoded frames and timestamps equal an uninterrupted run's, and
    nothing but the output is left. The long-GOP clip (bigbuckbunny and carphone are like it) has no
    keyframe to cut at, so its segments start inside the group of pictures."""
    keyint, starts, left_after = _GOPS[gop]
    src = make_clip(tmp_path / "in.mp4", frames=30, gop=keyint)
    index = index_video(src)
    assert len(index.cuts) == (5 if keyint else 1)
    from superres.video.segments import plan_segments

    assert [s.start for s in plan_segments(index, 0.3)] == starts
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref = process_video(src, ref_dir / "out.mp4", nearest_2x, batch_size=1, segment_seconds=0.3)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "out.mp4"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(src), str(dst), str(kill_after)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    assert not dst.exists()
    left = _names(out_dir)
    assert any(".superres-lock" in n for n in left)
    finished = [n for n in left if ".superres-seg-" in n and ".superres-tmp-" not in n]
    assert len(finished) == left_after[kill_after][0]
    calls: list[int] = []

    def counting(frames: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(frames))
        return nearest_2x(frames)

    process_video(src, dst, counting, batch_size=1, segment_seconds=0.3)
    # resumed at the first unfinished segment (the extra call learns the output size)
    assert sum(calls) == 1 + left_after[kill_after][1]
    got, pts, tb = decode_all(dst)
    want, pts_ref, tb_ref = decode_all(ref)
    assert [p * tb for p in pts] == [p * tb_ref for p in pts_ref]
    assert len(got) == 30 and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert _names(out_dir) == ["out.mp4"]


def test_a_segment_inside_a_long_gop_decodes_the_frames_of_a_whole_decode(tmp_path: Path) -> None:
    """Decoding frames 9..20 of a one-keyframe clip (seek to the keyframe, drop what comes before) gives the
    same pixels and indexes as decoding the clip from its start."""
    from superres.video.reading import decode_frames

    src = make_clip(tmp_path / "in.mp4", frames=30)
    index = index_video(src)
    assert index.cuts == (0,)
    whole = list(decode_frames(src, index, 0, 30))
    part = list(decode_frames(src, index, 9, 21))
    assert [i for i, _ in part] == list(range(9, 21))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(part, whole[9:21], strict=True))


def test_a_rerun_removes_its_own_leftovers_and_nobody_elses(tmp_path: Path) -> None:
    """What a killed run of this output left (temporaries, segments of other settings, its lock) goes;
    another output's temporary in the same folder stays."""
    src = make_clip(tmp_path / "in.mp4", frames=6, audio=None)
    mine = [".out.mp4.superres-tmp-abc123.tmp.mp4", ".out.mp4.superres-seg-0123456789ab-00000.nut",
            "..out.mp4.superres-seg-0123456789ab-00001.nut.superres-tmp-x1.nut", ".out.mp4.superres-lock"]
    theirs = ".other.mp4.superres-tmp-def456.tmp.mp4"
    for name in [*mine, theirs]:
        (tmp_path / name).write_bytes(b"left over")
    process_video(src, tmp_path / "out.mp4", nearest_2x)
    assert _names(tmp_path) == sorted([theirs, "in.mp4", "out.mp4"])
    assert len(decode_all(tmp_path / "out.mp4")[0]) == 6


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", audio=None)
    dst = tmp_path / "out.mp4"
    with output_lock(dst):
        with pytest.raises(SuperresError, match="another superres run is writing"):
            process_video(src, dst, nearest_2x)
    process_video(src, dst, nearest_2x)
    assert _names(tmp_path) == ["in.mp4", "out.mp4"]


# ---- everything in the container survives -----------------------------------------------------------------

def _rich_clip(path: Path) -> Path:
    """MKV: H.264, two audio tracks (AAC English, Opus French), an SRT subtitle, two chapters, a title."""
    srt = path.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nHello\n\n2\n00:00:00,400 --> 00:00:00,700\nWorld\n\n")
    with av.open(str(path), "w") as out, av.open(str(srt)) as subs:
        out.metadata["title"] = "test clip"
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        tracks = []
        for codec, lang in (("aac", "eng"), ("libopus", "fre")):
            a = out.add_stream(codec, rate=48000)
            a.layout = "stereo"
            a.format = "fltp" if codec == "aac" else "flt"
            a.metadata["language"] = lang
            tracks.append(a)
        sub = out.add_stream_from_template(subs.streams.subtitles[0])
        sub.metadata["language"] = "eng"
        out.set_chapters([
            {"id": 1, "start": 0, "end": 400, "time_base": Fraction(1, 1000), "metadata": {"title": "One"}},
            {"id": 2, "start": 400, "end": 800, "time_base": Fraction(1, 1000), "metadata": {"title": "Two"}},
        ])
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(_frame_rgb(i, 64, 48), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        for a, freq in zip(tracks, (440, 660), strict=True):
            n = 48000 * 20 // 25
            wave = (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / 48000)).astype(np.float32)
            for start in range(0, n, 960):
                chunk = np.ascontiguousarray(np.stack([wave[start:start + 960]] * 2))
                flat = a.codec_context.format.name == "flt"
                block = av.AudioFrame.from_ndarray(chunk.T.reshape(1, -1).copy() if flat else chunk,
                                                   format="flt" if flat else "fltp", layout="stereo")
                block.sample_rate, block.pts = 48000, start
                out.mux(a.encode(block))
            out.mux(a.encode(None))
        for packet in subs.demux(subs.streams.subtitles[0]):
            if packet.size:
                packet.stream = sub
                out.mux(packet)
    srt.unlink()
    return path


def test_audio_tracks_subtitles_chapters_and_metadata_survive(tmp_path: Path) -> None:
    src = _rich_clip(tmp_path / "rich.mkv")
    dst = process_video(src, tmp_path / "out.mkv", nearest_2x)
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        kinds = [(s.type, s.codec_context.name, s.metadata.get("language")) for s in a.streams]
        assert [(s.type, s.codec_context.name, s.metadata.get("language")) for s in b.streams] == kinds
        assert [(c["start"] * c["time_base"], c["metadata"].get("title")) for c in b.chapters()] == \
            [(c["start"] * c["time_base"], c["metadata"].get("title")) for c in a.chapters()]
        assert b.metadata.get("title") == "test clip"
        texts = [bytes(p) for p in b.demux(b.streams.subtitles[0]) if p.size]
        assert texts == [b"Hello", b"World"]
    for k in range(2):  # copied, not re-encoded: the same packets
        with av.open(str(src)) as a, av.open(str(dst)) as b:
            pa = [bytes(p) for p in a.demux(a.streams.audio[k]) if p.size]
            pb = [bytes(p) for p in b.demux(b.streams.audio[k]) if p.size]
        assert pa == pb and len(pa) > 10


def test_ten_bit_stays_ten_bit_with_its_colour_tags(tmp_path: Path) -> None:
    """BT.2020 primaries and matrix with the PQ transfer, 10-bit: the output is 10-bit with the same tags
    (no 8-bit round trip, no tone mapping), and the picture is the input's at twice the size."""
    src = tmp_path / "hdr.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p10le"
        cc = v.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 9, 16, 9, 1
        v.options = {"crf": "8"}
        for i in range(8):
            rgb = (_frame_rgb(i, 64, 48).astype(np.uint16) * 257)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le").reformat(
                format="yuv420p10le", dst_colorspace="BT2020", dst_color_range="MPEG")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    seen: list[np.dtype] = []

    def fn(frames: list[np.ndarray]) -> list[np.ndarray]:
        seen.extend(f.dtype for f in frames)
        return nearest_2x(frames)

    dst = process_video(src, tmp_path / "out.mkv", fn)
    assert set(seen) == {np.dtype(np.uint16)}  # the network side sees 16-bit frames
    with av.open(str(dst)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.format.name == "yuv420p10le"
        assert (int(cc.color_primaries), int(cc.color_trc), int(cc.colorspace)) == (9, 16, 9)
        frame = next(c.decode(video=0))
        big = frame.to_ndarray(format="rgb48le", src_colorspace="BT2020", src_color_range="MPEG")
    assert big.dtype == np.uint16 and big.shape == (96, 128, 3)
    red = big[60:80, 10:40].reshape(-1, 3).mean(0) / 257
    assert np.abs(red - (200, 40, 60)).max() < 4


def test_vfr_timestamps_are_identical_in_mp4(tmp_path: Path) -> None:
    pts_ms = [0, 40, 120, 160, 240, 280, 360, 400, 520, 560]
    src = make_clip(tmp_path / "vfr.mp4", frames=len(pts_ms), pts_ms=pts_ms, fps=Fraction(25), audio=None)
    dst = process_video(src, tmp_path / "out.mp4", nearest_2x, segment_seconds=0.1)
    _, pin, tbin = decode_all(src)
    _, pout, tbout = decode_all(dst)
    assert [p * tbout for p in pout] == [p * tbin for p in pin]
    with pytest.raises(SuperresError, match="variable frame rate.*AVI"):
        process_video(src, tmp_path / "out.avi", nearest_2x)
    assert not (tmp_path / "out.avi").exists()


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".avi"])
def test_headers_report_the_inputs_frame_count_and_rate(tmp_path: Path, suffix: str) -> None:
    """The `-o out.avi` bug: a 132-frame clip came out with average_rate 600 and 3168 frames."""
    src = make_clip(tmp_path / "in.mp4", frames=24, fps=Fraction(25), gop=6)
    dst = process_video(src, tmp_path / f"out{suffix}", nearest_2x, segment_seconds=0.2)
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        assert v.average_rate == 25
        assert v.frames in (0, 24)  # Matroska keeps no count; the others must say 24
        assert sum(1 for _ in c.decode(v)) == 24
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"


def test_webm_gets_vp9_and_opus(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=6)
    dst = process_video(src, tmp_path / "out.webm", nearest_2x)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
        assert c.streams.audio[0].codec_context.name == "opus"
        assert sum(1 for _ in c.decode(video=0)) == 6


# ---- the CLI: refusals before the model loads, a real model, Ray ------------------------------------------

def _cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from superres.cli import app

    res = CliRunner().invoke(app, ["video", *args])
    return res.exit_code, res.output


@pytest.mark.parametrize("name, message", [
    ("out.gif", "GIF output is not supported"),
    ("out.png", "'.png' is an image format"),
    ("out.xyz", "unknown video container '.xyz'"),
    ("exists.mp4", "exists; pass --overwrite to replace it"),
])
def test_outputs_it_cannot_write_are_refused_before_the_model_loads(tmp_path: Path, name: str,
                                                                   message: str) -> None:
    """The model is a weights file that does not exist: the refusal must come first."""
    src = make_clip(tmp_path / "in.mp4", frames=3, audio=None)
    (tmp_path / "exists.mp4").write_bytes(b"old")
    code, out = _cli(str(src), "-o", str(tmp_path / name), "-m", str(tmp_path / "no-such-model.pth"))
    assert code == 2 and message in out and "no-such-model" not in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert (tmp_path / "exists.mp4").read_bytes() == b"old"
    assert _names(tmp_path) == ["exists.mp4", "in.mp4"]


def test_cli_luma_model_at_native_scale_and_resume_message(tmp_path: Path) -> None:
    """espcn-r-x4 (a Y-channel model) through the luma + chroma method: x4 size, colours kept."""
    src = make_clip(tmp_path / "in.mp4", frames=8, size=(32, 24), audio=None, gop=4)
    code, out = _cli(str(src), "-o", str(tmp_path / "o.mp4"), "-m", "espcn-r-x4", "--segment-seconds", "0.1")
    assert code == 0, out
    frames, _, _ = decode_all(tmp_path / "o.mp4")
    assert len(frames) == 8 and frames[0].shape == (96, 128, 3)
    assert np.abs(frames[0][60:90, 10:50].reshape(-1, 3).mean(0) - (200, 40, 60)).max() < 6
    code, out = _cli(str(src), "-o", str(tmp_path / "o2.mp4"), "-m", "espcn-r-x4", "-s", "2")
    assert code == 0 and "espcn-r-x4 has no x2 member" in out, out
    code, out = _cli(str(src), "-o", str(tmp_path / "o3.mp4"), "-m", "span-x4", "-s", "2")
    assert code == 0 and "using span-x2" in out, out
    assert decode_all(tmp_path / "o3.mp4")[0][0].shape == (48, 64, 3)


def test_ray_engine_gives_the_local_runs_frames(tmp_path: Path) -> None:
    """`--engine ray` on a local 2-CPU cluster: segments encoded by actors, assembled by the driver; the
    decoded frames equal the local engine's, and nothing but the output is left."""
    pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")
    src = make_clip(tmp_path / "in.mp4", frames=12, size=(32, 24), gop=4)
    local, remote = tmp_path / "local.mp4", tmp_path / "ray.mp4"
    code, out = _cli(str(src), "-o", str(local), "-m", "espcn-s-x4", "--segment-seconds", "0.1")
    assert code == 0, out
    code, out = _cli(str(src), "-o", str(remote), "-m", "espcn-s-x4", "--segment-seconds", "0.1",
                     "--engine", "ray")
    assert code == 0, out
    a, pa, ta = decode_all(local)
    b, pb, tb = decode_all(remote)
    assert [p * ta for p in pa] == [p * tb for p in pb]
    assert len(a) == 12 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert _names(tmp_path) == ["in.mp4", "local.mp4", "ray.mp4"]


# ---- the temporal filter's seat (the filters themselves live in superres.video.temporal) ----------------

class _LaggingBlend:
    """A stand-in with the agreed interface: answers one frame late, blends each output with the last."""

    def __init__(self) -> None:
        self.pending: list[np.ndarray] = []
        self.last: np.ndarray | None = None

    def _out(self, sr: np.ndarray) -> np.ndarray:
        self.last = sr if self.last is None else (sr + self.last) / 2
        return self.last

    def push(self, lr: np.ndarray, sr: np.ndarray) -> list[np.ndarray]:
        assert lr.dtype == sr.dtype == np.float32 and sr.shape[0] == 2 * lr.shape[0]
        self.pending.append(sr)
        return [self._out(self.pending.pop(0))] if len(self.pending) > 1 else []

    def flush(self) -> list[np.ndarray]:
        out = [self._out(s) for s in self.pending]
        self.pending = []
        return out


def test_temporal_filter_is_fresh_per_segment_and_may_lag(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from superres.video.engine import prepare_video, run_video

    made: list[tuple[str, int, float | None]] = []

    def make_temporal(mode: str, *, scale: int, strength: float | None = None) -> _LaggingBlend:
        made.append((mode, scale, strength))
        return _LaggingBlend()

    fake = types.SimpleNamespace(make_temporal=make_temporal)
    monkeypatch.setitem(sys.modules, "superres.video.temporal", fake)
    src = make_clip(tmp_path / "in.mp4", frames=18, gop=6, audio=None)
    plain = process_video(src, tmp_path / "plain.mkv", nearest_2x, segment_seconds=0.2)
    job = prepare_video(src, tmp_path / "flow.mkv", size=lambda w, h: (2 * w, 2 * h), model_id="nn", scale=2,
                        segment_seconds=0.2, temporal="flow", temporal_strength=0.5)
    run_video(job, nearest_2x)
    assert made == [("flow", 2, 0.5)] * len(job.segments) and len(job.segments) == 3
    a, pa, _ = decode_all(plain)
    b, pb, _ = decode_all(tmp_path / "flow.mkv")
    assert pa == pb and len(b) == 18
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        same = np.abs(x.astype(int) - y.astype(int)).mean() < 1.0
        assert same == (k % 6 == 0), k  # each segment starts unfiltered: a fresh filter, no carried state


def test_a_muxer_that_gave_every_frame_one_timestamp_loses_no_frame(tmp_path: Path) -> None:
    """Broken timestamps (all packets at pts 0): every frame is kept, evenly spaced at the rate the stream
    reports (whatever FFmpeg guesses for such a file)."""
    src = tmp_path / "flat.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(_frame_rgb(i, 64, 48), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 100_000)  # rounds to 0 in the stream's time base
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    with av.open(str(src)) as c:
        assert {p.pts for p in c.demux(video=0) if p.size} == {0}
    dst = process_video(src, tmp_path / "out.mp4", nearest_2x)
    frames, pts, tb = decode_all(dst)
    steps = {b - a for a, b in zip(pts, pts[1:])}
    assert len(frames) == 8 and len(steps) == 1 and steps.pop() > 0
    first, _, _ = decode_all(src)
    assert all(np.abs(b[::2, ::2].astype(int) - a).mean() < 3 for a, b in zip(first, frames, strict=True))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice levels are a Linux feature")
def test_decode_and_encode_yield_to_the_network_thread(tmp_path: Path) -> None:
    """The encoder thread (and the x264 threads it starts) runs below the network, so on a few cores it fills
    the network's gaps rather than stalling it; the caller's own thread keeps its priority."""
    import threading

    from superres.video.pipeline import CODEC_NICE

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = nice()
    seen: dict[str, int] = {}

    def network(frames: list[np.ndarray]) -> list[np.ndarray]:
        seen["network"] = nice()
        return nearest_2x(frames)

    def progress(done: int, total: int) -> None:  # the encoder thread, after each frame
        if done:
            seen["encoder"] = nice()

    src = make_clip(tmp_path / "in.mp4", frames=4, audio=None)
    process_video(src, tmp_path / "out.mp4", network, progress=progress)
    assert nice() == before and seen["network"] == before
    assert seen["encoder"] == min(19, before + CODEC_NICE)
