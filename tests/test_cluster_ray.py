"""``superres batch --engine ray`` on a local 2-CPU Ray cluster: the same bytes as the local engine, the
same relative paths, and a second run that redoes only what is missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from superres.inference.provenance import RECORD_NAME

MODEL = "realesr-animevideov3"


@pytest.fixture()
def folder(data_dir: Path, tmp_path: Path) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    lr = data_dir / "Set5" / "LR_bicubic" / "X4"
    shutil.copy(lr / "birdx4.png", src / "bird.png")
    shutil.copy(lr / "headx4.png", src / "head.png")
    shutil.copy(lr / "womanx4.png", src / "sub" / "woman.png")
    (src / "notes.txt").write_text("not an image; not listed")
    return src


def tree(root: Path) -> dict[str, bytes]:
    """The outputs (the settings record's lines come in completion order, which differs between engines)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != RECORD_NAME}


def test_ray_batch_matches_local_and_resumes(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray.data", reason="the cluster extra (ray[data]) is not installed")
    from superres.cluster.ray_batch import run_ray_batch
    from superres.inference.batch import run_batch
    from superres.loading import load_model

    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert run_batch(load_model(MODEL, device="cpu"), [folder], local).ok
    report = run_ray_batch(
        folder,
        ray_out,
        MODEL,
        num_cpus=2,
        concurrency=2,
        batch_size=2,
        device="cpu",
        object_store_memory=100 << 20,
    )
    assert report.ok and len(report.done) == 3 and report.skipped == []
    expected = tree(local)
    assert sorted(expected) == ["bird.png", "head.png", "sub/woman.png"]
    assert tree(ray_out) == expected  # byte for byte, same relative paths, no temp files left

    # resume: one output lost (an interrupted run) -> only it is redone, the others are not touched
    (ray_out / "sub" / "woman.png").unlink()
    stamps = {p: (ray_out / p).stat().st_mtime_ns for p in ("bird.png", "head.png")}
    again = run_ray_batch(
        folder,
        ray_out,
        MODEL,
        num_cpus=2,
        concurrency=1,
        batch_size=2,
        device="cpu",
        object_store_memory=100 << 20,
    )
    assert [p.name for p in again.done] == ["woman.png"] and len(again.skipped) == 2
    assert {p: (ray_out / p).stat().st_mtime_ns for p in stamps} == stamps
    assert tree(ray_out) == expected
    # nothing left to do: no cluster is even started
    assert run_ray_batch(folder, ray_out, MODEL, num_cpus=2).done == []


def test_batch_command_local_engine_resumes(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "superres.cli", "batch"]
    r = subprocess.run(
        [*cmd, str(folder), str(out), "-m", MODEL, "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "3 written, 0 failed" in r.stdout and "skipped" not in r.stdout and sorted(tree(out)) == [
        "bird.png",
        "head.png",
        "sub/woman.png",
    ]
    r = subprocess.run(
        [*cmd, str(folder), str(out), "-m", MODEL, "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "0 written, 3 skipped (exist; --overwrite to redo), 0 failed" in r.stdout
    r = subprocess.run(
        [*cmd, str(folder), str(out), "--engine", "spark"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "--engine must be 'local' or 'ray'" in r.stderr


def test_ray_is_imported_only_for_the_ray_engine() -> None:
    code = (
        "import sys, superres.serve.command, superres.cluster.ray_batch, superres.inference.batch; "
        "bad = [m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'fastapi', 'uvicorn'))]; "
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_ray_plan_follows_the_local_safety_rules(tmp_path: Path) -> None:
    """The Ray engine plans with the local engine's rule (no Ray needed to check it): two inputs that would
    share an output are refused before any work, an output that would replace its input is a failure, and
    an output folder inside the input folder is never read back as input."""
    from PIL import Image

    from superres.cluster.ray_batch import plan_outputs
    from superres.errors import SuperresError

    src = tmp_path / "in"
    src.mkdir()
    for name in ("x.png", "x.gif"):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(src / name)
    with pytest.raises(SuperresError, match="2 inputs would be written to"):
        plan_outputs(src, tmp_path / "out", "png", "", False)
    (src / "x.gif").unlink()
    with pytest.raises(SuperresError, match="is the input folder"):
        plan_outputs(src, src, "auto", "", True)
    todo, skipped, refused = plan_outputs(src / "x.png", src, "auto", "", True)  # a file onto itself
    assert todo == [] and skipped == [] and [r[1] for r in refused] == [
        f"output '{src / 'x.png'}' is the input file itself; choose another -o"]
    out = src / "results"
    out.mkdir()
    Image.new("RGB", (32, 32)).save(out / "x.png")  # a finished output inside the input folder
    todo, skipped, refused = plan_outputs(src, out, "auto", "", False)
    assert todo == [] and skipped == [out / "x.png"] and refused == []  # not an input, and already done
