"""The degradation ZSSR inverts, and a blur-kernel estimate from the image alone.

The model is ``LR = (HR * k) downscaled by s``: blur with an odd, centred ``k x k`` kernel, then keep one
sample per ``s x s`` block, placed where MATLAB ``imresize`` puts it (LR pixel ``i`` sits at HR position
``s i + (s - 1) / 2``). For odd ``s`` that is a plain pixel; for even ``s`` it falls between four pixels
and is their mean. Keeping the bicubic resampler's sample grid means ZSSR outputs and bicubic-trained
networks are compared on the same pixel grid (a half-pixel shift alone costs tenths of a dB).

Why an estimator: a real photo's kernel is unknown, and ZSSR with the wrong kernel learns the wrong
inverse. The estimate follows the cross-scale argument of KernelGAN (Bell-Kligler et al., NeurIPS 2019):
the right SR kernel is the one whose downscaled copy of the image has the same patch statistics as the
image itself. Here the kernel family is the anisotropic Gaussian (3 parameters) and the statistic is a
bidirectional nearest-neighbour distance between contrast-normalised patches of the image and of its
downscaled copy (each edge patch of one must recur in the other), searched on a grid then refined.

Two measured corrections make the estimate fit ZSSR (``benchmarks/zssr_kernel_calibration.py``, run on
BSD200, a training set, never on the benchmark sets):

* x4 searches the kernel of one x2 step, the kernel ZSSR's gradual x4 trains with anyway, and composes
  it to x4 (covariance times 5). Downscaling the small x4 input by 2 leaves four times the patches a
  direct x4 search has, and the estimate's spread across images shrinks accordingly.
* The estimate is narrowed by a per-scale factor (:data:`SHRINK`). ZSSR's loss is lopsided: a kernel 20 %
  too wide costs it 1-2 dB (it learns to over-sharpen), one 15 % too narrow costs about 0.1 dB. The
  estimator's error has a long tail towards too wide, so the factor that minimises the expected loss is
  below 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.degradations import anisotropic_gaussian_kernel, filter2d
from ..errors import SuperresError

__all__ = [
    "SHRINK",
    "KernelEstimate",
    "blur_downscale",
    "check_kernel",
    "estimate_kernel",
    "kernel_size_for",
    "load_kernel",
    "save_kernel",
]


def kernel_size_for(scale: int) -> int:
    """Support wide enough for the Gaussians the estimator searches at this scale (odd)."""
    return 4 * int(scale) + 5 if scale > 1 else 9


def check_kernel(kernel: np.ndarray | torch.Tensor, where: str = "kernel") -> torch.Tensor:
    """A 2-D odd square, finite, non-negative-sum kernel as float32, normalised to sum 1."""
    k = torch.as_tensor(np.asarray(kernel), dtype=torch.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise SuperresError(f"{where}: a blur kernel must be a 2-D odd-sized square array, got shape {tuple(k.shape)}")
    if not torch.isfinite(k).all() or float(k.sum()) <= 0:
        raise SuperresError(f"{where}: a blur kernel must be finite with a positive sum")
    return (k / k.sum()).to(torch.float32)


def blur_downscale(x: torch.Tensor, kernel: torch.Tensor, scale: int) -> torch.Tensor:
    """``N x C x H x W`` -> blurred and subsampled ``N x C x H//s x W//s`` (the module's degradation model)."""
    s = int(scale)
    h, w = (x.shape[-2] // s) * s, (x.shape[-1] // s) * s
    y = filter2d(x[..., :h, :w], kernel)
    if s == 1:
        return y
    if s % 2:
        o = (s - 1) // 2
        return y[..., o::s, o::s]
    o = s // 2 - 1  # the sample sits between pixels o and o + 1 of each block: their mean
    a = y[..., o::s, o::s] + y[..., o + 1 :: s, o::s] + y[..., o::s, o + 1 :: s] + y[..., o + 1 :: s, o + 1 :: s]
    return a * 0.25


def load_kernel(path: str | Path) -> torch.Tensor:
    """A kernel from ``.npy`` (or a text file of rows of numbers), normalised; one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise SuperresError(f"kernel file not found: '{p}'")
    try:
        arr = np.load(p, allow_pickle=False) if p.suffix.lower() == ".npy" else np.loadtxt(p, ndmin=2)
    except (OSError, ValueError) as e:
        raise SuperresError(f"cannot read kernel '{p}': {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return check_kernel(arr, f"kernel '{p}'")


def save_kernel(kernel: torch.Tensor, npy_path: str | Path, png_path: str | Path | None = None, *,
                zoom: int = 16) -> list[Path]:
    """Write the kernel as ``.npy`` and, for looking at, a ``.png`` (peak = white, nearest-neighbour
    zoomed). Both writes are atomic. Returns the paths written."""
    from ..io.atomic import atomic_write
    from ..io.image import from_array, write_image

    k = kernel.detach().cpu().numpy().astype(np.float32)
    written = []
    npy = Path(npy_path)
    with atomic_write(npy, tmp_suffix=".tmp.npy") as tmp:
        np.save(tmp, k)
    written.append(npy)
    if png_path is not None:
        view = k / max(float(k.max()), 1e-12)
        view = np.kron(view, np.ones((zoom, zoom), np.float32))
        written.append(write_image(from_array(view), png_path))
    return written


# ---- estimation ------------------------------------------------------------------------------------------


# Factor applied to the searched widths, per scale; see the module docstring and
# benchmarks/zssr_kernel_calibration.py (BSD200, seed 1) for how each was chosen.
SHRINK: dict[int, float] = {2: 0.9, 3: 0.8, 4: 0.75}


@dataclass(frozen=True)
class KernelEstimate:
    """The estimated kernel and the Gaussian it came from (``sigma_x >= sigma_y`` in HR pixels, ``theta``
    in radians). ``raw_sigma_x`` / ``raw_sigma_y``: the widths the search found, before ``shrink``."""

    kernel: torch.Tensor
    sigma_x: float
    sigma_y: float
    theta: float
    score: float
    raw_sigma_x: float = 0.0
    raw_sigma_y: float = 0.0
    shrink: float = 1.0


def _luma(img: torch.Tensor) -> torch.Tensor:
    """1 x 1 x H x W luma of a 1 x C x H x W image."""
    if img.shape[1] == 1:
        return img
    w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype).view(1, 3, 1, 1)
    return (img[:, :3] * w).sum(1, keepdim=True)


def _patches(y: torch.Tensor, p: int, normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``p x p`` patches of a 1 x 1 x H x W image with their mean removed (and scaled to unit norm when
    ``normalise``), and their contrast (norm of the mean-removed patch)."""
    cols = F.unfold(y, p).squeeze(0).T  # (L, p*p)
    cols = cols - cols.mean(1, keepdim=True)
    norm = cols.norm(dim=1)
    return (cols / norm.clamp_min(1e-6).unsqueeze(1) if normalise else cols), norm


def _nn_distance(queries: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from each query patch to its nearest pool patch."""
    q2 = (queries * queries).sum(1, keepdim=True)
    best = torch.full((queries.shape[0],), math.inf, dtype=queries.dtype)
    for i in range(0, pool.shape[0], 16384):
        part = pool[i : i + 16384]
        d = q2 - 2.0 * queries @ part.T + (part * part).sum(1).unsqueeze(0)
        best = torch.minimum(best, d.min(1).values)
    return best.clamp_min(0.0).mean()


def _strongest(pool: torch.Tensor, norm: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` patches drawn at random from the ``4 n`` of highest contrast (the edges that carry the blur)."""
    order = torch.argsort(norm, descending=True)[: 4 * n]
    return pool[order[torch.randperm(order.numel(), generator=gen)[:n]]]


class _Recurrence:
    """Scores candidate kernels by bidirectional patch recurrence between the image and its downscale.

    Patches keep their contrast (only the mean is removed): a too-sharp kernel makes edges in the
    downscale that the image does not have, a too-wide one loses the image's sharpest edges from the
    downscale; both raise the score."""

    def __init__(self, img: torch.Tensor, scale: int, *, patch: int = 5, queries: int = 200,
                 pool: int = 8000, normalise: bool = False, seed: int = 0) -> None:
        self.scale, self.patch, self.nq, self.normalise = scale, patch, queries, normalise
        self.y = _luma(img.float())
        gen = torch.Generator().manual_seed(seed)
        patches, norm = _patches(self.y, patch, normalise)
        self.query_i = _strongest(patches, norm, queries, gen)
        keep = torch.randperm(patches.shape[0], generator=gen)[:pool]
        self.pool_i = patches[keep]
        self.seed = seed

    def __call__(self, kernel: torch.Tensor) -> float:
        d = blur_downscale(self.y, kernel.float(), self.scale)
        pool_d, norm_d = _patches(d, self.patch, self.normalise)
        gen = torch.Generator().manual_seed(self.seed + 1)
        forward = _nn_distance(_strongest(pool_d, norm_d, self.nq, gen), self.pool_i)
        backward = _nn_distance(self.query_i, pool_d)
        return float(forward + backward)


def _gauss(size: int, sx: float, sy: float, theta: float) -> torch.Tensor:
    return anisotropic_gaussian_kernel(size, max(sx, 0.2), max(sy, 0.2), theta)


def _search(image: torch.Tensor, s: int, size: int, sigmas: tuple[float, ...] | None, thetas: int, refine: int,
            seed: int) -> tuple[float, float, float, float]:
    """Grid search, then ``refine`` finer local grids: ``(score, sigma_x, sigma_y, theta)`` of the best."""
    grid = sigmas or tuple(float(v) for v in np.geomspace(0.3 * s, 1.5 * s, 7))
    score = _Recurrence(image, s, seed=seed)
    best = (math.inf, grid[0], grid[0], 0.0)
    for i, sx in enumerate(grid):
        for sy in grid[: i + 1]:
            angles = [0.0] if sx == sy else [math.pi * t / thetas for t in range(thetas)]
            for th in angles:
                v = score(_gauss(size, sx, sy, th))
                if v < best[0]:
                    best = (v, sx, sy, th)
    step_s, step_t = (grid[1] / grid[0]) if len(grid) > 1 else 1.2, math.pi / thetas
    for _ in range(refine):
        step_s, step_t = math.sqrt(step_s), step_t / 2
        _, bx, by, bt = best
        for fx in (1 / step_s, 1.0, step_s):
            for fy in (1 / step_s, 1.0, step_s):
                for dt in (-step_t, 0.0, step_t):
                    sx, sy = bx * fx, by * fy
                    if sy > sx:
                        continue
                    v = score(_gauss(size, sx, sy, bt + dt))
                    if v < best[0]:
                        best = (v, sx, sy, bt + dt)
    return best


def estimate_kernel(image: torch.Tensor, scale: int, *, kernel_size: int | None = None,
                    sigmas: tuple[float, ...] | None = None, thetas: int = 6, refine: int = 1,
                    seed: int = 0, calibrated: bool = True) -> KernelEstimate:
    """Estimate the SR kernel of a ``1 x C x H x W`` [0, 1] image for ``scale`` (see the module docstring).

    A coarse grid over ``sigma_x >= sigma_y`` (``sigmas``, HR pixels of the searched step) and ``thetas``
    angles in [0, pi), then ``refine`` rounds of a finer local grid around the best. x4 searches one x2
    step and composes it. ``calibrated`` applies :data:`SHRINK` (False: the search's own optimum).
    Deterministic for a given ``seed``."""
    s = int(scale)
    size = kernel_size or kernel_size_for(s)
    step = 2 if s == 4 else s
    if min(image.shape[-2:]) < 12 * step:  # the downscale must still hold a few hundred 5x5 patches
        raise SuperresError(f"image of {image.shape[-1]}x{image.shape[-2]} is too small to estimate a x{s} kernel "
                            f"(need at least {12 * step} pixels per side)")
    v, sx, sy, th = _search(image, step, kernel_size_for(step) if s == 4 else size, sigmas, thetas, refine, seed)
    if s == 4:  # two x2 steps of sigma compose to one x4 kernel of sigma * sqrt(5) (trainer.stage_kernel)
        sx, sy = sx * math.sqrt(5.0), sy * math.sqrt(5.0)
    shrink = SHRINK.get(s, 1.0) if calibrated else 1.0
    return KernelEstimate(_gauss(size, sx * shrink, sy * shrink, th), float(sx * shrink), float(sy * shrink),
                          float(th % math.pi), float(v), float(sx), float(sy), float(shrink))
