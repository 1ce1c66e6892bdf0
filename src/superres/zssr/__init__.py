"""Zero-shot super-resolution (ZSSR) for images whose degradation no pretrained network has seen, and a
blur-kernel estimate from the image alone. No pretrained weights: everything is learnt from the image.

Names are imported on first use, so ``superres.zssr.command`` (loaded by ``superres --help``) pulls in
neither torch nor numpy."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "InternalPairs": "pairs",
    "KernelEstimate": "kernel",
    "blur_downscale": "kernel",
    "estimate_kernel": "kernel",
    "load_kernel": "kernel",
    "save_kernel": "kernel",
    "ZSSRConfig": "trainer",
    "ZSSRProgress": "trainer",
    "ZSSRResult": "trainer",
    "zssr": "trainer",
    "zssr_image": "image",
}

__all__ = [
    "InternalPairs", "KernelEstimate", "ZSSRConfig", "ZSSRProgress", "ZSSRResult", "blur_downscale",
    "estimate_kernel", "load_kernel", "save_kernel", "zssr", "zssr_image",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'superres.zssr' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
