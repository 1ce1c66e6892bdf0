"""The command line as a user meets it: outputs, skips, one-line errors, exit codes, no partial files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from superres.cli import app
from superres.inference.provenance import RECORD_NAME

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(weights_dir: Path) -> str:
    return str(weights_dir / "realesrgan" / "realesr-animevideov3.pth")


@pytest.fixture()
def images(tmp_path: Path, data_dir: Path) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    hr = Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB")
    hr.crop((0, 0, 40, 30)).save(src / "a.png")
    hr.crop((10, 10, 50, 42)).save(src / "sub" / "b.jpg", quality=95)
    return src


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*")
                if (p.name.startswith(".") and p.name != RECORD_NAME) or p.suffix == ".tmp"]


def test_upscale_folder_keeps_tree_and_skips_existing(images: Path, tmp_path: Path, model_file: str) -> None:
    out = tmp_path / "out"
    r = runner.invoke(app, ["upscale", str(images), "-o", str(out), "-m", model_file, "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert Image.open(out / "a.png").size == (160, 120)
    assert Image.open(out / "sub" / "b.jpg").size == (160, 128)
    assert "2 written" in r.output
    r = runner.invoke(app, ["upscale", str(images), "-o", str(out), "-m", model_file])
    assert r.exit_code == 0 and "2 skipped" in r.output
    r = runner.invoke(app, ["upscale", str(images), "-o", str(out), "-m", model_file, "--overwrite", "--outscale", "2"])
    assert r.exit_code == 0 and Image.open(out / "a.png").size == (80, 60)
    assert _no_temp_files(out)


def test_bad_files_are_reported_and_the_rest_continue(images: Path, tmp_path: Path, model_file: str) -> None:
    (images / "empty.png").write_bytes(b"")
    (images / "text.png").write_text("this is not an image")
    good = (images / "a.png").read_bytes()
    (images / "truncated.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    r = runner.invoke(app, ["upscale", str(images), "-o", str(out), "-m", model_file])
    assert r.exit_code == 1
    assert (out / "a.png").exists() and (out / "sub" / "b.jpg").exists()
    for bad in ("empty.png", "text.png", "truncated.png"):
        assert not (out / bad).exists()
        assert bad in r.output
    assert "3 failed" in r.output
    assert _no_temp_files(out)


def test_single_file_to_named_output(images: Path, tmp_path: Path, model_file: str) -> None:
    dst = tmp_path / "one.webp"
    r = runner.invoke(app, ["upscale", str(images / "a.png"), "-o", str(dst), "-m", model_file, "--width", "100"])
    assert r.exit_code == 0, r.output
    assert Image.open(dst).size == (100, 75)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "superres.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_user_errors_are_one_line_and_non_zero(tmp_path: Path, model_file: str) -> None:
    r = _cli("upscale", "missing.png", "-o", "out", "-m", "no-such-model", cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown model 'no-such-model'" in lines[0] and "Traceback" not in r.stderr
    r = _cli("upscale", "missing.png", "-o", "out", "-m", model_file, cwd=tmp_path)
    assert r.returncode == 1 and "missing.png" in r.stderr
    assert not (tmp_path / "out").exists() or _no_temp_files(tmp_path / "out")
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(b"\x80\x02garbage")
    r = _cli("upscale", "x.png", "-m", str(wrong), cwd=tmp_path)
    assert r.returncode == 2 and "wrong.pth" in r.stderr and "Traceback" not in r.stderr


def test_models_lists_the_zoo() -> None:
    r = runner.invoke(app, ["models", "--json"])
    assert r.exit_code == 0
    import json

    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["realesrgan-x4plus"]["params"] == 16_697_987
    assert rows["realesrgan-x4plus-anime"]["params"] == 4_467_779
    assert rows["realesr-animevideov3"]["params"] == 621_424
    assert all(r["licence"] and r["source"] for r in rows.values())


def test_every_image_kind_through_the_command(tmp_path: Path, data_dir: Path, model_file: str) -> None:
    """Palette, CMYK JPEG, EXIF-rotated JPEG with ICC + EXIF, 16-bit PNG, gray+alpha: each comes out of
    ``superres upscale`` with the right mode, bit depth, orientation and metadata."""
    from PIL import ImageCms

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo = Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png").convert("RGB").crop((0, 0, 24, 16))
    photo.quantize(16).save(src / "palette.png")
    photo.convert("CMYK").save(src / "cmyk.jpg", quality=95)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    exif[0x010F] = "superres-test-camera"
    photo.save(src / "rotated.jpg", quality=95, exif=exif.tobytes(), icc_profile=srgb)
    sixteen = (np.random.default_rng(3).random((16, 24, 3)) * 65535).astype(np.uint16)
    from superres.io.image import from_array, write_image

    write_image(from_array(sixteen), src / "deep.png")
    Image.fromarray(np.dstack([np.asarray(photo.convert("L")), np.full((16, 24), 128, np.uint8)]), "LA").save(
        src / "gray_alpha.png")

    res = runner.invoke(app, ["upscale", str(src), "-o", str(dst), "-m", model_file])
    assert res.exit_code == 0, res.output
    with Image.open(dst / "palette.png") as im:
        assert im.mode == "RGB" and im.size == (96, 64)
    with Image.open(dst / "cmyk.jpg") as im:
        assert im.mode == "RGB" and im.size == (96, 64)
    with Image.open(dst / "rotated.jpg") as im:
        assert im.size == (64, 96)  # upright: the rotation was applied, and the tag no longer rotates it
        assert im.getexif().get(0x0112, 1) == 1 and im.getexif().get(0x010F) == "superres-test-camera"
        assert im.info.get("icc_profile") == srgb
    from superres.io.image import read_image

    deep = read_image(dst / "deep.png")
    assert deep.bit_depth == 16 and deep.size == (96, 64)
    levels = np.rint(deep.color * 65535).astype(np.int64)
    assert len(np.unique(levels % 257)) > 1  # real 16-bit values, not 8-bit ones scaled up
    with Image.open(dst / "gray_alpha.png") as im:
        assert im.mode == "LA" and im.size == (96, 64)
        assert np.asarray(im)[..., 1].min() >= 120 and np.asarray(im)[..., 1].max() <= 136


@pytest.mark.parametrize(
    "args, wanted",
    [
        (["upscale", "x.png", "-m", "realesrgan-x4plsu"], "did you mean 'realesrgan-x4plus'?"),
        (["eval", "-d", "BSD10O", "--limit", "1"], "did you mean 'BSD100'?"),
        (["eval", "-d", "Set5", "--metrics", "pnsr", "--limit", "1"], "did you mean 'psnr'?"),
        (["upscale", "x.png", "--backend", "onnxrutime"], "did you mean 'onnxruntime'?"),
    ],
)
def test_misspelt_names_get_a_suggestion_on_one_line(args: list[str], wanted: str, data_dir: Path) -> None:
    if args[0] == "eval":
        args = [*args, "--data-root", str(data_dir)]
    r = runner.invoke(app, args)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and wanted in lines[0], r.output


def test_alpha_help_states_the_cost() -> None:
    r = runner.invoke(app, ["upscale", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "2x as long as RGB" in " ".join(r.output.split())


def test_models_table_reads_at_80_columns_and_wide_shows_everything() -> None:
    from superres.zoo.registry import all_cards

    cards = all_cards()
    r = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    rule = next(i for i, ln in enumerate(lines) if ln.startswith("─"))
    body = lines[rule + 1:lines.index("", rule)]  # the table's rows end at the first blank line
    firsts = [ln.split()[0] for ln in body]
    assert all(c.name in firsts for c in cards)  # each name whole, at the start of its own row
    assert len(body) == len(cards)  # one line per model: nothing folded onto a second line
    wide = runner.invoke(app, ["models", "--wide"], env={"COLUMNS": "80"})
    assert wide.exit_code == 0
    assert all(c.source in wide.output and c.licence in wide.output for c in cards)


def test_the_command_lets_idle_openmp_threads_sleep_unless_the_user_chose() -> None:
    """``superres`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (spinning idle threads starved the
    video pipeline's codec threads), and keeps a policy the user set."""

    code = ("import os; from superres import cli; cli.idle_threads_sleep(); import torch; "
            "print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert got.stdout.strip() == "PASSIVE"
    got = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert got.stdout.strip() == "ACTIVE"


def test_every_command_options_may_follow_the_command() -> None:
    from superres.cli import hoist_global_options

    assert hoist_global_options(["upscale", "a.png", "--allow-noncommercial", "--max-weights-params", "9"]) == [
        "--allow-noncommercial", "--max-weights-params", "9", "upscale", "a.png"]
    assert hoist_global_options(["upscale", "--max-weights-params=9", "a.png"]) == [
        "--max-weights-params=9", "upscale", "a.png"]
    assert hoist_global_options(["upscale", "--", "--allow-noncommercial"]) == [
        "upscale", "--", "--allow-noncommercial"]
