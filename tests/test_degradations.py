"""Degradation steps on known inputs: kernels, noise statistics, JPEG quality, exact bicubic, pipeline shapes
and reproducibility."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from superres.data import degradations as D
from superres.errors import SuperresError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _natural_crop(data_dir: Path, size: int = 96) -> torch.Tensor:
    arr = np.asarray(Image.open(data_dir / "Set5" / "HR" / "butterfly.png").convert("RGB"))[:size, :size]
    return torch.from_numpy(arr.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]


def _smooth_image(n: int = 2, size: int = 48, seed: int = 0) -> torch.Tensor:
    g = _gen(seed)
    coarse = torch.rand((n, 3, size // 8, size // 8), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


# ---- kernels -----------------------------------------------------------------------------------------------


KERNELS = {
    "iso": lambda k: D.isotropic_gaussian_kernel(k, 1.7),
    "aniso": lambda k: D.anisotropic_gaussian_kernel(k, 0.8, 2.5, 0.6),
    "generalized": lambda k: D.generalized_gaussian_kernel(k, 1.2, 2.0, -0.4, 0.6),
    "plateau": lambda k: D.plateau_kernel(k, 1.5, 2.2, 1.1, 1.5),
    "sinc": lambda k: D.sinc_kernel(k, math.pi / 4),
}


@pytest.mark.parametrize("size", [7, 13, 21])
@pytest.mark.parametrize("kind", list(KERNELS))
def test_kernels_sum_to_one_with_shape_and_point_symmetry(kind: str, size: int) -> None:
    k = KERNELS[kind](size)
    assert k.shape == (size, size) and k.dtype == torch.float32
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    # every kernel here is centred: k(-d) == k(d)
    assert torch.allclose(k, torch.flip(k, dims=(0, 1)), atol=1e-7)
    assert float(k.max()) == float(k[size // 2, size // 2])  # peak in the middle


def test_isotropic_kernels_are_symmetric_under_flips_and_transpose() -> None:
    for k in (
        D.isotropic_gaussian_kernel(15, 2.0),
        D.sinc_kernel(15, 1.0),
        D.generalized_gaussian_kernel(15, 1.5, 1.5, 0.0, 2.0),
        D.plateau_kernel(15, 1.5, 1.5, 0.0, 1.2),
    ):
        assert torch.allclose(k, k.T, atol=1e-7)
        assert torch.allclose(k, torch.flip(k, dims=(1,)), atol=1e-7)


def test_gaussian_sigma_and_rotation_are_what_they_say() -> None:
    k = D.isotropic_gaussian_kernel(31, 2.0).double()
    ax = torch.arange(31, dtype=torch.float64) - 15
    assert float((k.sum(0) * ax**2).sum()) == pytest.approx(4.0, rel=1e-4)  # variance along x = sigma^2
    wide_x = D.anisotropic_gaussian_kernel(31, 3.0, 1.0, 0.0)
    var_x = float((wide_x.double().sum(0) * ax**2).sum())
    var_y = float((wide_x.double().sum(1) * ax**2).sum())
    assert var_x == pytest.approx(9.0, rel=1e-3) and var_y == pytest.approx(1.0, rel=1e-3)
    # theta = 0: mirror-symmetric about both axes but not about the diagonal
    assert torch.allclose(wide_x, torch.flip(wide_x, dims=(1,)), atol=1e-7)
    assert not torch.allclose(wide_x, wide_x.T, atol=1e-4)
    # a quarter turn swaps the axes
    assert torch.allclose(D.anisotropic_gaussian_kernel(31, 3.0, 1.0, math.pi / 2), wide_x.T, atol=1e-6)


def test_generalized_with_beta_one_is_gaussian_and_shapes_differ() -> None:
    g = D.anisotropic_gaussian_kernel(21, 1.3, 2.1, 0.3)
    assert torch.allclose(D.generalized_gaussian_kernel(21, 1.3, 2.1, 0.3, 1.0), g, atol=1e-7)
    heavy = D.generalized_gaussian_kernel(21, 1.5, 1.5, 0.0, 0.5)
    flat = D.generalized_gaussian_kernel(21, 1.5, 1.5, 0.0, 3.0)
    gauss = D.isotropic_gaussian_kernel(21, 1.5)
    assert heavy[10, 0] > gauss[10, 0] > flat[10, 0]  # tails: beta < 1 heavier, beta > 1 lighter
    plateau = D.plateau_kernel(21, 2.0, 2.0, 0.0, 2.0)
    assert float(plateau[10, 11] / plateau[10, 10]) > float(gauss[10, 11] / gauss[10, 10])  # flatter top


def test_sinc_kernel_rings() -> None:
    k = D.sinc_kernel(21, math.pi / 3)
    assert float(k.min()) < 0  # negative lobes: the ringing it is there to produce
    assert torch.allclose(k, k.T, atol=1e-7)


def test_bad_kernel_arguments() -> None:
    with pytest.raises(ValueError, match="odd"):
        D.isotropic_gaussian_kernel(8, 1.0)
    with pytest.raises(ValueError, match="positive"):
        D.anisotropic_gaussian_kernel(7, 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="cutoff"):
        D.sinc_kernel(7, 4.0)


def test_kernel_sampler_draws_valid_reproducible_kernels() -> None:
    sampler = D.KernelSampler()
    g1, g2 = _gen(5), _gen(5)
    sizes = set()
    for _ in range(60):
        k = sampler(g1)
        assert torch.equal(k, sampler(g2))
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and 7 <= k.shape[0] <= 21
        assert float(k.sum()) == pytest.approx(1.0, abs=1e-5)
        sizes.add(k.shape[0])
    assert len(sizes) > 3
    only_sinc = D.KernelSampler(sinc_prob=1.0)
    assert float(only_sinc(_gen(1)).min()) < 0


# ---- filtering ---------------------------------------------------------------------------------------------


def test_filter2d_is_a_true_convolution_with_per_image_kernels() -> None:
    x = torch.rand(2, 3, 16, 16, generator=_gen())
    delta = D._delta_kernel(5)
    shift = torch.zeros(5, 5)
    shift[2, 3] = 1.0  # weight right of centre: a convolution moves the image right by one pixel
    out = D.filter2d(x, torch.stack([delta, shift]))
    assert torch.allclose(out[0], x[0])
    assert torch.allclose(out[1, :, :, 1:], x[1, :, :, :-1])
    flat = torch.full((1, 3, 20, 20), 0.3)
    assert torch.allclose(D.filter2d(flat, D.isotropic_gaussian_kernel(21, 3.0)), flat, atol=1e-6)


# ---- noise -------------------------------------------------------------------------------------------------


def test_gaussian_noise_statistics_on_a_flat_image() -> None:
    x = torch.full((2, 3, 256, 256), 0.5)
    out = D.add_gaussian_noise(x, [10.0, 20.0], _gen(0))
    for i, sigma in enumerate((10.0, 20.0)):
        noise = out[i] - 0.5
        assert float(noise.mean()) == pytest.approx(0.0, abs=1e-3)
        assert float(noise.std()) == pytest.approx(sigma / 255.0, rel=0.02)
    # colour noise is independent across channels, gray noise identical in all channels
    assert float(torch.corrcoef((out[0] - 0.5).reshape(3, -1))[0, 1]) == pytest.approx(0.0, abs=0.02)
    gray = D.add_gaussian_noise(x, 10.0, _gen(0), gray=True)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 0], gray[:, 2])
    assert not torch.equal(out[:, 0], out[:, 1])


def test_gaussian_noise_step_is_reproducible_and_in_range() -> None:
    step = D.GaussianNoise(sigma_range=(5, 25), gray_prob=0.5)
    x = _smooth_image()
    a, b = step(x, _gen(3)), step(x, _gen(3))
    assert torch.equal(a, b) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, step(x, _gen(4)))


def test_poisson_noise_variance_scales_with_intensity() -> None:
    levels = (0.1, 0.4)
    x = torch.stack([torch.full((3, 256, 256), v) for v in levels])
    out = D.add_poisson_noise(x, 1.0, _gen(0))
    var = [float((out[i] - v).var()) for i, v in enumerate(levels)]
    for v, got in zip(levels, var, strict=True):
        assert got == pytest.approx(v / 255.0, rel=0.05)  # Poisson: variance = mean (in photon units)
        assert float((out[levels.index(v)] - v).mean()) == pytest.approx(0.0, abs=5e-4)
    assert var[1] / var[0] == pytest.approx(4.0, rel=0.1)
    doubled = D.add_poisson_noise(x, 2.0, _gen(0))
    assert float((doubled[0] - 0.1).var()) == pytest.approx(4 * var[0], rel=0.05)  # scale multiplies the std
    gray = D.add_poisson_noise(x, 1.0, _gen(0), gray=True)
    assert torch.equal(gray[:, 0], gray[:, 2])


# ---- JPEG --------------------------------------------------------------------------------------------------


def test_jpeg_quality_is_actually_applied(data_dir: Path) -> None:
    x = _natural_crop(data_dir)
    errors = []
    sizes = []
    arr = np.round(x[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    for q in (10, 40, 90):
        out = D.jpeg_compress(x, q)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=q)
        sizes.append(buf.tell())
        ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        # exactly what Pillow produces at that quality
        assert np.array_equal(np.round(out[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8), ref)
        errors.append(float((out - x).abs().mean()))
    assert errors[0] > errors[1] > errors[2] > 0
    assert sizes[0] < sizes[1] < sizes[2]


def test_jpeg_per_image_quality_and_gray() -> None:
    x = _smooth_image(2, 64) + 0.05 * torch.rand(2, 3, 64, 64, generator=_gen(1))
    x = x.clamp(0, 1)
    both = D.jpeg_compress(x, [10, 95])
    assert torch.equal(both[0:1], D.jpeg_compress(x[0:1], 10))
    assert torch.equal(both[1:2], D.jpeg_compress(x[1:2], 95))
    gray = D.jpeg_compress(x[:, :1], 20)
    assert gray.shape == (2, 1, 64, 64)
    step = D.JPEG(quality_range=(30, 95))
    assert torch.equal(step(x, _gen(2)), step(x, _gen(2)))


# ---- resizing ----------------------------------------------------------------------------------------------


def test_bicubic_pipeline_reproduces_the_benchmark_lr_file(data_dir: Path) -> None:
    hr = np.asarray(Image.open(data_dir / "Set5" / "HR" / "bird.png").convert("RGB"))
    lr_file = np.asarray(Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB"))
    x = torch.from_numpy(hr.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
    lr = D.build_degradation("bicubic", 4)(x, _gen())
    got = np.round(lr[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.array_equal(got, lr_file)


def test_random_resize_modes_and_factors() -> None:
    x = _smooth_image(1, 40)
    step = D.RandomResize(scale_range=(0.5, 1.5), probs=(0, 1, 0))
    sizes = {tuple(step(x, _gen(s)).shape[-2:]) for s in range(8)}
    assert len(sizes) > 1 and all(20 <= h <= 40 for h, _ in sizes)
    fixed = D.RandomResize(size=(10, 12))
    assert fixed(x, _gen()).shape[-2:] == (10, 12)


def test_usm_sharpen_keeps_flat_areas_and_sharpens_edges() -> None:
    flat = torch.full((1, 3, 64, 64), 0.4)
    assert torch.allclose(D.usm_sharpen(flat), flat, atol=1e-6)
    edge = torch.zeros(1, 3, 64, 64)
    edge[..., 32:] = 0.6
    edge = D.filter2d(edge, D.isotropic_gaussian_kernel(7, 1.5))
    sharp = D.usm_sharpen(edge)

    def grad(t: torch.Tensor) -> float:
        return float((t[..., 1:] - t[..., :-1]).abs().max())

    assert grad(sharp) > grad(edge)


# ---- pipelines ---------------------------------------------------------------------------------------------

PIPELINES = ("bicubic", "classical", "realesrgan", "bsrgan")


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_shapes_range_and_8bit_levels(name: str, scale: int) -> None:
    x = _smooth_image(2, 48, seed=scale)
    lr = D.build_degradation(name, scale)(x, _gen(scale))
    assert lr.shape == (2, 3, 48 // scale, 48 // scale) and lr.dtype == torch.float32
    assert float(lr.min()) >= 0.0 and float(lr.max()) <= 1.0
    assert torch.equal(torch.round(lr * 255) / 255, lr)  # all four end on 8-bit levels by default


@pytest.mark.parametrize("name", PIPELINES)
def test_pipelines_are_deterministic_per_generator_not_global_rng(name: str) -> None:
    deg = D.build_degradation(name, 4)
    x = _smooth_image(3, 64)
    torch.manual_seed(1)
    a = deg(x, _gen(7))
    torch.manual_seed(2)
    b = deg(x, _gen(7))
    assert torch.equal(a, b)
    if name != "bicubic":
        outs = [deg(x, _gen(s)) for s in range(3)]
        assert not all(torch.equal(outs[0], o) for o in outs[1:])


def test_realesrgan_images_in_a_batch_get_their_own_degradations() -> None:
    x = _smooth_image(1, 64).repeat(4, 1, 1, 1)
    lr = D.build_degradation("realesrgan", 4)(x, _gen(0))
    assert not torch.equal(lr[0], lr[1])


def test_gray_batches_work_in_every_pipeline() -> None:
    x = _smooth_image(2, 48)[:, :1]
    for name in PIPELINES:
        assert D.build_degradation(name, 2)(x, _gen()).shape == (2, 1, 24, 24)


def test_classical_with_fixed_parameters_is_blur_then_decimation() -> None:
    x = _smooth_image(2, 48)
    deg = D.build_degradation("classical", 3, blur_sigma=1.6, kernel_size=7, noise_sigma=0, round=False)
    expected = D.filter2d(x, D.isotropic_gaussian_kernel(7, 1.6))[..., ::3, ::3]
    assert torch.allclose(deg(x, _gen()), expected, atol=1e-6)


def test_parameters_are_overridable_and_checked() -> None:
    deg = D.build_degradation("realesrgan", 4, noise_range=[1, 2], final_sinc_prob=0.0)
    assert deg.params["noise_range"] == (1, 2) and deg.params["final_sinc_prob"] == 0.0
    assert D.degradation_params("realesrgan")["resize_prob"] == (0.2, 0.7, 0.1)
    with pytest.raises(SuperresError, match="unknown parameter.*noise_rnge"):
        D.build_degradation("realesrgan", 4, noise_rnge=(1, 2))
    with pytest.raises(SuperresError, match="unknown degradation 'blurry'"):
        D.build_degradation("blurry", 4)
    with pytest.raises(SuperresError, match="downsample"):
        D.build_degradation("classical", 2, downsample="nearest")
    with pytest.raises(ValueError, match="not a multiple of the scale 3"):
        D.build_degradation("bicubic", 3)(torch.rand(1, 3, 16, 16), _gen())


def test_compose_runs_custom_steps() -> None:
    deg = D.Compose(
        [
            D.Blur(D.KernelSampler(size_range=(7, 7))),
            D.MatlabBicubic(2, uint8=False),
            D.GaussianNoise((5, 5), gray_prob=0.0),
            D.Quantize(),
        ],
        scale=2,
    )
    out = deg(_smooth_image(2, 32), _gen())
    assert out.shape == (2, 3, 16, 16)
    with pytest.raises(RuntimeError, match="expected"):
        D.Compose([D.Quantize()], scale=2)(_smooth_image(1, 32), _gen())
