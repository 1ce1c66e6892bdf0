"""ZSSR: the internal pairs are degraded with the given kernel, an interrupted run resumes to the same
result, a too-small image is refused with one line, the kernel estimate and its files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from superres.cli import app
from superres.data.degradations import anisotropic_gaussian_kernel
from superres.errors import SuperresError
from superres.resize import imresize
from superres.zssr import InternalPairs, ZSSRConfig, blur_downscale, estimate_kernel, save_kernel, zssr
from superres.zssr.pairs import augment, unaugment, upsample

runner = CliRunner()


@pytest.fixture(scope="module")
def bird(data_dir: Path) -> torch.Tensor:
    """Set5 bird at x2 LR (144 x 144), 1 x 3 x H x W in [0, 1]."""
    a = np.asarray(Image.open(data_dir / "Set5" / "LR_bicubic" / "X2" / "birdx2.png").convert("RGB"))
    return torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()


def test_blur_downscale_samples_on_the_bicubic_grid() -> None:
    """LR pixel i sits at HR position s*i + (s-1)/2, as MATLAB imresize puts it (a ramp shows where)."""
    k = anisotropic_gaussian_kernel(13, 1.5, 0.7, 0.6)
    for s in (2, 3, 4):
        n = 20 * s
        ramp = torch.arange(n, dtype=torch.float64).view(1, 1, 1, n).expand(1, 1, n, n).contiguous()
        ours = blur_downscale(ramp, k.double(), s)[0, 0, 8, 3:15]
        bic = imresize(ramp, 1.0 / s)[0, 0, 8, 3:15]
        assert torch.allclose(ours, bic, atol=1e-5), (s, ours, bic)


def test_pairs_shapes_and_kernel_applied(bird: torch.Tensor) -> None:
    k = anisotropic_gaussian_kernel(13, 2.0, 0.8, 0.3)
    for s in (2, 3):
        pairs = InternalPairs(bird, s, k, crop=40)
        assert pairs.fathers[0] is bird and len(pairs.fathers) > 1
        assert all(f.shape[-1] < bird.shape[-1] for f in pairs.fathers[1:])
        pair = pairs.sample(torch.Generator().manual_seed(1), batch=3)
        side = (40 // s) * s
        assert pair.target.shape == (3, 3, side, side) and pair.input.shape == pair.target.shape
        # the input is exactly the father blurred with the kernel, subsampled, and bicubic-upscaled back
        assert torch.allclose(pair.input, upsample(blur_downscale(pair.target, k, s), s), atol=1e-6)
        # ... and a different kernel (bicubic) would have given a visibly different (sharper) input
        bicubic = InternalPairs(bird, s, None, crop=40).sample(torch.Generator().manual_seed(1), batch=3)
        assert torch.equal(bicubic.target, pair.target)
        assert (bicubic.input - pair.input).abs().mean() > 0.005


def test_augment_roundtrip() -> None:
    x = torch.arange(24.0).view(1, 1, 4, 6)
    outs = {tuple(augment(x, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8  # 8 distinct symmetries
    assert all(torch.equal(unaugment(augment(x, k), k), x) for k in range(8))


def _tiny(**kw: object) -> ZSSRConfig:
    base: dict[str, object] = {"scale": 2, "width": 8, "depth": 3, "crop": 24, "max_steps": 30, "min_steps": 10,
                               "eval_every": 5, "check_every": 10, "slope_window": 20, "checkpoint_every": 10,
                               "back_projection": 1, "seed": 3}
    base.update(kw)
    return ZSSRConfig(**base)  # type: ignore[arg-type]


def test_interrupted_run_resumes_to_the_same_result(bird: torch.Tensor, tmp_path: Path) -> None:
    img = bird[..., :48, :56]
    k = anisotropic_gaussian_kernel(9, 1.2, 0.7, 0.4)
    cfg = _tiny()
    straight = zssr(img, cfg, k)
    assert straight.steps == [30] and straight.image.shape == (1, 3, 96, 112)

    class Stop(Exception):
        pass

    seen: list[int] = []

    def stop_at_17(p: object) -> None:
        seen.append(p.step)  # type: ignore[attr-defined]
        if p.step == 17:  # type: ignore[attr-defined]
            raise Stop

    run_dir = tmp_path / "run"
    with pytest.raises(Stop):
        zssr(img, cfg, k, checkpoint_dir=run_dir, progress=stop_at_17)
    assert seen[-1] == 17
    resumed_steps: list[int] = []
    again = zssr(img, cfg, k, checkpoint_dir=run_dir, progress=lambda p: resumed_steps.append(p.step))
    assert again.resumed_from == 17 and resumed_steps[0] == 18 and resumed_steps[-1] == 30
    assert torch.equal(again.image, straight.image)  # same pairs, same optimiser state: bit-identical
    # a finished run's checkpoint is the image's net: rerunning only applies it
    third = zssr(img, cfg, k, checkpoint_dir=run_dir, progress=lambda p: resumed_steps.append(-1))
    assert -1 not in resumed_steps and torch.equal(third.image, straight.image)
    # a checkpoint made with other settings is refused, not silently continued
    with pytest.raises(SuperresError, match="another image, kernel or settings"):
        zssr(img, _tiny(seed=4), k, checkpoint_dir=run_dir)


def test_x4_runs_as_two_x2_steps(bird: torch.Tensor) -> None:
    img = bird[..., :40, :40]
    out = zssr(img, _tiny(scale=4, max_steps=6, ensemble=False), anisotropic_gaussian_kernel(17, 2.4, 1.4, 0.2))
    assert out.steps == [6, 6] and out.image.shape == (1, 3, 160, 160)
    assert float(out.image.min()) >= 0.0 and float(out.image.max()) <= 1.0


def test_estimate_orders_blur_widths(bird: torch.Tensor) -> None:
    """On a small candidate grid, a sharper degradation is estimated sharper than a blurrier one, and the
    long axis is found."""
    hr = imresize(bird, 0.75)[..., :104, :104]
    found = []
    for sx, sy in ((0.6, 0.6), (2.4, 0.6)):
        lr = blur_downscale(hr, anisotropic_gaussian_kernel(13, sx, sy, 0.0), 2)
        found.append(estimate_kernel(lr, 2, sigmas=(0.6, 1.2, 2.4), thetas=2, refine=0))
    sharp, wide = found
    assert sharp.sigma_x < wide.sigma_x
    assert wide.sigma_x > wide.sigma_y and abs(math.cos(wide.theta)) > 0.7  # long axis along x


def test_x4_estimate_searches_one_x2_step_and_is_narrowed(bird: torch.Tensor) -> None:
    """x4 searches the kernel of one x2 step and composes it (sigma * sqrt 5); the calibrated estimate is
    the raw one times SHRINK[4], and ``calibrated=False`` returns the raw optimum."""
    from superres.zssr.kernel import SHRINK

    lr = blur_downscale(bird[..., :128, :128], anisotropic_gaussian_kernel(21, 3.0, 2.0, 0.3), 4)  # 32 x 32
    grid = dict(sigmas=(0.6, 1.2, 2.4), thetas=2, refine=0)
    step = estimate_kernel(lr, 2, calibrated=False, **grid)
    raw = estimate_kernel(lr, 4, calibrated=False, **grid)
    cal = estimate_kernel(lr, 4, **grid)
    assert raw.shrink == 1.0 and math.isclose(raw.sigma_x, step.sigma_x * math.sqrt(5), rel_tol=1e-6)
    assert math.isclose(raw.sigma_y, step.sigma_y * math.sqrt(5), rel_tol=1e-6)
    assert 0.5 < SHRINK[4] < 1.0 and cal.shrink == SHRINK[4]
    assert math.isclose(cal.sigma_x, raw.sigma_x * SHRINK[4], rel_tol=1e-6) and cal.raw_sigma_x == raw.sigma_x
    assert cal.kernel.shape == (21, 21) and math.isclose(float(cal.kernel.sum()), 1.0, rel_tol=1e-5)


def test_save_kernel_writes_npy_and_png(tmp_path: Path) -> None:
    k = anisotropic_gaussian_kernel(13, 2.0, 0.8, 0.3)
    npy, png = save_kernel(k, tmp_path / "k.npy", tmp_path / "k.png")
    assert np.allclose(np.load(npy), k.numpy())
    with Image.open(png) as im:
        assert im.size == (13 * 16, 13 * 16) and np.asarray(im).max() == 255


def test_cli_refuses_too_small_image_with_one_line(tmp_path: Path) -> None:
    src = tmp_path / "tiny.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out" / "tiny_x4.png"
    r = runner.invoke(app, ["zssr", str(src), "-o", str(out), "-s", "4", "--max-time", "5"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "too small for ZSSR x4" in lines[0] and "32 pixels" in lines[0], r.output
    assert not out.exists() and not (tmp_path / "out").exists()  # nothing written, no checkpoint folder


def test_cli_refuses_bad_kernel_file(tmp_path: Path, bird: torch.Tensor) -> None:
    src = tmp_path / "in.png"
    Image.fromarray((bird[0, :, :40, :40].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(src)
    np.save(tmp_path / "even.npy", np.ones((4, 4)))
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["zssr", str(src), "-o", str(out), "--kernel", str(tmp_path / "even.npy")])
    assert r.exit_code == 2 and "odd-sized square" in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_end_to_end_with_checkpoint_and_kernel_files(tmp_path: Path, bird: torch.Tensor) -> None:
    src = tmp_path / "in.png"
    Image.fromarray((bird[0, :, :40, :48].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(src)
    np.save(tmp_path / "k.npy", anisotropic_gaussian_kernel(9, 1.0, 0.6, 0.2).numpy())
    out = tmp_path / "o.png"
    args = ["zssr", str(src), "-o", str(out), "--kernel", str(tmp_path / "k.npy"), "--max-steps", "8",
            "--width", "8", "--no-ensemble"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    with Image.open(out) as im:
        assert im.size == (96, 80)
    assert (tmp_path / "o.kernel.npy").is_file() and (tmp_path / "o.kernel.png").is_file()
    assert any((tmp_path / "o.png.zssr" / "checkpoints").iterdir())
    r = runner.invoke(app, args + ["--overwrite"])
    assert r.exit_code == 0 and "resumed from step 8" in r.output, r.output
