"""FID: the statistics (matrix square root against scipy, a set against itself), the Inception loader on a
weights file in the official layout made here (random values, seeded), and the refusal without weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from superres.metrics.fid import (
    FidInception,
    features,
    fid_from_features,
    frechet_distance,
    load_fid_inception,
    prepare,
    sqrtm_psd,
)


def _spd(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n))
    return a @ a.T + 1e-3 * np.eye(n)


def test_sqrtm_matches_scipy_on_known_matrices() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    assert np.allclose(sqrtm_psd(np.diag([4.0, 9.0, 0.25])), np.diag([2.0, 3.0, 0.5]), atol=1e-12)
    for seed in range(3):
        a = _spd(40, seed)
        r = sqrtm_psd(a)
        assert np.allclose(r @ r, a, atol=1e-9)
        assert np.allclose(r, np.real(scipy_linalg.sqrtm(a)), atol=1e-8)


def test_frechet_distance_against_the_scipy_formula() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    s1, s2 = _spd(30, 1), _spd(30, 2)
    mu1, mu2 = rng.normal(size=30), rng.normal(size=30)
    ref = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(np.real(scipy_linalg.sqrtm(s1 @ s2))))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    # two Gaussians with equal covariance: the squared distance of the means
    assert frechet_distance(mu1, s1, mu2, s1) == pytest.approx(float(np.sum((mu1 - mu2) ** 2)), rel=1e-7)


def test_a_set_against_itself_is_zero_and_a_shift_is_not() -> None:
    f = np.random.default_rng(3).normal(size=(200, 64))  # more images than dimensions: full-rank covariance
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-8)
    assert fid_from_features(f, f + 1.0) == pytest.approx(64.0, rel=1e-9)
    with pytest.raises(ValueError, match="at least two"):
        fid_from_features(f[:1], f)


@pytest.fixture(scope="module")
def official_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded weights saved with the official file's key names and shapes (as pytorch-fid's
    torchvision-based graph names them, with the 1008-class fc and without num_batches_tracked)."""
    torch.manual_seed(0)
    net = FidInception()  # PyTorch's default (seeded) init; batch norm as identity
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["fc.weight"] = torch.zeros(1008, 2048)
    sd["fc.bias"] = torch.zeros(1008)
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(sd, path)
    return path


def test_loader_reads_the_official_layout(official_layout: Path, data_dir: Path) -> None:
    net = load_fid_inception(official_layout)
    sd = torch.load(official_layout, weights_only=True)
    assert torch.equal(net.state_dict()["Mixed_7c.branch_pool.bn.running_var"],
                       sd["Mixed_7c.branch_pool.bn.running_var"])
    imgs = [np.asarray(Image.open(data_dir / "Set5" / "HR" / f"{n}.png").convert("RGB")) for n in ("bird", "baby")]
    f = features(net, imgs)
    assert f.shape == (2, 2048) and np.isfinite(f).all() and f.std(axis=0).max() > 0


def test_loader_refuses_another_layout(official_layout: Path, tmp_path: Path) -> None:
    sd = torch.load(official_layout, weights_only=True)
    sd["Mixed_6e.branch1x1.conv.weight"] = sd["Mixed_6e.branch1x1.conv.weight"][:10]
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(ValueError, match="Mixed_6e.branch1x1.conv.weight has shape"):
        load_fid_inception(bad)


def test_prepare_is_clean_resize_to_299() -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 0] = 255
    x = prepare(img)
    assert x.shape == (3, 299, 299) and x.dtype == np.float32
    assert np.allclose(x[0], 1.0, atol=1e-5) and np.allclose(x[1:], -1.0, atol=1e-5)
    assert np.array_equal(prepare(img[:, :, 0]), np.repeat(prepare(img[:, :, 0])[:1], 3, axis=0))


def test_without_weights_one_line_names_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SUPERRES_FID_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="superres fetch fid") as e:
        load_fid_inception()
    assert "\n" not in str(e.value)


def test_eval_metrics_fid_is_set_level(official_layout: Path, data_dir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.cli import app
    from superres.eval.runner import evaluate

    folder = tmp_path / "set"
    folder.mkdir()
    for n in ("bird", "baby"):
        Image.open(data_dir / "Set5" / "HR" / f"{n}.png").convert("RGB").save(folder / f"{n}.png")
    monkeypatch.setenv("SUPERRES_FID_WEIGHTS", str(official_layout))
    res = evaluate(["bicubic-rgb"], [str(folder)], [4], metrics=["psnr", "fid"])
    (row,) = res.summary
    assert row.fid is not None and row.fid > 0 and all(r.fid is None for r in res.images)
    assert res.row("bicubic-rgb", "set", 4) is row
    assert "clean-fid-style resize" in res.meta["implementation"]["fid"]
    monkeypatch.setenv("SUPERRES_FID_WEIGHTS", str(tmp_path / "absent.pth"))
    r = CliRunner().invoke(app, ["eval", "-m", "bicubic-rgb", "-s", "4", "-d", str(folder), "--metrics", "fid"])
    assert r.exit_code == 2 and "superres fetch fid" in r.output and len(r.output.strip().splitlines()) == 1
