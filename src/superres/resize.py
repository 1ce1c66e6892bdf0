"""MATLAB-compatible bicubic ``imresize`` for numpy arrays and torch tensors.

The super-resolution literature makes its low-resolution test images with MATLAB
``imresize(img, 1/s, 'bicubic')``. Any other resampler (PIL, OpenCV, ``torch.nn.functional.interpolate``)
gives different pixels and shifts PSNR by tenths of a dB, so benchmarks, degradations and metrics all go
through this module. The procedure (checked bit-exactly on all 57 Set5/Set14 LR files, see
``shared/data/README.md``):

* Keys' cubic kernel (a = -0.5); when shrinking by ``k < 1`` the kernel is stretched for antialiasing,
  ``w(d) = k * cubic(k * d)`` with support ``4 / k``;
* output sample ``x`` (1-based) sits at source position ``u = x / k + 0.5 * (1 - 1 / k)``; the taps are
  ``floor(u - width / 2) + (0 .. ceil(width) + 1)``, weights normalised to sum 1;
* source indices outside the image are clamped to the edge (``border="replicate"``, the default). That is
  what the benchmark LR files need; a mirrored border changes their border pixels by up to 11 levels.
  The MATLAB R2021a NIQE reference value, however, is only reproduced with a mirrored border
  (``aux = [1:n, n:-1:1]``, ``border="symmetric"``), so recent MATLAB releases evidently mirror
  (see :mod:`superres.metrics.niqe`);
* one 1-D pass per axis, the axis with the smaller scale first (rows first when equal, like MATLAB);
* uint8 images are rounded (half up) and clipped to 0..255 after *each* pass, as MATLAB does for uint8.

The per-axis weights and source indices are built once per call (``(n_out, taps)`` matrices).
numpy inputs are resampled by accumulating the taps in MATLAB's order (bit-exact, memory ~ output size);
torch inputs use a dense ``(n_out, n_in)`` matrix per axis and ``matmul``, so the result is differentiable
and fast on any device (the matrices cost ``n_out * n_in`` elements: fine for training crops and ordinary
photos; very large images are cheaper through the numpy path).
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar, overload

import numpy as np
import torch

__all__ = ["imresize", "modcrop", "bicubic_degrade", "resize_weights"]

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)
Border = Literal["replicate", "symmetric"]

# Output sizes ``in * scale`` within this of an integer are taken as that integer: ``255 * (1 / 3)`` must
# give 85, whatever the last bit of ``1 / 3`` is.
_SIZE_EPS = 1e-9


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


def resize_weights(
    n_in: int, n_out: int, scale: float, antialias: bool = True, border: Border = "replicate"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output weights and 0-based source indices, both ``(n_out, taps)``, as MATLAB's ``contributions``.

    Indices are already mapped into ``0 .. n_in - 1``: clamped (``"replicate"``) or mirrored with the edge
    sample repeated (``"symmetric"``). Taps whose weight is zero for every output are dropped (MATLAB drops
    them too; it does not change any sum).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width = kernel_width / scale
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    ind = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - ind
    if scale < 1 and antialias:
        weights = scale * _cubic(scale * dist)
    else:
        weights = _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    ind0 = ind.astype(np.int64) - 1
    if border == "replicate":
        indices = np.clip(ind0, 0, n_in - 1)
    elif border == "symmetric":
        aux = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
        indices = aux[np.mod(ind0, 2 * n_in)]
    else:
        raise ValueError(f"border must be 'replicate' or 'symmetric', got {border!r}")
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _dense_matrix(weights: np.ndarray, indices: np.ndarray, n_in: int) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of one pass (repeated border taps summed into the edge column)."""
    mat = np.zeros((weights.shape[0], n_in), dtype=np.float64)
    rows = np.repeat(np.arange(weights.shape[0]), weights.shape[1])
    np.add.at(mat, (rows, indices.ravel()), weights.ravel())
    return mat


def _output_size(
    in_hw: tuple[int, int], scale: float | None, size: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output (H, W) and per-axis scale, as MATLAB: ``ceil(in * scale)``, or ``out / in`` for a given size."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale= or size=")
    if size is not None:
        oh, ow = (int(size[0]), int(size[1]))
        if oh < 1 or ow < 1:
            raise ValueError(f"output size must be positive, got {size}")
        return (oh, ow), (oh / in_hw[0], ow / in_hw[1])
    assert scale is not None
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out = []
    for n in in_hw:
        v = n * scale
        r = round(v)
        out.append(int(r) if abs(v - r) < _SIZE_EPS * max(1.0, v) else int(math.ceil(v)))
    return (out[0], out[1]), (float(scale), float(scale))


def _round_clip(a: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8 conversion for non-negative halves: round half up, clip to 0..255."""
    return np.clip(np.floor(a + 0.5), 0, 255)


def _resize_axis_np(img: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """One 1-D pass on float64 data, summing taps in MATLAB's order."""
    moved = np.moveaxis(img, axis, 0)
    shape = (weights.shape[0],) + (1,) * (moved.ndim - 1)
    out = np.zeros((weights.shape[0],) + moved.shape[1:], dtype=np.float64)
    for t in range(weights.shape[1]):
        out += weights[:, t].reshape(shape) * moved[indices[:, t]]
    return np.moveaxis(out, 0, axis)


def _pass_order(scales: tuple[float, float]) -> list[int]:
    """MATLAB resizes the axis with the smaller scale factor first (stable: rows first on a tie)."""
    return sorted(range(2), key=lambda i: scales[i])


def _imresize_np(
    img: np.ndarray,
    scale: float | None,
    size: tuple[int, int] | None,
    round_per_pass: bool | None,
    border: Border,
) -> np.ndarray:
    if img.ndim not in (2, 3):
        raise ValueError(f"numpy images must be HxW or HxWxC, got shape {img.shape}")
    is_uint8 = img.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(img.dtype, np.floating)):
        raise TypeError(f"numpy images must be uint8 or floating point, got {img.dtype}")
    if round_per_pass is None:
        round_per_pass = is_uint8
    (oh, ow), scales = _output_size((img.shape[0], img.shape[1]), scale, size)
    out_hw = (oh, ow)
    data = img.astype(np.float64)
    for axis in _pass_order(scales):
        w, ind = resize_weights(img.shape[axis], out_hw[axis], scales[axis], border=border)
        data = _resize_axis_np(data, axis, w, ind)
        if round_per_pass:
            data = _round_clip(data)
    if is_uint8 and round_per_pass:
        return data.astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        return data.astype(img.dtype, copy=False)
    return data


def _imresize_torch(
    img: torch.Tensor,
    scale: float | None,
    size: tuple[int, int] | None,
    round_per_pass: bool | None,
    border: Border,
) -> torch.Tensor:
    if img.ndim < 2:
        raise ValueError(f"tensors must be ...xHxW, got shape {tuple(img.shape)}")
    is_uint8 = img.dtype == torch.uint8
    if not (is_uint8 or img.is_floating_point()):
        raise TypeError(f"tensors must be floating point or uint8, got {img.dtype}")
    if round_per_pass is None:
        round_per_pass = is_uint8
    h, w = img.shape[-2], img.shape[-1]
    (oh, ow), scales = _output_size((h, w), scale, size)
    dtype = torch.float64 if is_uint8 else img.dtype
    data = img.to(dtype)
    in_hw, out_hw = (h, w), (oh, ow)
    for axis in _pass_order(scales):
        wts, ind = resize_weights(in_hw[axis], out_hw[axis], scales[axis], border=border)
        mat = torch.from_numpy(_dense_matrix(wts, ind, in_hw[axis])).to(device=img.device, dtype=dtype)
        if axis == 0:
            data = torch.matmul(mat, data)  # (oh, h) @ (..., h, w)
        else:
            data = torch.matmul(data, mat.transpose(0, 1))  # (..., h, w) @ (w, ow)
        if round_per_pass:
            data = torch.floor(data + 0.5).clamp_(0, 255)
    if is_uint8 and round_per_pass:
        return data.to(torch.uint8)
    return data


@overload
def imresize(
    img: np.ndarray,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    *,
    round_uint8_per_pass: bool | None = None,
    border: Border = "replicate",
) -> np.ndarray: ...


@overload
def imresize(
    img: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    *,
    round_uint8_per_pass: bool | None = None,
    border: Border = "replicate",
) -> torch.Tensor: ...


def imresize(
    img: np.ndarray | torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    *,
    round_uint8_per_pass: bool | None = None,
    border: Border = "replicate",
) -> np.ndarray | torch.Tensor:
    """Resize like MATLAB ``imresize(img, scale)`` / ``imresize(img, [h w])`` with antialiased bicubic.

    Args:
        img: numpy ``HxW`` or ``HxWxC`` (uint8 or float), or a torch tensor ``...xHxW`` (float, or uint8).
        scale: factor for both axes; the output size is ``ceil(in * scale)`` as in MATLAB.
        size: explicit output ``(height, width)``; the per-axis scale is then ``out / in``.
        round_uint8_per_pass: round half up and clip to 0..255 after each 1-D pass. Default: on for uint8
            input (MATLAB's uint8 behaviour; reproduces the benchmark LR files bit-exactly), off for float.
        border: ``"replicate"`` (clamp; the benchmark LR files) or ``"symmetric"`` (mirror, as recent MATLAB
            releases; used for MATLAB-parity NIQE).

    Returns:
        numpy: uint8 when the input is uint8 and rounding is on; float64 for uint8 input with rounding off
        (round it yourself); otherwise the input's float dtype. torch: same rules, on the input's device;
        float results keep the autograd graph.
    """
    if isinstance(img, torch.Tensor):
        return _imresize_torch(img, scale, size, round_uint8_per_pass, border)
    return _imresize_np(np.asarray(img), scale, size, round_uint8_per_pass, border)


def modcrop(img: ArrayOrTensor, scale: int) -> ArrayOrTensor:
    """Crop at the top-left corner so height and width are multiples of ``scale`` (the benchmark protocol).

    numpy images are ``HxW[xC]``; tensors are ``...xHxW``.
    """
    s = int(scale)
    if s < 1 or s != scale:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if isinstance(img, torch.Tensor):
        h, w = img.shape[-2], img.shape[-1]
        return img[..., : h - h % s, : w - w % s]
    h, w = img.shape[0], img.shape[1]
    return img[: h - h % s, : w - w % s]


def bicubic_degrade(hr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """The literature's LR image: MATLAB bicubic downscale by ``1/scale`` of the modcropped HR, as uint8."""
    hr = np.asarray(hr_uint8)
    if hr.dtype != np.uint8:
        raise TypeError(f"bicubic_degrade expects a uint8 image, got {hr.dtype}")
    out = imresize(modcrop(hr, scale), 1.0 / scale)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    return out
