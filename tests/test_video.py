"""Video: same frames, frame rate, duration and audio in the output; clear errors and no partial files.
Every clip is made by the test itself with PyAV."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from superres.errors import SuperresError

av = pytest.importorskip("av", reason="video tests need PyAV (pip install 'superres[video]')")

from superres.video import probe_video, process_video  # noqa: E402

NTSC = Fraction(24000, 1001)
RED, BLUE = (200, 40, 60), (30, 160, 220)
_SWS = {1: "ITU709", 5: "ITU601", 6: "ITU601"}


def _frame_rgb(i: int, w: int, h: int) -> np.ndarray:
    """Left half red, right half blue, plus a moving gray bar so frames differ."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = RED
    arr[:, w // 2 :] = BLUE
    arr[: h // 4, (4 * i) % w : (4 * i) % w + 4] = 128
    return arr


def make_clip(
    path: Path,
    *,
    frames: int = 12,
    size: tuple[int, int] = (64, 48),
    fps: Fraction = NTSC,
    audio: str | None = "aac",
    colorspace: int | None = None,
    pts_ms: list[int] | None = None,
    gop: int | None = None,
) -> Path:
    """A short H.264 clip with a 440 Hz sine track. ``colorspace`` tags (and encodes with) a matrix;
    ``pts_ms`` gives explicit, possibly irregular, timestamps in milliseconds (variable frame rate)."""
    w, h = size
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"crf": "10"} if gop is None else {"crf": "10", "g": str(gop), "keyint_min": str(gop)}
        if colorspace is not None:
            v.codec_context.colorspace = colorspace
        a = None
        if audio is not None:
            a = out.add_stream(audio, rate=48000)
            a.layout = "stereo"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_frame_rgb(i, w, h), format="rgb24")
            if colorspace is not None:
                frame = frame.reformat(
                    format="yuv420p", dst_colorspace=_SWS[colorspace], dst_color_range="MPEG"
                )
                frame.colorspace = colorspace
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            else:
                frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if a is not None:
            n = int(48000 * frames / fps)
            t = np.arange(n) / 48000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, n, 1024):
                chunk = np.stack([wave[start : start + 1024]] * 2)
                if a.codec_context.format.name == "s16":
                    block = av.AudioFrame.from_ndarray(
                        (chunk.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout="stereo"
                    )
                else:
                    block = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(chunk), format="fltp", layout="stereo"
                    )
                block.sample_rate, block.pts = 48000, start
                out.mux(a.encode(block))
            out.mux(a.encode(None))
    return path


def nearest_2x(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [f.repeat(2, axis=0).repeat(2, axis=1) for f in frames]


def decode_all(path: Path) -> tuple[list[np.ndarray], list[int], Fraction]:
    """Frames as a player shows them (the tagged matrix; untagged SD = BT.601), their pts, time base."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames, pts = [], []
        for f in c.decode(vs):
            matrix = _SWS.get(int(f.colorspace), "ITU601")
            frames.append(f.to_ndarray(format="rgb24", src_colorspace=matrix, src_color_range="MPEG"))
            pts.append(int(f.pts))
        return frames, pts, Fraction(vs.time_base)


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return sum(f.samples for f in c.decode(a)) / a.codec_context.sample_rate


def test_upscale_keeps_frames_fps_duration_and_audio(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4")
    dst = tmp_path / "out.mp4"
    calls: list[tuple[int, int | None]] = []
    assert (
        process_video(src, dst, nearest_2x, batch_size=5, progress=lambda d, n: calls.append((d, n))) == dst
    )
    before, after = probe_video(src), probe_video(dst)
    assert (after.width, after.height) == (128, 96)
    assert after.fps == NTSC == before.fps
    frames_in, pts_in, tb_in = decode_all(src)
    frames_out, pts_out, tb_out = decode_all(dst)
    assert len(frames_out) == len(frames_in) == 12
    assert [p * tb_out for p in pts_out] == [p * tb_in for p in pts_in]  # every frame at its time
    assert after.duration is not None and before.duration is not None
    assert abs(after.duration - before.duration) <= 1 / float(NTSC)
    assert after.has_audio and after.audio_codec == "aac"
    assert abs(audio_seconds(dst) - audio_seconds(src)) < 1e-6  # copied, not re-encoded
    assert calls == [(i, 12) for i in range(13)]  # frames done / total, from 0
    for a, b in zip(frames_in, frames_out, strict=True):  # the picture itself: same content, no colour shift
        assert np.abs(b[::2, ::2].astype(int) - a.astype(int)).mean() < 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_audio_the_container_cannot_hold_is_transcoded_and_ms_timestamps_snap(tmp_path: Path) -> None:
    """Matroska with PCM audio (no channel order) into MP4: MP4 refuses that PCM, so it becomes AAC;
    Matroska's millisecond timestamps become exact 24000/1001 frame times instead of a rounded rate."""
    src = make_clip(tmp_path / "in.mkv", audio="pcm_s16le")
    dst = process_video(src, tmp_path / "out.mp4", nearest_2x)
    info = probe_video(dst)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.fps == NTSC
    frames_out, pts_out, tb_out = decode_all(dst)
    assert len(frames_out) == 12
    assert [p * tb_out for p in pts_out] == [Fraction(1001 * i, 24000) for i in range(12)]
    assert abs(audio_seconds(dst) - audio_seconds(src)) < 0.05


def test_variable_frame_rate_timing_is_kept(tmp_path: Path) -> None:
    pts_ms = [0, 40, 120, 160, 240, 280, 360, 400]
    src = make_clip(tmp_path / "vfr.mkv", frames=len(pts_ms), pts_ms=pts_ms, fps=Fraction(25), audio=None)
    dst = process_video(src, tmp_path / "vfr_out.mkv", nearest_2x)
    _, pts_out, tb = decode_all(dst)
    assert [int(p * tb * 1000) for p in pts_out] == pts_ms
    assert not probe_video(dst).has_audio


def test_bt709_tagged_input_keeps_its_colours_and_tag(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "hd.mp4", colorspace=1, audio=None)
    dst = process_video(src, tmp_path / "out.mp4", nearest_2x)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.colorspace == 1
    frames_out, _, _ = decode_all(dst)
    centre_red = frames_out[0][60:80, 10:40].reshape(-1, 3).mean(axis=0)
    centre_blue = frames_out[0][60:80, 90:120].reshape(-1, 3).mean(axis=0)
    assert np.abs(centre_red - RED).max() < 4 and np.abs(centre_blue - BLUE).max() < 4


def test_display_rotation_of_phone_videos_is_carried(tmp_path: Path) -> None:
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix")
    src = tmp_path / "portrait.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.set_display_rotation(90)
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(_frame_rgb(i, 64, 48), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    dst = process_video(src, tmp_path / "out.mp4", nearest_2x)
    with av.open(str(dst)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (128, 96, 90)


def test_non_video_file_gives_a_clear_error_and_no_output(tmp_path: Path) -> None:
    src = tmp_path / "notes.mp4"
    src.write_text("not a video at all\n" * 20)
    dst = tmp_path / "out.mp4"
    with pytest.raises(SuperresError) as e:
        process_video(src, dst, nearest_2x)
    msg = str(e.value)
    assert "\n" not in msg and "notes.mp4" in msg and "not a video" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]
    with pytest.raises(SuperresError, match="file not found"):
        probe_video(tmp_path / "missing.mp4")


def test_failure_mid_run_leaves_no_partial_output(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4")
    calls = 0

    def flaky(frames: list[np.ndarray]) -> list[np.ndarray]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("model crashed")
        return nearest_2x(frames)

    with pytest.raises(RuntimeError, match="model crashed"):
        process_video(src, tmp_path / "out.mp4", flaky)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_bad_frames_from_the_callback_are_explained(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", audio=None)
    with pytest.raises(SuperresError, match="even frame size, got 65x49"):
        process_video(src, tmp_path / "odd.mp4", lambda fs: [np.zeros((49, 65, 3), np.uint8) for _ in fs])
    with pytest.raises(SuperresError, match="returned 0 frames for a batch of 1"):
        process_video(src, tmp_path / "short.mp4", lambda fs: [f.repeat(2, 0).repeat(2, 1) for f in fs][1:])
    with pytest.raises(SuperresError, match="encoder 'no-such-codec'"):
        process_video(src, tmp_path / "x.mp4", nearest_2x, codec="no-such-codec")
    with pytest.raises(SuperresError, match=r"unknown video container '\.xyz'"):
        process_video(src, tmp_path / "new" / "x.xyz", nearest_2x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_probe_video(tmp_path: Path) -> None:
    info = probe_video(make_clip(tmp_path / "in.mp4"))
    assert (info.width, info.height, info.fps, info.frame_count) == (64, 48, NTSC, 12)
    assert info.has_audio and info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.duration == pytest.approx(12 / float(NTSC), abs=1e-3)


def test_missing_pyav_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` fail
    with pytest.raises(SuperresError, match=r"pip install 'superres\[video\]'.*scripts/setup.sh video"):
        probe_video(tmp_path / "x.mp4")


def test_audio_only_file_is_refused_as_having_no_video_stream(tmp_path: Path) -> None:
    src = tmp_path / "song.m4a"
    with av.open(str(src), "w") as out:
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(4800) / 48000)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([samples, samples])[None].reshape(1, -1), format="flt",
                                           layout="stereo")
        frame.sample_rate = 48000
        for packet in a.encode(frame):
            out.mux(packet)
        for packet in a.encode(None):
            out.mux(packet)
    with pytest.raises(SuperresError, match="song.m4a.*no video stream") as e:
        process_video(src, tmp_path / "out.mp4", nearest_2x)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.m4a"]


def test_video_command_end_to_end(tmp_path: Path, weights_dir: Path) -> None:
    """``superres video`` with a real model: frame count, rate and audio kept, frames upscaled x4."""
    from typer.testing import CliRunner

    from superres.cli import app

    src = make_clip(tmp_path / "in.mp4", frames=6, size=(32, 24))
    dst = tmp_path / "out" / "big.mp4"
    model = str(weights_dir / "realesrgan" / "realesr-animevideov3.pth")
    res = CliRunner().invoke(app, ["video", str(src), "-o", str(dst), "-m", model, "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    info, src_info = probe_video(dst), probe_video(src)
    assert (info.width, info.height) == (128, 96)
    assert (info.frame_count, info.fps, info.has_audio) == (6, src_info.fps, True)
    assert info.duration == pytest.approx(src_info.duration, abs=0.05)
    assert sorted(p.name for p in dst.parent.iterdir()) == ["big.mp4"]

    bad = CliRunner().invoke(app, ["video", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "x.mp4"), "-m", model])
    assert bad.exit_code == 2 and "nope.mp4': file not found" in bad.output
    assert not (tmp_path / "x.mp4").exists()
