"""BT.601 (studio range, 16-235) colour conversions with MATLAB ``rgb2ycbcr`` / ``ycbcr2rgb`` conventions.

Super-resolution papers report PSNR/SSIM on the Y channel of MATLAB's ``rgb2ycbcr``; using another "Y"
(full-range JPEG YCbCr, YIQ, ``rgb2gray``) moves PSNR by up to ~1.3 dB, so the exact matrix lives here.

Conventions (as MATLAB):

* numpy uint8 RGB in -> values on the 0..255 scale; :func:`rgb_to_ycbcr` / :func:`ycbcr_to_rgb` return uint8
  (rounded half up, clipped), :func:`rgb_to_y` returns the *unrounded* float64 Y (the metric protocol).
* numpy float RGB is taken to be in [0, 1]; :func:`rgb_to_y` still returns Y on the 0..255 scale (float64),
  the full conversions return float64 on the [0, 1] scale (MATLAB's double behaviour).
* torch tensors are float ``...x3xHxW`` in [0, 1]; results stay on the [0, 1] scale and differentiable.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb", "RGB_TO_YCBCR", "YCBCR_OFFSET"]

# Rows: Y, Cb, Cr. Applied to RGB in [0, 1], giving values on the 0..255 scale before the offset.
RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)


def _check_rgb_np(img: np.ndarray) -> None:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")


def _check_rgb_torch(img: torch.Tensor) -> None:
    if img.ndim < 3 or img.shape[-3] != 3:
        raise ValueError(f"expected a ...x3xHxW RGB tensor, got shape {tuple(img.shape)}")
    if not img.is_floating_point():
        raise TypeError(f"expected a floating point tensor in [0, 1], got {img.dtype}")


def _unit_float(img: np.ndarray) -> np.ndarray:
    """RGB as float64 in [0, 1]: uint8 is divided by 255, floats are assumed already in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float64)
    raise TypeError(f"expected uint8 or floating point RGB, got {img.dtype}")


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)


def rgb_to_y(img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Luma Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1] (the PSNR/SSIM protocol's Y).

    numpy: ``HxWx3`` uint8 (0..255) or float ([0, 1]) -> ``HxW`` float64 on the 0..255 scale, not rounded.
    torch: ``...x3xHxW`` float in [0, 1] -> ``...x1xHxW`` on the [0, 1] scale (Y / 255).
    """
    if isinstance(img, torch.Tensor):
        _check_rgb_torch(img)
        c = torch.as_tensor(RGB_TO_YCBCR[0] / 255.0, dtype=img.dtype, device=img.device)
        y = (img * c.view(3, 1, 1)).sum(dim=-3, keepdim=True)
        return y + 16.0 / 255.0
    arr = np.asarray(img)
    _check_rgb_np(arr)
    rgb = _unit_float(arr)
    return 16.0 + rgb @ RGB_TO_YCBCR[0]


def rgb_to_ycbcr(img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """MATLAB ``rgb2ycbcr``: uint8 -> uint8 (rounded); float [0, 1] -> float64 [0, 1]; torch -> [0, 1]."""
    if isinstance(img, torch.Tensor):
        _check_rgb_torch(img)
        m = torch.as_tensor(RGB_TO_YCBCR / 255.0, dtype=img.dtype, device=img.device)
        off = torch.as_tensor(YCBCR_OFFSET / 255.0, dtype=img.dtype, device=img.device)
        out = torch.einsum("ij,...jhw->...ihw", m, img)
        return out + off.view(3, 1, 1)
    arr = np.asarray(img)
    _check_rgb_np(arr)
    ycc = _unit_float(arr) @ RGB_TO_YCBCR.T + YCBCR_OFFSET  # 0..255 scale
    if arr.dtype == np.uint8:
        return _to_uint8(ycc)
    return ycc / 255.0


def ycbcr_to_rgb(img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """MATLAB ``ycbcr2rgb`` (inverse of :func:`rgb_to_ycbcr`): uint8 -> uint8; float [0, 1] -> float64 [0, 1].

    Float results are not clipped (out-of-gamut YCbCr gives RGB outside [0, 1]), as in MATLAB.
    """
    if isinstance(img, torch.Tensor):
        _check_rgb_torch(img)
        m = torch.as_tensor(_YCBCR_TO_RGB * 255.0, dtype=img.dtype, device=img.device)
        off = torch.as_tensor(YCBCR_OFFSET / 255.0, dtype=img.dtype, device=img.device)
        return torch.einsum("ij,...jhw->...ihw", m, img - off.view(3, 1, 1))
    arr = np.asarray(img)
    _check_rgb_np(arr)
    if arr.dtype == np.uint8:
        rgb = (arr.astype(np.float64) - YCBCR_OFFSET) @ _YCBCR_TO_RGB.T * 255.0
        return _to_uint8(rgb)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"expected uint8 or floating point YCbCr, got {arr.dtype}")
    return (arr.astype(np.float64) * 255.0 - YCBCR_OFFSET) @ _YCBCR_TO_RGB.T
