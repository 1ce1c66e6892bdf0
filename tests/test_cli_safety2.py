"""Safety, round two (issue 24, items 6, 7, 10-14): links in the output tree, two batches in one folder,
weights files among the inputs, install hints, reruns with other settings, and messages that say what
actually happened. Every case goes through the real command (CliRunner in-process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from superres.cli import app
from superres.inference.provenance import RECORD_NAME
from superres.io.atomic import TEMP_MARKER, owner_tag

MODEL = "espcn-s-x4"  # bundled, 7.8K parameters
runner = CliRunner()


def upscale(*args: str, model: str | None = MODEL) -> "object":
    return runner.invoke(app, ["upscale", *args, *(["-m", model] if model else []), "--device", "cpu"])


def errors(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def bird(data_dir: Path) -> Image.Image:
    return Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB").crop((0, 0, 40, 32))


@pytest.fixture()
def tree(tmp_path: Path, bird: Image.Image) -> Path:
    """in/a.png and in/sub/a.png: two different images."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    bird.save(src / "a.png")
    bird.rotate(90).save(src / "sub" / "a.png")
    return src


# ---- item 6: a link inside the output tree -------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_link_in_output_tree_never_touches_an_input(tree: Path, tmp_path: Path, overwrite: bool) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(tree)  # out/sub/a.png is in/a.png
    before = snapshot(tree)
    r = upscale(str(tree), "-o", str(out), *(["--overwrite"] if overwrite else []))
    assert r.exit_code == 1, r.output
    assert "leads through a link to the input" in r.output and "Traceback" not in r.output
    assert "skipped" not in r.output  # the input is not taken for a finished output either
    assert snapshot(tree) == before  # inputs byte-identical
    assert Image.open(out / "a.png").size == (160, 128)  # the other input was done


def test_link_in_output_tree_into_an_input_folder(tree: Path, tmp_path: Path, bird: Image.Image) -> None:
    """A new file through the link would land inside the input tree (and be read back next time)."""
    bird.save(tree / "sub" / "new.gif")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(tree / "sub")  # out/sub/new.png -> in/sub/new.png: not an input, but inside
    before = snapshot(tree)
    r = upscale(str(tree), "-o", str(out), "--overwrite")
    assert r.exit_code == 1 and "leads through a link into the input folder" in r.output
    assert snapshot(tree) == before


def test_link_refused_by_the_python_api_and_the_ray_plan(tree: Path, tmp_path: Path) -> None:
    from superres.cluster.ray_batch import plan_outputs
    from superres.inference.batch import run_batch
    from superres.loading import load_model

    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(tree)
    before = snapshot(tree)
    report = run_batch(load_model(MODEL, device="cpu"), [tree], out, overwrite=True)
    assert [(p.name, "leads through a link" in why) for p, why in report.failed] == [("a.png", True)]
    todo, skipped, refused = plan_outputs(tree, out, "auto", "", overwrite=True)
    assert [p for p, _ in todo] == [tree / "a.png"] and skipped == [] and len(refused) == 1
    assert snapshot(tree) == before


# ---- item 7: two batches into one folder ---------------------------------------------------------------


def test_stale_sweep_spares_a_live_batchs_temporary_files(tree: Path, tmp_path: Path) -> None:
    """Another batch (a live process) is mid-write in the same output folder: its temporary file must
    survive this batch's sweep; a dead process's leftover (kill -9) is removed."""
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_tmp = out / f".x.png{TEMP_MARKER}{owner_tag(live.pid)}-abc123.tmp"
        dead_tmp = out / f".y.png{TEMP_MARKER}{owner_tag(dead.pid)}-def456.tmp"
        old_tmp = out / f".z.png{TEMP_MARKER}k2j3h4.tmp"  # made before owners were recorded
        for p in (live_tmp, dead_tmp, old_tmp):
            p.write_bytes(b"half an image")
        r = upscale(str(tree / "a.png"), "-o", str(out))
        assert r.exit_code == 0, r.output
        assert live_tmp.read_bytes() == b"half an image"  # the other batch can still finish
        assert not dead_tmp.exists() and not old_tmp.exists()
        assert "2 stale temporary file(s) of an earlier run removed" in r.output
    finally:
        live.stdin.close()  # type: ignore[union-attr]
        live.wait()


def test_two_batches_into_one_folder_both_finish(tree: Path, tmp_path: Path, bird: Image.Image) -> None:
    """The real thing: two command processes writing into one folder at once both succeed."""
    other = tmp_path / "other"
    other.mkdir()
    for i in range(4):
        bird.rotate(10 * i).save(other / f"o{i}.png")
    out = tmp_path / "out"
    cmds = [[sys.executable, "-m", "superres.cli", "upscale", str(src), "-o", str(out), "-m", MODEL,
             "--device", "cpu"] for src in (tree, other)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        "a.png", "o0.png", "o1.png", "o2.png", "o3.png", "sub/a.png"]
    assert not [p for p in out.rglob("*") if TEMP_MARKER in p.name]


# ---- item 10: weights files among the inputs; -o FILE with several inputs --------------------------------


def test_readme_weights_file_example(tree: Path, tmp_path: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    """``superres upscale my_weights.pth in/ -o out/`` exactly as the README prints it."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(weights_dir / "opencv_superres" / "ESPCN_x4.pth", "my_weights.pth")
    r = upscale("my_weights.pth", "in/", "-o", "out/", model=None)
    assert r.exit_code == 0, r.output
    assert "model: my_weights.pth" in r.output and "2 written, 0 failed" in r.output
    assert Image.open("out/a.png").size == Image.open("out/sub/a.png").size == (160, 128)
    # the same as naming it with -m
    r = upscale("in/a.png", "-o", "m.png", model="my_weights.pth")
    assert r.exit_code == 0 and Path("m.png").read_bytes() == Path("out/a.png").read_bytes()


def test_weights_file_elsewhere_is_one_line(tree: Path, tmp_path: Path, weights_dir: Path) -> None:
    w = weights_dir / "opencv_superres" / "ESPCN_x4.pth"
    r = upscale(str(tree / "a.png"), str(w), "-o", str(tmp_path / "out"), model=None)
    assert r.exit_code == 2 and errors(r.output) == [
        f"error: '{w}' is a weights file, not an image; give it as the first input or with -m"]
    r = upscale(str(w), str(tree), "-o", str(tmp_path / "out"))  # -m given too
    assert r.exit_code == 2 and "-m already names the model" in r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("what", ["two files", "a folder"])
def test_output_file_name_with_several_inputs(tree: Path, tmp_path: Path, what: str) -> None:
    args = [str(tree / "a.png"), str(tree / "sub" / "a.png")] if what == "two files" else [str(tree)]
    r = upscale(*args, "-o", str(tmp_path / "out.png"))
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "names one image file" in r.output and "give a folder" in r.output
    assert not (tmp_path / "out.png").exists()


# ---- item 11: install hints keep their extra -------------------------------------------------------------


@pytest.mark.parametrize("extra, missing, argv", [
    ("video", "av", ["video", "{clip}", "-o", "{tmp}/v.mp4", "-m", MODEL]),
    ("serve", "fastapi", ["serve", "--port", "1"]),
    ("plot", "matplotlib", ["demo", "-o", "{tmp}/demo", "-m", MODEL]),
    ("cluster", "ray", ["batch", "{src}", "{tmp}/out", "--engine", "ray", "-m", MODEL]),
])
def test_install_hints_name_the_extra(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str,
                                      missing: str, argv: list[str]) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 64)
    for name in list(sys.modules):
        if name == missing or name.startswith(missing + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if the extra were not installed
    args = [a.format(clip=clip, tmp=tmp_path, src=tree) for a in argv]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert f"pip install 'superres[{extra}]'" in r.output  # the brackets survive the printing
    assert f"bash scripts/setup.sh {extra}" in r.output and f"pip install -e '.[{extra}]'" in r.output
    assert len(errors(r.output)) == 1 and "Traceback" not in r.output


# ---- item 12: a rerun with other settings ----------------------------------------------------------------


def test_rerun_with_other_model_or_scale_is_not_silently_kept(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = str(tree / "a.png")
    assert upscale(src, "-o", str(out), "-s", "3").exit_code == 0
    first = (out / "a.png").read_bytes()
    r = upscale(src, "-o", str(out), "-s", "3")  # same settings: a plain skip
    assert r.exit_code == 0 and "1 skipped (exist" in r.output and "kept" not in r.output
    for other in (["-s", "2"], ["-s", "3", "-m", "espcn-m-x4"]):
        r = runner.invoke(app, ["upscale", src, "-o", str(out), "--device", "cpu", *(other if "-m" in other
                                else [*other, "-m", MODEL])])
        assert r.exit_code == 0, r.output
        assert f"kept: {out / 'a.png'}: made with other settings (espcn-s-x4 x4, -s 3; now " in r.output
        assert "1 kept that other or unknown settings made (--overwrite to redo them)" in r.output
        assert (out / "a.png").read_bytes() == first  # kept, and said so
    r = upscale(src, "-o", str(out), "-s", "2", "--overwrite")
    assert r.exit_code == 0 and Image.open(out / "a.png").size == (80, 64)
    r = upscale(src, "-o", str(out), "-s", "2")  # the record now names the new settings
    assert "1 skipped (exist" in r.output and "kept" not in r.output


def test_output_without_a_record_has_unknown_settings(tree: Path, tmp_path: Path, bird: Image.Image) -> None:
    out = tmp_path / "out"
    out.mkdir()
    bird.save(out / "a.png")  # made by something else (or by superres before records existed)
    r = upscale(str(tree / "a.png"), "-o", str(out))
    assert r.exit_code == 0 and "made with unknown settings" in r.output and "1 kept" in r.output
    assert Image.open(out / "a.png").size == (40, 32)
    (out / RECORD_NAME).write_bytes(b"{not json\n" + b"x" * 100_000 + b"\n")  # a damaged record is no crash
    r = upscale(str(tree / "a.png"), "-o", str(out))
    assert r.exit_code == 0 and "made with unknown settings" in r.output


# ---- item 13: messages that say what happened -------------------------------------------------------------


def test_same_stem_collision_hint_is_one_that_works(tmp_path: Path, bird: Image.Image) -> None:
    src = tmp_path / "in"
    src.mkdir()
    bird.save(src / "x.png")
    bird.convert("P").save(src / "x.gif")
    r = upscale(str(src), "-o", str(tmp_path / "out"))
    assert r.exit_code == 2 and "rename one of them" in r.output and "--suffix" not in r.output


def test_non_image_output_name_is_refused_before_asking_for_overwrite(tree: Path, tmp_path: Path) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("precious")
    r = upscale(str(tree / "a.png"), "-o", str(txt))
    assert r.exit_code == 2 and ".txt is not an image format" in r.output and "--overwrite" not in r.output
    assert txt.read_text() == "precious"


@pytest.mark.parametrize("suffix, width, fmt", [(".jpg", 16_376, "JPEG"), (".webp", 4_096, "WebP")])
@pytest.mark.parametrize("mode", ["file", "folder"])
def test_format_side_limits_checked_before_the_model_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          suffix: str, width: int, fmt: str, mode: str) -> None:
    from superres.inference.upscaler import Upscaler

    calls: list[int] = []
    monkeypatch.setattr(Upscaler, "upscale_image", lambda self, *a, **k: calls.append(1))
    src = tmp_path / f"strip{suffix}"
    Image.fromarray(np.full((2, width, 3), 128, np.uint8)).save(src)  # x4: over the format's side limit
    dst = tmp_path / (f"o{suffix}" if mode == "file" else "out")
    r = upscale(str(src), "-o", str(dst))
    assert r.exit_code == (2 if mode == "file" else 1), r.output
    assert f"too large for {fmt}" in r.output and "--ext png" in r.output
    assert calls == []  # refused before any inference
    assert not dst.exists() or not any(dst.iterdir())


def test_no_images_because_they_lie_inside_the_output(tmp_path: Path, bird: Image.Image) -> None:
    photos = tmp_path / "photos"
    (photos / "2024").mkdir(parents=True)
    bird.save(photos / "2024" / "p.png")
    r = upscale(str(photos / "2024"), "-o", str(photos))
    assert r.exit_code == 2 and len(errors(r.output)) == 1
    assert "1 image(s) lie inside the output folder" in r.output and "choose an -o outside" in r.output


def test_palette_and_cmyk_conversions_are_said(tmp_path: Path, bird: Image.Image) -> None:
    src = tmp_path / "in"
    src.mkdir()
    bird.convert("P").save(src / "pal.gif")
    bird.convert("CMYK").save(src / "print.jpg")
    out = tmp_path / "out"
    r = upscale(str(src), "-o", str(out))
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2  # one line per file
    assert any("pal.gif: palette image: upscaled and written in full colour" in w
               and "written as PNG: GIF is not an output format" in w for w in warnings)
    assert any("print.jpg: CMYK image: converted to RGB" in w for w in warnings)
    assert Image.open(out / "pal.png").mode == "RGB" and Image.open(out / "print.jpg").mode == "RGB"


def test_settings_record_is_bounded_and_never_followed(tmp_path: Path, tree: Path) -> None:
    """The record in the output folder: compacted when reruns pile lines up; a link in its place (to an
    input) is neither read nor written through; an oversized one is not read at all."""
    from superres.inference import provenance

    out = tmp_path / "out"
    out.mkdir()
    rec = provenance.OutputRecords(out)
    for i in range(3000):  # 3000 reruns of one output with --overwrite
        rec.add(out / "a.png", {"model": "m", "scale": 4, "run": i})
    assert provenance.OutputRecords(out).recorded(out / "a.png") == {"model": "m", "scale": 4, "run": 2999}
    assert len((out / RECORD_NAME).read_text().splitlines()) == 1  # compacted on the next read
    before = (tree / "a.png").read_bytes()
    (out / RECORD_NAME).unlink()
    (out / RECORD_NAME).symlink_to(tree / "a.png")
    rec = provenance.OutputRecords(out)
    rec.add(out / "a.png", {"model": "m"})
    assert (tree / "a.png").read_bytes() == before
    (out / RECORD_NAME).unlink()
    with open(out / RECORD_NAME, "wb") as f:
        f.truncate(provenance.MAX_RECORD_BYTES + 1)
    assert provenance.OutputRecords(out).recorded(out / "a.png") is None
