"""Training pairs taken from the test image itself ("HR fathers" and their "LR sons").

ZSSR's premise: small patches recur across scales of one image, so the image and its downscaled copies
("fathers") are examples of high resolution, and degrading each father exactly as the image was degraded
(the given or estimated kernel, then the scale factor) gives its low-resolution "son". The network learns
son -> father on random crops; the 8 flips/rotations multiply the examples (the image's own statistics
rarely prefer an orientation). Fathers are drawn with probability proportional to their area, so the
full-size image, which is closest to the scale the network will be applied at, is seen most.

All randomness comes from the generator given to :meth:`InternalPairs.sample`, so a run restarted from
a saved generator state draws the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..resize import imresize
from .kernel import blur_downscale

__all__ = ["InternalPairs", "augment", "degrade", "upsample"]


def degrade(hr: torch.Tensor, scale: int, kernel: torch.Tensor | None) -> torch.Tensor:
    """The assumed degradation: ``kernel`` blur + subsampling, or MATLAB bicubic when no kernel is known."""
    if kernel is None:
        h, w = (hr.shape[-2] // scale) * scale, (hr.shape[-1] // scale) * scale
        return imresize(hr[..., :h, :w], 1.0 / scale)
    return blur_downscale(hr, kernel, scale)


def upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The network's input: bicubic interpolation to the target grid (the net learns the residual)."""
    return imresize(lr, float(scale))


def augment(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square: ``k`` in 0..7 (bit 2 = transpose, bits 0-1 = quarter turns)."""
    if k & 4:
        x = x.transpose(-2, -1)
    return torch.rot90(x, k & 3, dims=(-2, -1))


def unaugment(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`augment` with the same ``k``."""
    x = torch.rot90(x, -(k & 3), dims=(-2, -1))
    return x.transpose(-2, -1) if k & 4 else x


@dataclass
class Pair:
    """Net input (son upsampled to the father's grid) and target (the father crop), both ``N x C x h x w``."""

    input: torch.Tensor
    target: torch.Tensor


class InternalPairs:
    """Random (son, father) crops from ``image`` (``1 x C x H x W``, [0, 1]) for SR by ``scale``.

    ``fathers``: the image downscaled by each factor in ``factors`` (1.0 = the image itself); fathers
    smaller than two ``scale`` blocks are dropped. ``crop``: father crop side (rounded down to a multiple
    of ``scale``; the whole father when smaller)."""

    def __init__(self, image: torch.Tensor, scale: int, kernel: torch.Tensor | None, *, crop: int = 64,
                 factors: tuple[float, ...] | None = None, noise: float = 0.0) -> None:
        if image.ndim != 4 or image.shape[0] != 1:
            raise ValueError(f"image must be 1 x C x H x W, got {tuple(image.shape)}")
        self.scale, self.kernel, self.noise = int(scale), kernel, float(noise)
        self.crop = max(self.scale * 2, (int(crop) // self.scale) * self.scale)
        factors = factors or tuple(float(f) for f in np.linspace(1.0, 0.5, 6))
        self.fathers: list[torch.Tensor] = []
        for f in factors:
            father = image if f == 1.0 else imresize(image, float(f)).clamp(0.0, 1.0)
            if min(father.shape[-2:]) >= 2 * self.scale:
                self.fathers.append(father)
        if not self.fathers:
            raise ValueError(f"image of {tuple(image.shape[-2:])} is too small for x{self.scale} pairs")
        areas = torch.tensor([float(f.shape[-1] * f.shape[-2]) for f in self.fathers], dtype=torch.float64)
        self.probs = areas / areas.sum()

    def sample(self, gen: torch.Generator, batch: int = 1) -> Pair:
        """``batch`` random crops from one father (drawn by area), each with its own symmetry."""
        idx = int(torch.multinomial(self.probs, 1, generator=gen))
        father = self.fathers[idx]
        h, w = father.shape[-2:]
        ch = min(self.crop, (h // self.scale) * self.scale)
        cw = min(self.crop, (w // self.scale) * self.scale)
        crops = []
        for _ in range(batch):
            y = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            x = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            k = int(torch.randint(0, 8, (1,), generator=gen))
            crops.append(augment(father[..., y : y + ch, x : x + cw], k))
        if ch != cw:  # a transposed non-square crop cannot stack with the others: keep one orientation
            crops = [c if c.shape[-2] == ch else c.transpose(-2, -1) for c in crops]
        target = torch.cat(crops)
        son = degrade(target, self.scale, self.kernel)
        if self.noise > 0:
            son = son + self.noise * torch.randn(son.shape, generator=gen)
        return Pair(upsample(son, self.scale), target)
