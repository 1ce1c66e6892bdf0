"""Image quality metrics with the literature's exact conventions.

* :func:`psnr`, :func:`ssim` (numpy, uint8, Y of BT.601, MATLAB ``ssim_index``) and the differentiable
  :func:`psnr_torch`, :func:`ssim_torch`;
* :class:`LPIPS` / :func:`lpips_distance` (v0.1, AlexNet or VGG16, weights from local files);
* :func:`niqe` (MATLAB parity) and :func:`quality_gate` (is an SR output worse than bicubic?);
* colour conversions :func:`rgb_to_y`, :func:`rgb_to_ycbcr`, :func:`ycbcr_to_rgb`.

LPIPS is imported on first use; nothing here imports scipy or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Eager: light (numpy + torch) and, for niqe/quality_gate, named like their submodules, so the functions
# must be bound here or the submodule objects would shadow them once imported.
from .color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from .niqe import niqe
from .psnr_ssim import psnr, psnr_torch, ssim, ssim_torch
from .quality_gate import GateResult, quality_gate

if TYPE_CHECKING:  # pragma: no cover
    from .lpips import LPIPS, lpips_distance

_LAZY = {"LPIPS": "lpips", "lpips_distance": "lpips"}

__all__ = [
    "GateResult",
    "LPIPS",
    "lpips_distance",
    "niqe",
    "psnr",
    "psnr_torch",
    "quality_gate",
    "rgb_to_y",
    "rgb_to_ycbcr",
    "ssim",
    "ssim_torch",
    "ycbcr_to_rgb",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
