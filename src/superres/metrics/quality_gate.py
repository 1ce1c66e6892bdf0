"""A no-reference sanity gate for super-resolution outputs: "does this look worse than plain bicubic?"

Without a ground truth, the cheapest honest baseline for an SR output is the bicubic upscale of the same
input: any model that is worth running should look at least as natural. The gate scores both with NIQE
(lower = closer to pristine natural-image statistics) and flags the output when its NIQE is higher than
bicubic's by more than ``tolerance``. It catches broken outputs (noise, heavy blur, wrong weights, colour or
tiling garbage), not subtle quality differences: NIQE does not see fidelity, so a gate pass is no proof
that the output is faithful to the input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..resize import imresize
from .niqe import NiqeModel, load_niqe_model, niqe

__all__ = ["GateResult", "quality_gate"]


@dataclass(frozen=True)
class GateResult:
    """NIQE of the SR output and of the bicubic upscale; ``margin`` > 0: the output looks more natural."""

    sr_niqe: float
    bicubic_niqe: float
    worse_than_bicubic: bool
    margin: float  # bicubic_niqe - sr_niqe


def quality_gate(
    lr: np.ndarray,
    sr: np.ndarray,
    *,
    tolerance: float = 0.0,
    crop_border: int = 0,
    params_path: str | os.PathLike[str] | None = None,
    model: NiqeModel | None = None,
) -> GateResult:
    """Compare NIQE of ``sr`` with NIQE of the MATLAB-bicubic upscale of ``lr`` to the size of ``sr``.

    Args:
        lr: the uint8 input, ``HxWx3`` RGB or ``HxW`` gray.
        sr: the uint8 output, same channels, larger (NIQE needs at least two 96x96 blocks).
        tolerance: NIQE points the output may exceed bicubic by before it is flagged.
        crop_border: pixels ignored at each border of both images (e.g. the scale factor).
        params_path / model: the NIQE pristine model (see :func:`superres.metrics.niqe.niqe`).
    """
    lr_a, sr_a = np.asarray(lr), np.asarray(sr)
    if lr_a.dtype != np.uint8 or sr_a.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got lr {lr_a.dtype} and sr {sr_a.dtype}")
    if lr_a.ndim != sr_a.ndim or lr_a.shape[2:] != sr_a.shape[2:]:
        raise ValueError(f"lr and sr must have the same channels, got shapes {lr_a.shape} and {sr_a.shape}")
    if sr_a.shape[0] < lr_a.shape[0] or sr_a.shape[1] < lr_a.shape[1]:
        raise ValueError(f"sr (shape {sr_a.shape}) must not be smaller than lr (shape {lr_a.shape})")
    m = model if model is not None else load_niqe_model(params_path)
    bicubic = imresize(lr_a, size=(sr_a.shape[0], sr_a.shape[1]))
    sr_score = niqe(sr_a, crop_border, "y", model=m)
    bic_score = niqe(np.asarray(bicubic), crop_border, "y", model=m)
    margin = bic_score - sr_score
    return GateResult(sr_score, bic_score, margin < -tolerance, margin)
