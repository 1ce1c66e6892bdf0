"""MATLAB-bicubic resize: bit-exact benchmark LR files, numpy/torch agreement, gradients, upscaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from superres.resize import bicubic_degrade, imresize, modcrop, resize_weights

SETS = {
    "Set5": ["baby", "bird", "butterfly", "head", "woman"],
    "Set14": [
        "baboon", "barbara", "bridge", "coastguard", "comic", "face", "flowers",
        "foreman", "lenna", "man", "monarch", "pepper", "ppt3", "zebra",
    ],
}


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img if img.ndim == 2 else img.transpose(2, 0, 1), copy=True))


def _from_tensor(t: torch.Tensor) -> np.ndarray:
    a = t.numpy()
    return a if a.ndim == 2 else a.transpose(1, 2, 0)


def test_all_benchmark_lr_files_bit_exact(data_dir: Path) -> None:
    """All 57 Set5/Set14 LR files = imresize(modcrop(HR, s), 1/s), numpy and torch (uint8) paths."""
    checked, wrong = 0, []
    for set_name, names in SETS.items():
        for name in names:
            hr = _load(data_dir / set_name / "HR" / f"{name}.png")
            for s in (2, 3, 4):
                lr = _load(data_dir / set_name / "LR_bicubic" / f"X{s}" / f"{name}x{s}.png")
                ours = bicubic_degrade(hr, s)
                via_torch = _from_tensor(imresize(_to_tensor(modcrop(hr, s)), 1 / s))
                checked += 1
                for label, out in (("numpy", ours), ("torch", via_torch)):
                    if out.shape != lr.shape or out.dtype != np.uint8 or not np.array_equal(out, lr):
                        wrong.append(f"{set_name}/{name} x{s} ({label})")
    assert checked == 57
    assert wrong == []


def test_bridge_stays_one_channel(data_dir: Path) -> None:
    hr = _load(data_dir / "Set14" / "HR" / "bridge.png")
    assert hr.ndim == 2
    assert bicubic_degrade(hr, 3).shape == (hr.shape[0] // 3, hr.shape[1] // 3)


def test_output_size_is_ceil_like_matlab() -> None:
    img = np.zeros((255, 101), np.float64)
    assert imresize(img, 1 / 3).shape == (85, 34)  # 255/3 is exactly 85 despite 1/3 not being exact
    assert imresize(img, 0.5).shape == (128, 51)
    assert imresize(np.zeros((5, 7)), 2.5).shape == (13, 18)
    assert imresize(img, size=(40, 200)).shape == (40, 200)


def test_scale_xor_size() -> None:
    img = np.zeros((8, 8))
    with pytest.raises(ValueError, match="exactly one"):
        imresize(img)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(img, 2.0, size=(16, 16))


@pytest.mark.parametrize(
    "scale,size", [(0.5, None), (1 / 3, None), (2.0, None), (3.0, None), (None, (23, 61))]
)
def test_torch_matches_numpy_float(scale: float | None, size: tuple[int, int] | None) -> None:
    rng = np.random.default_rng(0)
    img = rng.random((37, 45, 3))
    ref = imresize(img, scale, size)
    out = imresize(torch.from_numpy(img.transpose(2, 0, 1).copy()), scale, size)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy().transpose(1, 2, 0), ref, rtol=0, atol=1e-12)


def test_float_input_is_not_rounded_and_keeps_dtype() -> None:
    rng = np.random.default_rng(1)
    img = (rng.random((16, 16)) * 255).astype(np.float32)
    out = imresize(img, 0.5)
    assert out.dtype == np.float32
    assert not np.allclose(out, np.round(out))


def test_uint8_without_per_pass_rounding_returns_float() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    out = imresize(img, 0.5, round_uint8_per_pass=False)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, imresize(img.astype(np.float64), 0.5))


def test_gradient_flows_through_torch_path() -> None:
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.random((1, 2, 6, 7)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda t: imresize(t, size=(9, 11)), (x,))
    y = imresize(x, 2.0)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_upscale_is_interpolating_at_integer_factor() -> None:
    """Keys' kernel interpolates: for odd integer factors every s-th output sample is an input sample."""
    rng = np.random.default_rng(4)
    img = rng.random((9, 10))
    up = imresize(img, 3.0)
    assert up.shape == (27, 30)
    np.testing.assert_allclose(up[1::3, 1::3], img, atol=1e-12)


def test_upscale_reproduces_linear_ramp_inside() -> None:
    ramp = np.add.outer(np.arange(12.0), 2 * np.arange(10.0))
    up = imresize(ramp, 2.0)
    # sample centres: output index i (0-based) sits at input position (i + 0.5) / 2 - 0.5
    pos_r = (np.arange(24) + 0.5) / 2 - 0.5
    pos_c = (np.arange(20) + 0.5) / 2 - 0.5
    expected = np.add.outer(pos_r, 2 * pos_c)
    np.testing.assert_allclose(up[4:-4, 4:-4], expected[4:-4, 4:-4], atol=1e-12)


def test_constant_image_stays_constant_up_and_down() -> None:
    img = np.full((17, 23, 3), 77, np.uint8)
    for scale in (0.25, 1 / 3, 0.5, 2.0, 3.0, 4.0):
        out = imresize(img, scale)
        assert out.dtype == np.uint8 and (out == 77).all()


def test_weights_sum_to_one_and_borders() -> None:
    w, ind = resize_weights(10, 5, 0.5)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert ind.min() == 0 and ind.max() == 9
    w_s, ind_s = resize_weights(10, 5, 0.5, border="symmetric")
    np.testing.assert_array_equal(w, w_s)
    np.testing.assert_array_equal(ind[1:-1], ind_s[1:-1])  # only the border rows reach outside
    assert not np.array_equal(ind, ind_s)
    with pytest.raises(ValueError, match="border"):
        resize_weights(10, 5, 0.5, border="wrap")  # type: ignore[arg-type]


def test_modcrop_numpy_and_torch() -> None:
    a = np.zeros((13, 10, 3), np.uint8)
    assert modcrop(a, 4).shape == (12, 8, 3)
    assert modcrop(a[:, :, 0], 3).shape == (12, 9)
    t = torch.zeros(2, 3, 13, 10)
    assert modcrop(t, 4).shape == (2, 3, 12, 8)
    with pytest.raises(ValueError):
        modcrop(a, 0)


def test_bicubic_degrade_requires_uint8() -> None:
    with pytest.raises(TypeError, match="uint8"):
        bicubic_degrade(np.zeros((8, 8), np.float32), 2)
