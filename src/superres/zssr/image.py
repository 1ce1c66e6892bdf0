"""ZSSR on a decoded image (:class:`~superres.io.image.ImageData`): colour, grey, alpha and bit depth kept.

The network works on the colour planes (1 or 3 channels); alpha is not something the image's internal
pairs can teach, so it is upscaled with MATLAB bicubic. The result keeps the source's bit depth, ICC
profile and EXIF, like ``superres upscale``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import SuperresError
from ..io.image import ImageData, as_float
from ..resize import imresize
from .kernel import KernelEstimate, estimate_kernel
from .trainer import ZSSRConfig, ZSSRProgress, ZSSRResult, min_image_side, zssr

__all__ = ["ImageResult", "check_zssr_input", "zssr_image"]


@dataclass
class ImageResult:
    image: ImageData
    run: ZSSRResult
    kernel: torch.Tensor | None
    estimate: KernelEstimate | None


def check_zssr_input(img: ImageData, scale: int) -> None:
    """Refuse, before any work, an image too small for ZSSR at ``scale`` (one-line error)."""
    w, h = img.size
    small = min_image_side(scale)
    if min(w, h) < small:
        raise SuperresError(f"image of {w}x{h} is too small for ZSSR x{scale} (needs at least {small} pixels "
                            "on each side)")


def zssr_image(
    img: ImageData,
    config: ZSSRConfig,
    kernel: torch.Tensor | str | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    progress: Callable[[ZSSRProgress], None] | None = None,
) -> ImageResult:
    """Upscale ``img`` by ``config.scale`` with ZSSR. ``kernel``: a kernel tensor, ``"estimate"`` (estimated
    from the image, see :func:`~superres.zssr.kernel.estimate_kernel`) or None (bicubic degradation)."""
    check_zssr_input(img, config.scale)
    color = torch.from_numpy(np.ascontiguousarray(as_float(img.color))).permute(2, 0, 1)[None].contiguous()
    estimate = None
    if isinstance(kernel, str):
        if kernel != "estimate":
            raise SuperresError(f"kernel must be a kernel array, 'estimate' or None, got {kernel!r}")
        estimate = estimate_kernel(color, config.scale, seed=config.seed)
        kernel = estimate.kernel
    run = zssr(color, config, kernel, checkpoint_dir=checkpoint_dir, progress=progress)
    out = run.image[0].permute(1, 2, 0).numpy().astype(np.float32)
    alpha = None
    if img.alpha is not None:
        h, w = out.shape[:2]
        alpha = np.clip(imresize(as_float(img.alpha).astype(np.float64), size=(h, w)), 0.0, 1.0).astype(np.float32)
    return ImageResult(replace(img, color=out, alpha=alpha, notes=()), run, kernel, estimate)
