"""Zero-shot super-resolution (ZSSR) for images whose degradation no pretrained network has seen, and a
blur-kernel estimate from the image alone. No pretrained weights: everything is learnt from the image."""

from __future__ import annotations

from .kernel import KernelEstimate, blur_downscale, estimate_kernel, load_kernel, save_kernel
from .pairs import InternalPairs
from .trainer import ZSSRConfig, ZSSRProgress, ZSSRResult, zssr

__all__ = [
    "InternalPairs",
    "KernelEstimate",
    "ZSSRConfig",
    "ZSSRProgress",
    "ZSSRResult",
    "blur_downscale",
    "estimate_kernel",
    "load_kernel",
    "save_kernel",
    "zssr",
]
