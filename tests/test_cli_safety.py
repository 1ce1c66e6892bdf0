"""A user's files are never lost: the CLI refuses to overwrite inputs or existing outputs, detects two
inputs that would share an output, checks sizes before working, and stops cleanly on SIGTERM/kill -9.

Every case goes through the real command (CliRunner in-process, or a subprocess where a signal is sent)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from superres.cli import app
from superres.inference.provenance import RECORD_NAME
from superres.io.atomic import TEMP_MARKER

MODEL = "espcn-s-x4"  # bundled, 7.8K parameters: fast enough for many runs
runner = CliRunner()


def upscale(*args: str) -> "object":
    return runner.invoke(app, ["upscale", *args, "-m", MODEL, "--device", "cpu"])


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TEMP_MARKER in p.name or p.suffix == ".tmp"]


@pytest.fixture()
def photo(tmp_path: Path, data_dir: Path) -> Path:
    p = tmp_path / "bird.png"
    Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB").save(p)
    return p


def test_single_output_never_replaces_its_input(photo: Path) -> None:
    before = photo.read_bytes()
    r = upscale(str(photo), "-o", str(photo), "--overwrite")
    assert r.exit_code == 2 and "is the input file itself" in r.output
    link = photo.parent / "link.png"
    link.symlink_to(photo)
    r = upscale(str(photo), "-o", str(link), "--overwrite")
    assert r.exit_code == 2 and "is the input file itself" in r.output
    assert photo.read_bytes() == before


def test_single_output_needs_overwrite(photo: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.png"
    dst.write_bytes(b"precious")
    r = upscale(str(photo), "-o", str(dst))
    assert r.exit_code == 2 and "--overwrite" in r.output and len(r.output.strip().splitlines()) == 1
    assert dst.read_bytes() == b"precious"
    r = upscale(str(photo), "-o", str(dst), "--overwrite")
    assert r.exit_code == 0 and Image.open(dst).size == (288, 288)


def test_folder_output_onto_its_inputs_is_refused(photo: Path) -> None:
    before = photo.read_bytes()
    r = upscale(str(photo), "-o", str(photo.parent), "--overwrite")
    assert r.exit_code == 1 and "is the input file itself" in r.output
    assert photo.read_bytes() == before


@pytest.mark.parametrize("layout", ["same-stem", "same-name-two-folders"])
def test_two_inputs_for_one_output_detected_before_work(photo: Path, tmp_path: Path, layout: str) -> None:
    src = tmp_path / "in"
    if layout == "same-stem":
        src.mkdir()
        Image.open(photo).save(src / "x.png")
        Image.open(photo).save(src / "x.gif")
        args = [str(src)]
    else:
        for d in ("d1", "d2"):
            (src / d).mkdir(parents=True)
            Image.open(photo).save(src / d / "y.png")
        args = [str(src / "d1" / "y.png"), str(src / "d2" / "y.png")]
    out = tmp_path / "out"
    r = upscale(*args, "-o", str(out))
    assert r.exit_code == 2 and "inputs would be written to" in r.output
    assert not out.exists()  # nothing was done


def test_output_folder_inside_input_is_not_read_back(photo: Path, tmp_path: Path) -> None:
    src = photo.parent
    out = src / "big"
    for _ in range(2):
        r = upscale(str(src), "-o", str(out), "--overwrite")
        assert r.exit_code == 0, r.output
        assert "1 written" in r.output
    assert sorted(p.name for p in out.rglob("*")) == [RECORD_NAME, "bird.png"]


@pytest.mark.parametrize("args, message", [
    (["-s", "nan"], "positive number"), (["-s", "inf"], "positive number"), (["-s", "0"], "positive number"),
    (["-s", "-2"], "positive number"), (["-s", "1e4"], "absurd"), (["--width", "0"], "--width"),
    (["--height", "-3"], "--height"), (["--tile", "-5"], "--tile"), (["-s", "2", "--width", "9"], "not both"),
])
def test_bad_size_options_one_line(photo: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "o.png"
    r = upscale(str(photo), "-o", str(out), *args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not out.exists()


def test_oversized_output_is_listed_and_the_batch_goes_on(photo: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.open(photo).save(src / "a_small.png")
    # a 4100x4100 grey PNG: at x4 it is 16400x16400, over the default 16384x16384 limit
    Image.fromarray(np.zeros((4100, 4100), np.uint8)).save(src / "b_huge.png")
    Image.open(photo).save(src / "c_small.png")
    out = tmp_path / "out"
    r = upscale(str(src), "-o", str(out))
    assert r.exit_code == 1
    assert "b_huge.png" in r.output and "--max-output-pixels" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in out.iterdir()) == [RECORD_NAME, "a_small.png", "c_small.png"]
    r = upscale(str(photo), "-o", str(tmp_path / "x.png"), "--max-output-pixels", "1000")
    assert r.exit_code == 2 and "exceeds --max-output-pixels" in r.output


def test_empty_folder_dangling_link_and_still_image_video(photo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = upscale(str(empty), "-o", str(tmp_path / "out"))
    assert r.exit_code == 2 and "no images found" in r.output
    (empty / "gone.png").symlink_to(tmp_path / "nowhere.png")
    Image.open(photo).save(empty / "ok.png")
    r = upscale(str(empty), "-o", str(tmp_path / "out"))
    (empty / "a_loop.png").symlink_to(empty / "b_loop.png")
    (empty / "b_loop.png").symlink_to(empty / "a_loop.png")
    r = upscale(str(empty), "-o", str(tmp_path / "out"))
    assert r.exit_code == 1 and "gone.png" in r.output and "dangling link" in r.output
    assert "a_loop.png: symbolic link loop" in r.output
    assert (tmp_path / "out" / "ok.png").exists()
    r = runner.invoke(app, ["video", str(photo), "-o", str(tmp_path / "v.mp4"), "-m", MODEL])
    assert r.exit_code == 2 and "still image" in r.output


def test_summary_mentions_skips_only_when_there_are_some(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = upscale(str(photo.parent), "-o", str(out))
    assert r.exit_code == 0 and "skipped" not in r.output
    r = upscale(str(photo.parent), "-o", str(out))
    assert "1 skipped (exist; --overwrite to redo)" in r.output


# ---- signals: SIGTERM and kill -9 in the middle of a 20-image batch ------------------------------------


def _make_batch(src: Path, data_dir: Path, n: int = 20) -> None:
    src.mkdir()
    files = sorted((data_dir / "BSD100" / "HR").glob("*.png"))[:n]
    for i, f in enumerate(files):
        Image.open(f).convert("RGB").crop((0, 0, 160, 120)).save(src / f"{i:02d}.png")


def _cli(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "superres.cli", "upscale", str(src), "-o", str(out), "-m", MODEL,
            "--device", "cpu"]


def _run_until(cmd: list[str], out: Path, outputs: int, sig: int) -> int:
    """Start a batch, wait until ``outputs`` files are finished, send ``sig``; returns the exit status."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = [p for p in out.glob("*.png")] if out.exists() else []
        if len(done) >= outputs:
            break
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.communicate(timeout=120)
    return proc.returncode


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict[str, bytes]]:
    base = tmp_path_factory.mktemp("clean")
    _make_batch(base / "in", data_dir)
    subprocess.run(_cli(base / "in", base / "out"), check=True, capture_output=True)
    return base / "in", {p.name: p.read_bytes() for p in sorted((base / "out").glob("*.png"))}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill-9"])
@pytest.mark.parametrize("after", [1, 7, 15])
def test_signal_mid_batch_loses_nothing(clean_run: tuple[Path, dict[str, bytes]], tmp_path: Path,
                                        sig: int, after: int) -> None:
    src, reference = clean_run
    assert len(reference) == 20
    out = tmp_path / "out"
    code = _run_until(_cli(src, out), out, after, sig)
    if code != 0:  # the batch may have finished before the signal arrived on a fast machine
        assert code == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    finished = {p.name: p.read_bytes() for p in out.glob("*.png")}
    for name, data in finished.items():  # whatever is there under a final name is complete
        same = data == reference[name]  # a bool: pytest's byte-by-byte diff of two PNGs takes minutes
        assert same, f"{name} differs from the clean run's"
    if sig == signal.SIGTERM:
        assert temp_files(out) == []  # SIGTERM cleans up after itself
    r = subprocess.run(_cli(src, out), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert temp_files(out) == []  # the rerun removed whatever kill -9 left
    assert {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))} == reference
    assert sorted(p.name for p in out.iterdir()) == sorted([RECORD_NAME, *reference])


def test_silent_losses_are_warned(tmp_path: Path, photo: Path) -> None:
    frame = Image.open(photo).convert("P")
    frame.save(tmp_path / "anim.gif", save_all=True, append_images=[frame.rotate(90)])
    Image.fromarray(np.linspace(-0.5, 2.0, 600, dtype=np.float32).reshape(20, 30), mode="F").save(tmp_path / "f.tif")
    r = upscale(str(tmp_path / "anim.gif"), str(tmp_path / "f.tif"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert "anim.gif: has 2 frames; only the first is upscaled" in r.output
    assert "f.tif: float samples span -0.5..2; clipped to 0..1" in r.output


def test_unknown_ext_refused_before_work(photo: Path, tmp_path: Path) -> None:
    r = upscale(str(photo), "-o", str(tmp_path / "out"), "--ext", "xyz")
    assert r.exit_code == 2 and "--ext must be one of" in r.output
    assert not (tmp_path / "out").exists()
