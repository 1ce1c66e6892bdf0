"""Test-time ensembles: x8 self-ensemble, MC-dropout, model ensembles, and their uncertainty maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from superres.archs import build
from superres.errors import SuperresError
from superres.inference.ensemble import Ensemble, dihedral, dropout_layers, undo_dihedral
from superres.inference.upscaler import UpscaleOptions, Upscaler
from superres.loading import load_model
from superres.io.image import from_array, read_image
from superres.metrics.psnr_ssim import psnr

WHOLE = UpscaleOptions(tile=0)


def _hr(data_dir: Path, name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(data_dir / "Set5" / "HR" / f"{name}.png").convert("RGB"))


def test_each_dihedral_transform_is_undone_exactly() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    seen = set()
    for k in range(8):
        t = dihedral(x, k)
        assert torch.equal(undo_dihedral(t, k), x)
        seen.add(tuple(t.flatten().tolist()))
    assert len(seen) == 8  # eight distinct views, not repeats


def test_self_ensemble_gains_psnr_and_is_the_same_whole_or_tiled(data_dir: Path) -> None:
    """EDSR '+' rows: the x8 mean beats one pass, its spread ranks the error, and tiles do not change it."""
    up = load_model("edsr-baseline-x4", device="cpu", options=WHOLE)
    lr = read_image(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png")
    hr = _hr(data_dir, "bird")
    plain = up.upscale_image(lr).color
    ens = Ensemble(up, self_ensemble=True)
    full = ens.upscale_image(lr)
    assert full.samples == 8
    assert psnr(full.image.color, hr, crop=4) > psnr(plain, hr, crop=4) + 0.05
    assert full.uncertainty.shape == hr.shape[:2] and full.uncertainty.min() >= 0
    # pixels where the 8 views disagree are the ones with large error (per-pixel rank correlation)
    from scipy.stats import spearmanr

    err = np.abs(full.image.color.astype(float) - hr).mean(-1)[4:-4, 4:-4]
    assert spearmanr(err.ravel(), full.uncertainty[4:-4, 4:-4].ravel())[0] > 0.4
    corner = from_array(np.asarray(lr.color)[:32, :32])
    whole = ens.upscale_image(corner)
    tiled = ens.upscale_image(corner, options=UpscaleOptions(tile=16, overlap=4))
    assert np.abs(tiled.image.color.astype(int) - whole.image.color).max() <= 1
    assert np.abs(tiled.uncertainty - whole.uncertainty).max() < 1e-4
    # the view used by batch/video/server gives the same pixels as the uncertainty path
    view = ens.as_upscaler().upscale_image(corner).color
    assert np.abs(view.astype(int) - whole.image.color).max() <= 1


def test_mc_dropout_refused_without_dropout_layers() -> None:
    up = Upscaler(build("espcn", scale=2, channels=3), device="cpu", options=WHOLE)
    with pytest.raises(SuperresError, match="no dropout or stochastic-depth layers"):
        Ensemble(up, mc_dropout=4)


def _tiny_swinir() -> Upscaler:
    torch.manual_seed(0)
    net = build("swinir", scale=2, embed_dim=12, window_size=4, depths=[2, 2], num_heads=[2, 3], num_feat=8,
                img_size=16, drop_path_rate=0.5)
    return Upscaler(net, device="cpu", options=WHOLE)


def test_mc_dropout_samples_differ_and_repeat_for_the_same_input() -> None:
    up = _tiny_swinir()
    assert dropout_layers(up._net32)  # stochastic depth counts as dropout
    img = from_array(np.random.default_rng(0).random((16, 16, 3), dtype=np.float32))
    ens = Ensemble(up, mc_dropout=6)
    a, b = ens.upscale_image(img), ens.upscale_image(img)
    assert a.samples == 6
    assert a.uncertainty.mean() > 1e-4  # the samples disagree
    assert np.array_equal(a.image.color, b.image.color)  # seeded: reproducible
    assert not up._net32.training and all(not m.training for m in dropout_layers(up._net32))  # shared net untouched


def test_model_ensemble_is_the_mean_of_members_and_refuses_other_scales() -> None:
    torch.manual_seed(0)
    a = Upscaler(build("espcn", scale=2, channels=3), name="a", device="cpu", options=WHOLE)
    b = Upscaler(build("espcn", scale=2, channels=3), name="b", device="cpu", options=WHOLE)
    x = torch.rand(1, 3, 12, 12)
    ens = Ensemble(a, members=[b])
    assert torch.allclose(ens.forward(x), (a.forward(x) + b.forward(x)) / 2, atol=1e-6)
    assert ens.label == "models:a+b"
    other = Upscaler(build("espcn", scale=3, channels=3), name="c", device="cpu", options=WHOLE)
    with pytest.raises(SuperresError, match="cannot ensemble c"):
        Ensemble(a, members=[other])


def test_grey_and_alpha_images_keep_their_form() -> None:
    torch.manual_seed(0)
    up = Upscaler(build("espcn", scale=2, channels=3), device="cpu", options=WHOLE)
    rng = np.random.default_rng(1)
    grey = from_array((rng.random((10, 12)) * 255).astype(np.uint8))
    r = Ensemble(up, self_ensemble=True).upscale_image(grey)
    assert r.image.color.shape == (20, 24, 1) and r.uncertainty.shape == (20, 24)
    rgba = from_array((rng.random((10, 12, 4)) * 255).astype(np.uint8))
    r = Ensemble(up, self_ensemble=True).upscale_image(rgba, outscale=3)
    assert r.image.color.shape == (30, 36, 3) and r.image.alpha is not None and r.image.alpha.shape == (30, 36)
    assert r.uncertainty.shape == (30, 36)
