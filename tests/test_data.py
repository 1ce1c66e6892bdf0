"""Training datasets (aligned crops, augmentation, seeds, workers, errors), validation pairs, and the
``superres degrade`` command."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from superres.data.datasets import HRFolderDataset, PairedFolderDataset, ValidationSet, seed_worker
from superres.errors import DatasetError
from superres.resize import bicubic_degrade, imresize


def _u8(t: torch.Tensor) -> np.ndarray:
    return np.round(t.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


def _write(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture(scope="module")
def set5(data_dir: Path) -> tuple[Path, Path]:
    return data_dir / "Set5" / "HR", data_dir / "Set5" / "LR_bicubic" / "X4"


# ---- paired folders ----------------------------------------------------------------------------------------


def test_paired_crops_are_aligned(set5: tuple[Path, Path]) -> None:
    ds = PairedFolderDataset(*set5, scale=4, patch_size=24, augment=False, seed=0)
    assert len(ds) == 5 and ds.names[0] == "baby"
    for i in range(len(ds)):
        item = ds[i]
        hr, lr = _u8(item["hr"]), _u8(item["lr"])
        assert item["hr"].shape == (3, 96, 96) and item["lr"].shape == (3, 24, 24)
        assert (
            item["hr"].dtype == torch.float32 and 0 <= float(item["hr"].min()) <= float(item["hr"].max()) <= 1
        )
        # the shipped LR patch is the bicubic of the HR patch (away from the patch border, where a crop's
        # bicubic sees replicated instead of real neighbours); a one-pixel misalignment would fail this
        own = imresize(hr, 0.25)
        assert np.array_equal(own[2:-2, 2:-2], lr[2:-2, 2:-2])


def test_paired_augmentation_keeps_alignment_and_varies(set5: tuple[Path, Path]) -> None:
    ds = PairedFolderDataset(*set5, scale=4, patch_size=16, augment=True, seed=1)
    seen = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        item = ds[2]
        hr, lr = _u8(item["hr"]), _u8(item["lr"])
        diff = np.abs(imresize(hr, 0.25)[2:-2, 2:-2].astype(int) - lr[2:-2, 2:-2].astype(int))
        assert diff.max() <= 1  # flips/transposes commute with the symmetric bicubic up to rounding ties
        seen.add(lr.tobytes())
    assert len(seen) == 4


def test_seeded_items_are_reproducible(set5: tuple[Path, Path]) -> None:
    a = PairedFolderDataset(*set5, scale=4, patch_size=16, seed=3)
    b = PairedFolderDataset(*set5, scale=4, patch_size=16, seed=3)
    assert torch.equal(a[1]["hr"], b[1]["hr"])
    a.set_epoch(1)
    assert not torch.equal(a[1]["hr"], b[1]["hr"])


def test_dataloader_workers_give_the_same_batches_as_the_main_process(set5: tuple[Path, Path]) -> None:
    ds = PairedFolderDataset(*set5, scale=4, patch_size=8, seed=0)
    main = [b["lr"] for b in DataLoader(ds, batch_size=2, num_workers=0)]
    workers = [b["lr"] for b in DataLoader(ds, batch_size=2, num_workers=2, worker_init_fn=seed_worker)]
    assert len(main) == 3 and all(torch.equal(x, y) for x, y in zip(main, workers, strict=True))


def test_paired_errors(tmp_path: Path, set5: tuple[Path, Path]) -> None:
    hr_dir, lr_dir = set5
    with pytest.raises(DatasetError, match="LR folder not found: '.*nowhere'"):
        PairedFolderDataset(hr_dir, tmp_path / "nowhere", 4, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        PairedFolderDataset(tmp_path / "empty", lr_dir, 4, 16)
    lr2 = tmp_path / "lr"
    shutil.copytree(lr_dir, lr2)
    (lr2 / "babyx4.png").rename(lr2 / "infantx4.png")
    with pytest.raises(DatasetError, match=r"do not match by name: 1 HR image.*baby\.png.*infantx4\.png"):
        PairedFolderDataset(hr_dir, lr2, 4, 16)
    (tmp_path / "h").mkdir()
    shutil.copy(hr_dir / "baby.png", tmp_path / "h")
    (tmp_path / "l").mkdir()
    shutil.copy(lr_dir / "babyx4.png", tmp_path / "l" / "baby.png")
    with pytest.raises(
        DatasetError,
        match=r"LR '.*baby\.png' is 128x128 but HR 'baby\.png' is 512x512: at x2 the LR "
        r"must be 256x256 \(is this the right scale\?\)",
    ):
        PairedFolderDataset(tmp_path / "h", tmp_path / "l", 2, 16)  # x4 files given as x2
    with pytest.raises(DatasetError, match=r"'.*woman\.png' is 228x344, smaller than the HR crop of 240x240"):
        PairedFolderDataset(hr_dir, lr_dir, 4, 60)


# ---- HR folders --------------------------------------------------------------------------------------------


def test_hr_folder_bicubic_lr_equals_the_whole_image_lr(data_dir: Path) -> None:
    hr_dir = data_dir / "Set5" / "HR"
    ds = HRFolderDataset([hr_dir], scale=3, patch_size=20, augment=False, seed=0)
    for i in (1, 3):  # bird, head
        item = ds[i]
        hr_patch, lr_patch = _u8(item["hr"]), _u8(item["lr"])
        assert hr_patch.shape == (60, 60, 3) and lr_patch.shape == (20, 20, 3)
        full = np.asarray(Image.open(hr_dir / f"{ds.names[i]}.png").convert("RGB"))
        lr_full = bicubic_degrade(full, 3)
        # find where the patch came from (crops start on the LR grid) and compare with that LR window
        hits = [
            (y, x)
            for y in range(0, full.shape[0] - 59, 3)
            for x in range(0, full.shape[1] - 59, 3)
            if np.array_equal(full[y : y + 60, x : x + 60], hr_patch)
        ]
        assert len(hits) == 1
        y, x = hits[0][0] // 3, hits[0][1] // 3
        assert np.array_equal(lr_full[y : y + 20, x : x + 20], lr_patch)


def test_hr_folder_without_lr_mode_yields_only_hr(data_dir: Path, tmp_path: Path) -> None:
    gray = _write(tmp_path / "g" / "gray.png", np.tile(np.arange(64, dtype=np.uint8)[None], (64, 1)))
    ds = HRFolderDataset(
        [data_dir / "Set5" / "HR", gray.parent], scale=4, patch_size=12, lr_mode=None, seed=0
    )
    assert len(ds) == 6
    item = ds[5]
    assert set(item) == {"hr", "name"} and item["hr"].shape == (3, 48, 48)  # gray repeated to RGB
    assert torch.equal(item["hr"][0], item["hr"][1])
    with pytest.raises(DatasetError, match="lr_mode"):
        HRFolderDataset([gray.parent], 4, 12, lr_mode="nearest")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="HR folder not found"):
        HRFolderDataset([tmp_path / "missing"], 4, 12)
    with pytest.raises(DatasetError, match="gray.png' is 64x64, smaller than the HR crop of 80x80"):
        HRFolderDataset([gray.parent], 4, 20)


# ---- validation --------------------------------------------------------------------------------------------


def test_validation_set_by_name_matches_the_eval_protocol(data_dir: Path) -> None:
    val = ValidationSet("Set5", 4, root=data_dir)
    assert len(val) == 5
    for lr, hr, name in val:
        assert lr.dtype == np.uint8 and hr.dtype == np.uint8 and lr.shape[2] == 3
        assert hr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
        assert np.array_equal(lr, bicubic_degrade(hr, 4)), name


def test_validation_set_from_a_folder_with_gray_and_odd_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _write(tmp_path / "val" / "a.png", rng.integers(0, 256, (37, 50, 3), dtype=np.uint8))
    _write(tmp_path / "val" / "b.png", rng.integers(0, 256, (30, 30), dtype=np.uint8))
    val = ValidationSet(tmp_path / "val", 3)
    (lr_a, hr_a, name_a), (_, hr_b, _) = list(val)
    assert name_a == "a" and hr_a.shape == (36, 48, 3) and lr_a.shape == (12, 16, 3)
    assert hr_b.shape == (30, 30)  # grey stays grey: its own Y, as superres eval scores it
    with pytest.raises(DatasetError, match="not found"):
        ValidationSet(tmp_path / "nope", 3)


# ---- superres degrade --------------------------------------------------------------------------------------


def test_degrade_command_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    from superres.cli import app

    src = tmp_path / "hr"
    src.mkdir()
    for name in ("bird", "head"):
        shutil.copy(data_dir / "Set5" / "HR" / f"{name}.png", src)
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["degrade", str(src), str(tmp_path / "a"), "--pipeline", "realesrgan", "--scale", "4", "--seed", "0"],
    )
    assert res.exit_code == 0, res.output
    assert "2 written ->" in res.output and "skipped" not in res.output
    out = Image.open(tmp_path / "a" / "bird.png")
    assert out.size == (72, 72)
    res = runner.invoke(
        app, ["degrade", str(src), str(tmp_path / "b"), "-p", "realesrgan", "-s", "4", "--seed", "0"]
    )
    assert res.exit_code == 0
    for name in ("bird", "head"):  # same seed, same pixels
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "a" / f"{name}.png")),
            np.asarray(Image.open(tmp_path / "b" / f"{name}.png")),
        )
    assert not list((tmp_path / "a").glob(".*"))  # no temporary files left behind
    # the bicubic pipeline writes exactly the benchmark LR file
    res = runner.invoke(
        app, ["degrade", str(src / "bird.png"), str(tmp_path / "c"), "-p", "bicubic", "-s", "4"]
    )
    assert res.exit_code == 0, res.output
    ref = np.asarray(Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c" / "bird.png").convert("RGB")), ref)
    # parameters from the command line; mistakes are one-line errors with exit status 2
    res = runner.invoke(
        app,
        [
            "degrade",
            str(src),
            str(tmp_path / "d"),
            "-p",
            "classical",
            "-s",
            "2",
            "--param",
            "noise_sigma=[0, 0]",
            "--param",
            "blur_sigma=1.0",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["degrade", str(src), str(tmp_path / "e"), "-p", "classical", "--param", "sigma=3"]
    )
    assert res.exit_code == 2 and "unknown parameter(s) sigma" in res.output
    res = runner.invoke(app, ["degrade", str(tmp_path / "missing"), str(tmp_path / "e")])
    assert res.exit_code == 2 and "input not found" in res.output
    assert not (tmp_path / "e").exists()
