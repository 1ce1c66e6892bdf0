"""Synthetic degradations: HR batch -> LR batch, as composable steps on ``N x C x H x W`` float tensors.

Why a module of its own: a model trained on bicubic LR learns to undo exactly that one resampler and fails on
real photos (blur, sensor noise, JPEG). The Real-ESRGAN (Wang et al., ICCVW 2021) and BSRGAN (Zhang et al.,
ICCV 2021) recipes fix this by degrading HR crops randomly during training. Everything here is written from
those papers' descriptions; nothing is copied from their code.

Conventions (all steps and pipelines):

* images are ``float32`` tensors ``N x C x H x W`` with values in [0, 1], ``C`` = 3 (RGB) or 1 (gray), on
  any device; random numbers come only from the explicit ``torch.Generator`` each call receives, so a run is
  reproducible from a seed and independent of the global RNG (that the trainer also uses);
* parameters are drawn **per image** (kernels, noise levels, JPEG qualities) except those that change the
  spatial size (resize scale and mode, step order), which are drawn per batch so the batch stays a tensor;
* a noise level ``sigma`` is given in 8-bit levels (0..255), as in the papers;
* the pipelines from :func:`build_degradation` return LR of exactly ``H / scale x W / scale`` and require
  ``H`` and ``W`` to be multiples of ``scale`` (training crops are; use :func:`superres.resize.modcrop`).

Kernels are built on a ``k x k`` grid centred on the middle pixel (``k`` odd), ``x`` along columns and ``y``
along rows; every kernel is normalised to sum 1 (so blurring keeps the mean brightness).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SuperresError

__all__ = [
    "DEGRADATIONS",
    "JPEG",
    "BSRGANDegradation",
    "BicubicDegradation",
    "Blur",
    "ClassicalDegradation",
    "Compose",
    "Degradation",
    "GaussianNoise",
    "KernelSampler",
    "MatlabBicubic",
    "PoissonNoise",
    "Quantize",
    "RandomResize",
    "RealESRGANDegradation",
    "Step",
    "add_gaussian_noise",
    "add_poisson_noise",
    "anisotropic_gaussian_kernel",
    "build_degradation",
    "degradation_params",
    "filter2d",
    "generalized_gaussian_kernel",
    "isotropic_gaussian_kernel",
    "jpeg_compress",
    "plateau_kernel",
    "quantize",
    "random_kernel",
    "sinc_kernel",
    "usm_sharpen",
]

KernelKind = Literal["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
ResizeMode = Literal["area", "bilinear", "bicubic"]
Range = tuple[float, float]

KERNEL_KINDS: tuple[str, ...] = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic")


# ---- random numbers from an explicit generator ---------------------------------------------------------


def _rand(gen: torch.Generator, n: int | None = None) -> torch.Tensor:
    """Uniform [0, 1) float64 numbers drawn on the generator's own device, returned on the CPU."""
    shape = () if n is None else (n,)
    return torch.rand(shape, generator=gen, device=gen.device, dtype=torch.float64).cpu()


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * _rand(gen))


def _chance(gen: torch.Generator, p: float) -> bool:
    """True with probability ``p`` (always draws, so the stream does not depend on ``p`` being 0 or 1)."""
    return bool(_rand(gen) < p)


def _choice(gen: torch.Generator, options: Sequence[Any], probs: Sequence[float] | None = None) -> Any:
    if probs is None:
        probs = [1.0] * len(options)
    if len(probs) != len(options):
        raise ValueError(f"{len(options)} options but {len(probs)} probabilities")
    w = torch.tensor(list(probs), dtype=torch.float64)
    if (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError(f"probabilities must be non-negative with a positive sum, got {list(probs)}")
    cdf = torch.cumsum(w / w.sum(), 0)
    idx = int(torch.searchsorted(cdf, _rand(gen).reshape(1), right=True)[0])
    return options[min(idx, len(options) - 1)]


def _as_range(v: float | Sequence[float]) -> Range:
    """A fixed value ``v`` or a ``(lo, hi)`` range, as a range."""
    if isinstance(v, (int, float)):
        return (float(v), float(v))
    lo, hi = v
    if lo > hi:
        raise ValueError(f"range must be (low, high), got {tuple(v)}")
    return (float(lo), float(hi))


def _split_uniform(gen: torch.Generator, rng: Range) -> float:
    """Shape parameters around 1 (beta): half the draws below 1, half above, as the Real-ESRGAN paper does,
    so that both heavy-tailed and flat-topped kernels are common whatever the range's asymmetry."""
    lo, hi = rng
    below = _chance(gen, 0.5)
    if lo < 1.0 < hi:
        return _uniform(gen, lo, 1.0) if below else _uniform(gen, 1.0, hi)
    return _uniform(gen, lo, hi)


# ---- kernels ---------------------------------------------------------------------------------------------


def _check_size(kernel_size: int) -> int:
    k = int(kernel_size)
    if k != kernel_size or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    return k


def _grid(kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = _check_size(kernel_size)
    ax = torch.arange(k, dtype=torch.float64) - (k // 2)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _quadratic_form(kernel_size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """``d^T Sigma^-1 d`` on the grid, with ``Sigma = R diag(sx^2, sy^2) R^T`` (R rotates by ``theta``)."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigmas must be positive, got {sigma_x}, {sigma_y}")
    xx, yy = _grid(kernel_size)
    c, s = math.cos(theta), math.sin(theta)
    u = c * xx + s * yy  # coordinates along the kernel's own axes
    v = -s * xx + c * yy
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalised(k: torch.Tensor) -> torch.Tensor:
    return (k / k.sum()).to(torch.float32)


def isotropic_gaussian_kernel(kernel_size: int, sigma: float) -> torch.Tensor:
    """``exp(-r^2 / (2 sigma^2))``, normalised."""
    return _normalised(torch.exp(-0.5 * _quadratic_form(kernel_size, sigma, sigma, 0.0)))


def anisotropic_gaussian_kernel(
    kernel_size: int, sigma_x: float, sigma_y: float, theta: float
) -> torch.Tensor:
    """Gaussian with standard deviations ``sigma_x``/``sigma_y`` along axes rotated by ``theta`` (radians)."""
    return _normalised(torch.exp(-0.5 * _quadratic_form(kernel_size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(
    kernel_size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> torch.Tensor:
    """``exp(-(q / 2)^beta)``-like shape ``exp(-0.5 q^beta)``: beta < 1 heavier tails, beta > 1 flatter top;
    beta = 1 is the Gaussian."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return _normalised(torch.exp(-0.5 * _quadratic_form(kernel_size, sigma_x, sigma_y, theta) ** beta))


def plateau_kernel(
    kernel_size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> torch.Tensor:
    """``1 / (1 + q^beta)``: a flat top with slowly decaying tails (the paper's plateau-shaped kernel)."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return _normalised(1.0 / (1.0 + _quadratic_form(kernel_size, sigma_x, sigma_y, theta) ** beta))


def sinc_kernel(kernel_size: int, cutoff: float) -> torch.Tensor:
    """Ideal circular low-pass filter ``omega J1(omega r) / (2 pi r)`` truncated to ``k x k``, normalised.

    Convolving with it produces the ringing and overshoot artefacts of sharpened or over-compressed images;
    ``cutoff`` (omega, radians per pixel, in (0, pi]) sets the ring spacing."""
    if not 0 < cutoff <= math.pi + 1e-9:
        raise ValueError(f"cutoff must be in (0, pi], got {cutoff}")
    xx, yy = _grid(kernel_size)
    r = torch.sqrt(xx * xx + yy * yy)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, torch.full_like(r, cutoff * cutoff / (4 * math.pi)), k)
    return _normalised(k)


def _pad_kernel(k: torch.Tensor, size: int) -> torch.Tensor:
    p = (size - k.shape[-1]) // 2
    return F.pad(k, (p, p, p, p)) if p > 0 else k


def _delta_kernel(size: int) -> torch.Tensor:
    k = torch.zeros(size, size)
    k[size // 2, size // 2] = 1.0
    return k


@dataclass(frozen=True)
class KernelSampler:
    """Random blur kernels as in the Real-ESRGAN paper (section 3.2): an odd size from ``size_range``, then a
    sinc kernel with probability ``sinc_prob``, else one of ``kinds`` drawn with ``probs``.

    Sigmas are drawn from ``sigma_range`` (the same for both axes for ``*iso`` kinds, independently for
    ``*aniso`` kinds, which are also rotated by an angle from ``rotation_range``); ``beta`` from
    ``betag_range`` (generalised) or ``betap_range`` (plateau). The sinc cutoff is drawn from
    ``[pi/3, pi]`` for kernels smaller than 13 pixels and ``[pi/5, pi]`` otherwise (a small support cannot
    hold the wide rings of a low cutoff)."""

    size_range: tuple[int, int] = (7, 21)
    kinds: tuple[str, ...] = KERNEL_KINDS
    probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma_range: Range = (0.2, 3.0)
    rotation_range: Range = (-math.pi, math.pi)
    betag_range: Range = (0.5, 4.0)
    betap_range: Range = (1.0, 2.0)
    sinc_prob: float = 0.1

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KERNEL_KINDS]
        if unknown:
            raise ValueError(f"unknown kernel kind(s) {unknown}; known: {', '.join(KERNEL_KINDS)}")
        if len(self.kinds) != len(self.probs):
            raise ValueError(f"{len(self.kinds)} kernel kinds but {len(self.probs)} probabilities")
        lo, hi = self.size_range
        if lo < 1 or lo > hi or (lo % 2 == 0 and lo == hi):
            raise ValueError(f"size_range must hold an odd size, got {self.size_range}")

    @property
    def max_size(self) -> int:
        hi = int(self.size_range[1])
        return hi if hi % 2 else hi - 1

    def __call__(self, gen: torch.Generator) -> torch.Tensor:
        sizes = [s for s in range(int(self.size_range[0]), int(self.size_range[1]) + 1) if s % 2 == 1]
        size = int(_choice(gen, sizes))
        if _chance(gen, self.sinc_prob):
            lo = math.pi / 3 if size < 13 else math.pi / 5
            return sinc_kernel(size, _uniform(gen, lo, math.pi))
        kind = str(_choice(gen, self.kinds, self.probs))
        return random_kernel(
            gen,
            kind,
            size,
            sigma_range=self.sigma_range,
            rotation_range=self.rotation_range,
            betag_range=self.betag_range,
            betap_range=self.betap_range,
        )


def random_kernel(
    gen: torch.Generator,
    kind: str,
    kernel_size: int,
    *,
    sigma_range: Range = (0.2, 3.0),
    rotation_range: Range = (-math.pi, math.pi),
    betag_range: Range = (0.5, 4.0),
    betap_range: Range = (1.0, 2.0),
) -> torch.Tensor:
    """One kernel of a given kind with parameters drawn from the ranges (see :class:`KernelSampler`)."""
    if kind not in KERNEL_KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; known: {', '.join(KERNEL_KINDS)}")
    sx = _uniform(gen, *sigma_range)
    if kind.endswith("aniso"):
        sy = _uniform(gen, *sigma_range)
        theta = _uniform(gen, *rotation_range)
    else:
        sy, theta = sx, 0.0
    if kind in ("iso", "aniso"):
        return anisotropic_gaussian_kernel(kernel_size, sx, sy, theta)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(kernel_size, sx, sy, theta, _split_uniform(gen, betag_range))
    return plateau_kernel(kernel_size, sx, sy, theta, _split_uniform(gen, betap_range))


# ---- primitive operations --------------------------------------------------------------------------------


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected a float N x C x H x W tensor, got {got}")


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its own kernel: ``kernel`` is ``k x k`` (all images) or ``N x k x k``.

    Borders are mirrored (no dark frame from zero padding); images smaller than the kernel's half-width
    fall back to edge replication, which mirroring cannot do."""
    _check_batch(x)
    n, c, h, w = x.shape
    kern = kernel.to(device=x.device, dtype=x.dtype)
    if kern.ndim == 2:
        kern = kern.expand(n, *kern.shape)
    if kern.shape[0] != n or kern.shape[-1] != kern.shape[-2] or kern.shape[-1] % 2 == 0:
        raise ValueError(f"kernel must be k x k or N x k x k with k odd, got {tuple(kernel.shape)} for N={n}")
    k = kern.shape[-1]
    p = k // 2
    mode = "reflect" if p < h and p < w else "replicate"
    padded = F.pad(x, (p, p, p, p), mode=mode) if p > 0 else x
    weight = kern.repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, k, k)
    # conv2d is a correlation; flip so this is a true convolution (matters for rotated/asymmetric kernels).
    weight = torch.flip(weight, dims=(-2, -1))
    out = F.conv2d(padded.reshape(1, n * c, h + 2 * p, w + 2 * p), weight, groups=n * c)
    return out.reshape(n, c, h, w)


def _per_image(values: float | Sequence[float] | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32)
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"expected one value or {n} values (one per image), got shape {tuple(t.shape)}")
    return t.to(device).view(n, 1, 1, 1)


def _per_image_bool(
    values: bool | Sequence[bool] | torch.Tensor, n: int, device: torch.device
) -> torch.Tensor:
    return _per_image(torch.as_tensor(values, dtype=torch.float32), n, device) > 0.5


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (BT.601 weights) as ``N x 1 x H x W``; a 1-channel image is its own luma."""
    if x.shape[1] == 1:
        return x
    wts = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x[:, :3] * wts).sum(dim=1, keepdim=True)


def add_gaussian_noise(
    x: torch.Tensor,
    sigma: float | Sequence[float] | torch.Tensor,
    gen: torch.Generator,
    *,
    gray: bool | Sequence[bool] | torch.Tensor = False,
    clip: bool = True,
) -> torch.Tensor:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` (8-bit levels; one value or one per
    image).

    Gray noise is the same in every channel (luminance noise); colour noise is independent per channel."""
    _check_batch(x)
    n, c, h, w = x.shape
    noise = torch.randn((n, c, h, w), generator=gen, device=gen.device, dtype=torch.float32).to(
        x.device, x.dtype
    )
    is_gray = _per_image_bool(gray, n, x.device)
    noise = torch.where(is_gray, noise[:, :1].expand_as(noise), noise)
    out = x + noise * (_per_image(sigma, n, x.device).to(x.dtype) / 255.0)
    return out.clamp(0.0, 1.0) if clip else out


def add_poisson_noise(
    x: torch.Tensor,
    scale: float | Sequence[float] | torch.Tensor,
    gen: torch.Generator,
    *,
    gray: bool | Sequence[bool] | torch.Tensor = False,
    levels: float = 255.0,
    clip: bool = True,
) -> torch.Tensor:
    """Add shot noise: ``scale * (Poisson(levels * x) / levels - x)``, so its variance is
    ``scale^2 * x / levels`` (grows with intensity, the signature of photon noise).

    ``levels`` is fixed (255: one photon per 8-bit level) rather than taken from the image's count of
    distinct values as some reference code does, which makes the noise strength depend on how smooth the
    image happens to be. Gray noise is computed on the luma and added to every channel."""
    _check_batch(x)
    n = x.shape[0]
    is_gray = _per_image_bool(gray, n, x.device)
    src = torch.cat([x, _gray(x)], dim=1).clamp(0.0, 1.0)
    lam = (src * levels).to(device=gen.device, dtype=torch.float32)
    sample = torch.poisson(lam, generator=gen).to(x.device, x.dtype) / levels
    noise = sample - src
    noise = torch.where(is_gray, noise[:, -1:].expand(-1, x.shape[1], -1, -1), noise[:, :-1])
    out = x + noise * _per_image(scale, n, x.device).to(x.dtype)
    return out.clamp(0.0, 1.0) if clip else out


def jpeg_compress(x: torch.Tensor, quality: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Encode and decode each image as JPEG at ``quality`` (1..95; one value or one per image) with Pillow.

    The images are rounded to 8 bits first (a JPEG file holds 8-bit samples); colour images use Pillow's
    default 4:2:0 chroma subsampling, like most cameras and web encoders. Runs on the CPU, one image at a
    time; the result is returned on the input's device."""
    from PIL import Image

    _check_batch(x)
    n, c = x.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"JPEG needs 1 or 3 channels, got {c}")
    q = torch.as_tensor(quality).reshape(-1)
    if q.numel() == 1:
        q = q.expand(n)
    if q.numel() != n:
        raise ValueError(f"expected one quality or {n} (one per image), got {q.numel()}")
    samples = quantize(x.detach()).mul(255.0).round().to(torch.uint8).cpu().numpy()
    out = np.empty(samples.shape, dtype=np.float32)
    for i in range(n):
        qi = round(float(q[i]))
        if not 1 <= qi <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {qi}")
        arr = samples[i].transpose(1, 2, 0)
        im = Image.fromarray(arr[..., 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=qi)
        buf.seek(0)
        with Image.open(buf) as dec:
            back = np.asarray(dec.convert("L" if c == 1 else "RGB"), dtype=np.float32)
        out[i] = (back[..., None] if c == 1 else back).transpose(2, 0, 1) / 255.0
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 levels of an 8-bit image (what a saved LR file would hold)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(x, size=size, mode=mode, align_corners=False)
    raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")


def usm_sharpen(
    x: torch.Tensor, weight: float = 0.5, sigma: float = 8.3, kernel_size: int = 51, threshold: float = 10.0
) -> torch.Tensor:
    """Unsharp masking of HR targets (Real-ESRGAN trains on sharpened ground truth so outputs look crisp).

    Sharpening is applied where the high-pass residual exceeds ``threshold`` 8-bit levels, with a blurred
    mask so the edges of that region do not show."""
    _check_batch(x)
    k = isotropic_gaussian_kernel(kernel_size, sigma)
    blur = filter2d(x, k)
    residual = x - blur
    mask = (residual.abs() * 255.0 > threshold).to(x.dtype)
    soft = filter2d(mask, k)
    sharp = (x + weight * residual).clamp(0.0, 1.0)
    return soft * sharp + (1.0 - soft) * x


# ---- steps -----------------------------------------------------------------------------------------------


class Step(Protocol):
    """One degradation step: ``(images, generator) -> images``."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...


@dataclass(frozen=True)
class Blur:
    """Blur every image with its own kernel from ``sampler`` (applied with probability ``prob`` per batch)."""

    sampler: KernelSampler | Callable[[torch.Generator], torch.Tensor] = field(default_factory=KernelSampler)
    prob: float = 1.0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not _chance(gen, self.prob):
            return x
        kernels = [self.sampler(gen) for _ in range(x.shape[0])]
        size = max(k.shape[-1] for k in kernels)
        return filter2d(x, torch.stack([_pad_kernel(k, size) for k in kernels]))


@dataclass(frozen=True)
class RandomResize:
    """Resize by a random factor: up from ``(1, range[1])``, down from ``(range[0], 1)`` or kept, with
    probabilities ``probs``; the mode (area, bilinear, bicubic) is drawn with ``mode_probs``. ``size`` (a
    fixed output H, W) overrides the factor."""

    scale_range: Range = (0.15, 1.5)
    probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    modes: tuple[str, ...] = RESIZE_MODES
    mode_probs: tuple[float, ...] = (1.0, 1.0, 1.0)
    size: tuple[int, int] | None = None

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        _check_batch(x)
        mode = str(_choice(gen, self.modes, self.mode_probs))
        if self.size is not None:
            return _resize(x, self.size, mode)
        direction = _choice(gen, ("up", "down", "keep"), self.probs)
        if direction == "up":
            f = _uniform(gen, 1.0, self.scale_range[1])
        elif direction == "down":
            f = _uniform(gen, self.scale_range[0], 1.0)
        else:
            return x
        h, w = x.shape[-2:]
        return _resize(x, (round(h * f), round(w * f)), mode)


@dataclass(frozen=True)
class GaussianNoise:
    """Gaussian noise with ``sigma`` (8-bit levels) uniform in ``sigma_range`` per image; gray (same in all
    channels) with probability ``gray_prob`` per image; the step itself runs with probability ``prob``."""

    sigma_range: Range = (1.0, 30.0)
    gray_prob: float = 0.4
    prob: float = 1.0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not _chance(gen, self.prob):
            return x
        n = x.shape[0]
        lo, hi = _as_range(self.sigma_range)
        sigma = lo + (hi - lo) * _rand(gen, n)
        gray = _rand(gen, n) < self.gray_prob
        return add_gaussian_noise(x, sigma, gen, gray=gray)


@dataclass(frozen=True)
class PoissonNoise:
    """Poisson (shot) noise, strength uniform in ``scale_range`` per image (see :func:`add_poisson_noise`)."""

    scale_range: Range = (0.05, 3.0)
    gray_prob: float = 0.4
    prob: float = 1.0
    levels: float = 255.0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not _chance(gen, self.prob):
            return x
        n = x.shape[0]
        lo, hi = _as_range(self.scale_range)
        scale = lo + (hi - lo) * _rand(gen, n)
        gray = _rand(gen, n) < self.gray_prob
        return add_poisson_noise(x, scale, gen, gray=gray, levels=self.levels)


@dataclass(frozen=True)
class JPEG:
    """JPEG at an integer quality uniform in ``quality_range`` per image (a fixed ``int`` works too)."""

    quality_range: Range | int = (30, 95)
    prob: float = 1.0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not _chance(gen, self.prob):
            return x
        lo, hi = _as_range(self.quality_range)
        q = torch.floor(lo + (hi - lo + 1) * _rand(gen, x.shape[0])).clamp(max=hi)
        return jpeg_compress(x, q.to(torch.int64))


@dataclass(frozen=True)
class MatlabBicubic:
    """MATLAB ``imresize(x, 1/scale)`` (antialiased bicubic, :mod:`superres.resize`); with ``uint8=True`` the
    input is rounded to 8 bits and each pass is rounded as MATLAB does for uint8 images, which reproduces
    the benchmark LR files bit-exactly."""

    scale: int
    uint8: bool = True

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        from ..resize import imresize

        _check_batch(x)
        if self.uint8:
            levels = torch.round(x.detach().clamp(0, 1) * 255.0).to(torch.uint8)
            return (imresize(levels, 1.0 / self.scale).to(x.dtype) / 255.0).to(x.device)
        return imresize(x, 1.0 / self.scale)


@dataclass(frozen=True)
class Quantize:
    """Clamp and round to 8-bit levels (the last step of the realistic pipelines)."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return quantize(x)


# ---- pipelines -------------------------------------------------------------------------------------------


class Degradation:
    """A callable ``(hr, gen) -> lr`` mapping ``N x C x H x W`` HR to ``N x C x H/scale x W/scale`` LR.

    Subclasses implement :meth:`forward`; ``__call__`` checks the input and the output size so a pipeline
    bug cannot silently misalign LR and HR in training. ``params`` holds the resolved parameters, for the
    run's saved configuration."""

    name: ClassVar[str] = "custom"

    def __init__(self, scale: int) -> None:
        if int(scale) != scale or scale < 1:
            raise SuperresError(f"degradation scale must be a positive integer, got {scale}")
        self.scale = int(scale)

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def forward(self, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        _check_batch(hr)
        if not isinstance(gen, torch.Generator):
            raise TypeError(f"gen must be a torch.Generator, got {type(gen).__name__}")
        h, w = hr.shape[-2:]
        s = self.scale
        if h % s or w % s:
            raise ValueError(f"HR size {h}x{w} is not a multiple of the scale {s} (modcrop it first)")
        with torch.no_grad():
            lr = self.forward(hr, gen)
        want = (hr.shape[0], hr.shape[1], h // s, w // s)
        if tuple(lr.shape) != want:
            raise RuntimeError(f"{self.name} degradation returned {tuple(lr.shape)}, expected {want}")
        return lr.contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale}, {self.params})"


class Compose(Degradation):
    """Run steps in order; the last must bring the size to ``H/scale x W/scale``."""

    def __init__(self, steps: Sequence[Step], scale: int) -> None:
        super().__init__(scale)
        self.steps = list(steps)

    @property
    def params(self) -> dict[str, Any]:
        return {"steps": [repr(s) for s in self.steps]}

    def forward(self, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = hr
        for step in self.steps:
            x = step(x, gen)
        return x


class _ParamDegradation(Degradation):
    """A pipeline configured by a frozen dataclass ``Params`` whose fields are the documented keywords."""

    Params: ClassVar[type]

    def __init__(self, scale: int, **params: Any) -> None:
        super().__init__(scale)
        known = {f.name for f in fields(self.Params)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise SuperresError(
                f"unknown parameter(s) {', '.join(unknown)} for the {self.name!r} degradation; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            self.p = replace(self.Params(), **{k: _tuple(v) for k, v in params.items()})
            self._check()
        except (TypeError, ValueError) as e:
            raise SuperresError(f"bad parameter for the {self.name!r} degradation: {e}") from None

    def _check(self) -> None:
        pass

    @property
    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self.p, f.name) for f in fields(self.p)}


def _tuple(v: Any) -> Any:
    """Lists from YAML/JSON configs become tuples (the dataclasses are frozen and hashable)."""
    return tuple(_tuple(i) for i in v) if isinstance(v, list) else v


class BicubicDegradation(_ParamDegradation):
    """The literature's bicubic LR: MATLAB ``imresize(HR, 1/scale)``, 8-bit like the evaluation protocol."""

    name = "bicubic"

    @dataclass(frozen=True)
    class Params:
        uint8: bool = True  # round input and each resampling pass to 8-bit levels (the published LR files)

    def forward(self, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return MatlabBicubic(self.scale, uint8=self.p.uint8)(hr, gen)


class ClassicalDegradation(_ParamDegradation):
    """``y = (x * k) downsampled + n``: Gaussian blur, downsampling, white Gaussian noise, 8-bit rounding.

    The textbook model of SRMD/USRNet. ``downsample="direct"`` keeps every ``scale``-th pixel (starting at
    the top-left) after the blur; ``"bicubic"`` uses MATLAB bicubic instead (blur + bicubic, the "BD"-like
    setting). Ranges ``(lo, hi)`` are sampled per image; a single number fixes the value."""

    name = "classical"

    @dataclass(frozen=True)
    class Params:
        kernel_size: int = 21  # odd; must hold about 3 sigma on each side
        blur_sigma: Range | float = (0.2, 3.0)  # isotropic Gaussian sigma in HR pixels
        aniso_prob: float = 0.0  # chance of an anisotropic, rotated kernel (sigmas from blur_sigma)
        downsample: str = "direct"  # "direct" (s-fold decimation) or "bicubic" (MATLAB)
        noise_sigma: Range | float = (0.0, 15.0)  # Gaussian noise std in 8-bit levels
        gray_noise_prob: float = 0.0
        jpeg_quality: Range | int | None = None  # None: no JPEG
        round: bool = True  # round the result to 8-bit levels

    def _check(self) -> None:
        _check_size(self.p.kernel_size)
        _as_range(self.p.blur_sigma)
        _as_range(self.p.noise_sigma)
        if self.p.downsample not in ("direct", "bicubic"):
            raise ValueError(f"downsample must be 'direct' or 'bicubic', got {self.p.downsample!r}")

    def _kernel(self, gen: torch.Generator) -> torch.Tensor:
        lo, hi = _as_range(self.p.blur_sigma)
        aniso = _chance(gen, self.p.aniso_prob)
        sx = _uniform(gen, lo, hi)
        if aniso:
            return anisotropic_gaussian_kernel(
                self.p.kernel_size, sx, _uniform(gen, lo, hi), _uniform(gen, -math.pi, math.pi)
            )
        return isotropic_gaussian_kernel(self.p.kernel_size, sx)

    def forward(self, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = self.scale
        x = Blur(self._kernel)(hr, gen)
        if self.p.downsample == "direct":
            x = x[..., ::s, ::s]
        else:
            x = MatlabBicubic(s, uint8=False)(x, gen)
        x = GaussianNoise(_as_range(self.p.noise_sigma), self.p.gray_noise_prob)(x, gen)
        if self.p.jpeg_quality is not None:
            x = JPEG(self.p.jpeg_quality)(x, gen)
        return quantize(x) if self.p.round else x


class RealESRGANDegradation(_ParamDegradation):
    """The Real-ESRGAN second-order pipeline (Wang et al. 2021, section 3), with the paper's defaults.

    Twice: blur (random kernel), random resize, Gaussian or Poisson noise, JPEG; the second blur only with
    ``second_blur_prob``. The second stage resizes relative to the final size, and ends, in random order,
    with either [resize to ``H/scale``, sinc filter] then JPEG, or JPEG then [resize, sinc]; the final sinc
    filter (ringing, overshoot) is used with ``final_sinc_prob``. The output is clamped and rounded to 8-bit
    levels. Parameters ending in ``2`` are the second stage's."""

    name = "realesrgan"

    @dataclass(frozen=True)
    class Params:
        # first stage
        kernel_size_range: tuple[int, int] = (7, 21)
        kernel_list: tuple[str, ...] = KERNEL_KINDS
        kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
        sinc_prob: float = 0.1
        blur_sigma: Range = (0.2, 3.0)
        betag_range: Range = (0.5, 4.0)
        betap_range: Range = (1.0, 2.0)
        resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
        resize_range: Range = (0.15, 1.5)
        gaussian_noise_prob: float = 0.5  # else Poisson
        noise_range: Range = (1.0, 30.0)  # Gaussian sigma, 8-bit levels
        poisson_scale_range: Range = (0.05, 3.0)
        gray_noise_prob: float = 0.4
        jpeg_range: Range = (30, 95)
        # second stage
        second_blur_prob: float = 0.8
        kernel_list2: tuple[str, ...] = KERNEL_KINDS
        kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
        sinc_prob2: float = 0.1
        blur_sigma2: Range = (0.2, 1.5)
        betag_range2: Range = (0.5, 4.0)
        betap_range2: Range = (1.0, 2.0)
        resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
        resize_range2: Range = (0.3, 1.2)
        gaussian_noise_prob2: float = 0.5
        noise_range2: Range = (1.0, 25.0)
        poisson_scale_range2: Range = (0.05, 2.5)
        gray_noise_prob2: float = 0.4
        jpeg_range2: Range = (30, 95)
        # final
        final_sinc_prob: float = 0.8
        final_sinc_size_range: tuple[int, int] = (7, 21)

    def _check(self) -> None:
        self._samplers()

    def _samplers(self) -> tuple[KernelSampler, KernelSampler]:
        p = self.p
        first = KernelSampler(
            p.kernel_size_range,
            p.kernel_list,
            p.kernel_prob,
            p.blur_sigma,
            betag_range=p.betag_range,
            betap_range=p.betap_range,
            sinc_prob=p.sinc_prob,
        )
        second = KernelSampler(
            p.kernel_size_range,
            p.kernel_list2,
            p.kernel_prob2,
            p.blur_sigma2,
            betag_range=p.betag_range2,
            betap_range=p.betap_range2,
            sinc_prob=p.sinc_prob2,
        )
        return first, second

    def _final_sinc(self, gen: torch.Generator) -> torch.Tensor:
        lo, hi = self.p.final_sinc_size_range
        size = int(_choice(gen, [s for s in range(int(lo), int(hi) + 1) if s % 2 == 1]))
        return sinc_kernel(size, _uniform(gen, math.pi / 3, math.pi))

    def _noise(self, x: torch.Tensor, gen: torch.Generator, second: bool) -> torch.Tensor:
        p = self.p
        if _chance(gen, p.gaussian_noise_prob2 if second else p.gaussian_noise_prob):
            return GaussianNoise(
                p.noise_range2 if second else p.noise_range,
                p.gray_noise_prob2 if second else p.gray_noise_prob,
            )(x, gen)
        return PoissonNoise(
            p.poisson_scale_range2 if second else p.poisson_scale_range,
            p.gray_noise_prob2 if second else p.gray_noise_prob,
        )(x, gen)

    def forward(self, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        p = self.p
        s = self.scale
        h, w = hr.shape[-2:]
        first_k, second_k = self._samplers()
        # first order
        x = Blur(first_k)(hr, gen)
        x = RandomResize(p.resize_range, p.resize_prob)(x, gen)
        x = self._noise(x, gen, second=False)
        x = JPEG(p.jpeg_range)(x, gen)
        # second order: sizes relative to the final LR size
        x = Blur(second_k, prob=p.second_blur_prob)(x, gen)
        direction = _choice(gen, ("up", "down", "keep"), p.resize_prob2)
        f = {
            "up": lambda: _uniform(gen, 1.0, p.resize_range2[1]),
            "down": lambda: _uniform(gen, p.resize_range2[0], 1.0),
            "keep": lambda: 1.0,
        }[direction]()
        mode = str(_choice(gen, RESIZE_MODES))
        x = _resize(x, (int(h / s * f), int(w / s * f)), mode)
        x = self._noise(x, gen, second=True)
        # final: [resize back + sinc] and JPEG in random order
        n = x.shape[0]
        use_sinc = _rand(gen, n) < p.final_sinc_prob
        kernels = [self._final_sinc(gen) if bool(u) else _delta_kernel(1) for u in use_sinc]
        size = max(k.shape[-1] for k in kernels)
        sinc = torch.stack([_pad_kernel(k, size) for k in kernels])
        mode = str(_choice(gen, RESIZE_MODES))
        jpeg = JPEG(p.jpeg_range2)
        if _chance(gen, 0.5):
            x = filter2d(_resize(x, (h // s, w // s), mode), sinc)
            x = jpeg(x.clamp(0.0, 1.0), gen)
        else:
            x = jpeg(x.clamp(0.0, 1.0), gen)
            x = filter2d(_resize(x, (h // s, w // s), mode), sinc)
        return quantize(x)


class BSRGANDegradation(_ParamDegradation):
    """A BSRGAN-style shuffled pipeline (Zhang et al. 2021, "Designing a Practical Degradation Model").

    With ``scale == 4`` and probability ``prescale_prob`` the image is first halved (bicubic or MATLAB
    bicubic), leaving a x2 problem. Then, in a random order: two blurs (isotropic or anisotropic Gaussian,
    widths growing with the remaining scale), an intermediate downsampling (random factor in
    ``[1, 2 s]``, random mode, or blur + decimation), the final downsampling to ``H/scale`` (kept after the
    intermediate one), Gaussian noise (colour, gray or channel-correlated), JPEG (``jpeg_prob``) and
    Poisson shot noise (``poisson_prob``; the paper's camera-ISP noise needs a camera model we do not ship,
    shot noise is its dominant part). A last JPEG always runs; the output is rounded to 8-bit levels."""

    name = "bsrgan"

    @dataclass(frozen=True)
    class Params:
        prescale_prob: float = 0.25
        noise_range: Range = (2.0, 25.0)  # Gaussian sigma, 8-bit levels
        jpeg_prob: float = 0.9
        jpeg_range: Range = (30, 95)
        poisson_prob: float = 0.25
        poisson_scale_range: Range = (0.05, 2.0)

    def _blur_kernel(self, gen: torch.Generator, sf: int) -> torch.Tensor:
        wide, narrow = 4.0 + sf, 2.0 + 0.2 * sf
        size = 2 * int(_choice(gen, list(range(2, 12)))) + 3
        if _chance(gen, 0.5):
            l1 = 0.1 + wide * _uniform(gen, 0.0, 1.0)
            l2 = 0.1 + wide * _uniform(gen, 0.0, 1.0)
            return anisotropic_gaussian_kernel(
                size, math.sqrt(l1), math.sqrt(l2), _uniform(gen, 0.0, math.pi)
            )
        return isotropic_gaussian_kernel(size, max(0.1, narrow * _uniform(gen, 0.0, 1.0)))

    def _gaussian_noise(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, c = x.shape[:2]
        lo, hi = self.p.noise_range
        out = []
        for i in range(n):
            xi = x[i : i + 1]
            sigma = _uniform(gen, lo, hi) / 255.0
            r = _uniform(gen, 0.0, 1.0)
            if r > 0.6 or c == 1:  # colour noise
                noise = torch.randn(xi.shape, generator=gen, device=gen.device) * sigma
            elif r < 0.4:  # gray noise
                noise = torch.randn((1, 1, *xi.shape[-2:]), generator=gen, device=gen.device) * sigma
            else:  # channel-correlated noise: covariance U diag(d) U^T with a random orthogonal U
                q, _ = torch.linalg.qr(
                    torch.randn((3, 3), generator=gen, device=gen.device, dtype=torch.float64)
                )
                d = torch.rand(3, generator=gen, device=gen.device, dtype=torch.float64)
                cov = (sigma**2) * (q @ torch.diag(d) @ q.T)
                chol = torch.linalg.cholesky(
                    cov + 1e-12 * torch.eye(3, device=gen.device, dtype=torch.float64)
                )
                z = torch.randn(
                    (3, xi.shape[-2] * xi.shape[-1]), generator=gen, device=gen.device, dtype=torch.float64
                )
                noise = (chol @ z).reshape(1, 3, *xi.shape[-2:]).float()
            out.append((xi + noise.to(xi.device, xi.dtype)).clamp(0.0, 1.0))
        return torch.cat(out)

    def forward(self, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        p = self.p
        h, w = hr.shape[-2:]
        target = (h // self.scale, w // self.scale)
        sf = self.scale
        x = hr
        if sf == 4 and _chance(gen, p.prescale_prob):
            if _chance(gen, 0.5):
                x = _resize(x, (h // 2, w // 2), str(_choice(gen, RESIZE_MODES)))
            else:
                x = MatlabBicubic(2, uint8=False)(x, gen)
            x = x.clamp(0.0, 1.0)
            sf = 2
        order = [int(i) for i in torch.randperm(7, generator=gen, device=gen.device).cpu()]
        i2, i3 = order.index(2), order.index(3)
        if i2 > i3:  # the intermediate downsampling must come before the final one
            order[i2], order[i3] = order[i3], order[i2]
        for op in order:
            if op in (0, 1):
                x = Blur(lambda g: self._blur_kernel(g, sf))(x, gen)
            elif op == 2:
                if _chance(gen, 0.75):
                    f = _uniform(gen, 1.0, 2.0 * sf)
                    x = _resize(
                        x, (int(x.shape[-2] / f), int(x.shape[-1] / f)), str(_choice(gen, RESIZE_MODES))
                    )
                else:
                    k = isotropic_gaussian_kernel(25, _uniform(gen, 0.1, 0.6 * sf))
                    x = filter2d(x, k)[..., ::sf, ::sf]
                x = x.clamp(0.0, 1.0)
            elif op == 3:
                x = _resize(x, target, str(_choice(gen, RESIZE_MODES))).clamp(0.0, 1.0)
            elif op == 4:
                x = self._gaussian_noise(x, gen)
            elif op == 5:
                x = JPEG(p.jpeg_range, prob=p.jpeg_prob)(x, gen)
            elif op == 6:
                x = PoissonNoise(p.poisson_scale_range, gray_prob=0.0, prob=p.poisson_prob)(x, gen)
        x = JPEG(p.jpeg_range)(x, gen)
        return quantize(x)


DEGRADATIONS: dict[str, type[_ParamDegradation]] = {
    cls.name: cls
    for cls in (BicubicDegradation, ClassicalDegradation, RealESRGANDegradation, BSRGANDegradation)
}


def build_degradation(name: str, scale: int, **params: Any) -> Degradation:
    """A degradation pipeline by name: ``bicubic``, ``classical``, ``realesrgan`` or ``bsrgan``.

    Keyword parameters override the pipeline's documented defaults (see :func:`degradation_params`);
    an unknown name or parameter is a :class:`~superres.errors.SuperresError` naming the valid ones."""
    cls = DEGRADATIONS.get(str(name).lower())
    if cls is None:
        raise SuperresError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}")
    return cls(scale, **params)


def degradation_params(name: str) -> dict[str, Any]:
    """The default parameters of a named pipeline (for documentation and saved run configs)."""
    cls = DEGRADATIONS.get(str(name).lower())
    if cls is None:
        raise SuperresError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}")
    return {f.name: getattr(cls.Params(), f.name) for f in fields(cls.Params)}
