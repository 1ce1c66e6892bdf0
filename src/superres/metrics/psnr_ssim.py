"""PSNR and SSIM exactly as the super-resolution literature computes them.

The protocol (``shared/GUIDE.md``, "Protocol pins"): the SR output rounded to uint8; Y of BT.601 studio-range
YCbCr (``16 + 65.481 R + 128.553 G + 24.966 B`` on RGB in [0, 1], *not* rounded); ``crop`` pixels removed at
each border (``crop = scale``); float64 arithmetic; SSIM is Wang et al.'s MATLAB ``ssim_index``: 11x11
Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering, mean of the SSIM map.

Grayscale images (``HxW`` or ``HxWx1``) are their own Y. With ``y_channel=False`` an RGB pair gives PSNR from
the MSE over all three channels and SSIM as the mean of the three per-channel SSIMs (label those "RGB").

:func:`psnr_torch` and :func:`ssim_torch` are differentiable counterparts for training (float ``NxCxHxW`` in
[0, 1], no rounding); on the same pixels they agree with the numpy versions to float precision.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .color import rgb_to_y

__all__ = ["psnr", "ssim", "psnr_torch", "ssim_torch", "gaussian_window_1d"]

_SSIM_SIZE = 11
_SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def gaussian_window_1d(size: int = _SSIM_SIZE, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _prepare(sr: np.ndarray, hr: np.ndarray, crop: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair and return float64 ``HxWxC`` planes (C = 1 for Y/grayscale, 3 for RGB), cropped."""
    sr = np.asarray(sr)
    hr = np.asarray(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"image sizes differ: sr has shape {sr.shape}, hr has shape {hr.shape}")
    if sr.ndim not in (2, 3) or (sr.ndim == 3 and sr.shape[2] not in (1, 3)):
        raise ValueError(
            f"expected HxW, HxWx1 or HxWx3 images, got sr shape {sr.shape} and hr shape {hr.shape}"
        )
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise TypeError(
            f"expected uint8 images (round the SR output to uint8 first), got {sr.dtype} and {hr.dtype}"
        )
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    h, w = sr.shape[:2]
    if 2 * crop >= h or 2 * crop >= w:
        raise ValueError(f"crop={crop} leaves nothing of images with shape {sr.shape}")
    planes = []
    for img in (sr, hr):
        if img.ndim == 2:
            f = img.astype(np.float64)[:, :, None]
        elif img.shape[2] == 1:
            f = img.astype(np.float64)
        elif y_channel:
            f = np.asarray(rgb_to_y(img))[:, :, None]
        else:
            f = img.astype(np.float64)
        if crop:
            f = f[crop:-crop, crop:-crop]
        planes.append(f)
    return planes[0], planes[1]


def psnr(sr: np.ndarray, hr: np.ndarray, *, crop: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB (peak 255) of two uint8 images; ``inf`` when they are identical.

    Args:
        sr, hr: uint8 ``HxW``, ``HxWx1`` or ``HxWx3`` arrays of the same shape.
        crop: pixels removed at each border before comparing (the protocol uses the scale factor).
        y_channel: compare the BT.601 Y of RGB images (the protocol); ``False`` uses all RGB channels.
    """
    a, b = _prepare(sr, hr, crop, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0 * 255.0 / mse)


def _filter_valid(stack: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of ``(..., H, W)`` planes with the window ``outer(g, g)``."""
    k = g.shape[0]
    rows = np.lib.stride_tricks.sliding_window_view(stack, k, axis=-2) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=-1) @ g


def _ssim_plane(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> float:
    """MATLAB ``ssim_index`` of one float64 plane pair on the 0..255 scale."""
    c1 = (_K1 * 255.0) ** 2
    c2 = (_K2 * 255.0) ** 2
    m = _filter_valid(np.stack([a, b, a * a, b * b, a * b]), g)
    mu1, mu2 = m[0], m[1]
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1, s2, s12 = m[2] - mu1_sq, m[3] - mu2_sq, m[4] - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(ssim_map.mean())


def ssim(sr: np.ndarray, hr: np.ndarray, *, crop: int = 0, y_channel: bool = True) -> float:
    """SSIM (MATLAB ``ssim_index``) of two uint8 images; 1.0 when identical.

    Same arguments as :func:`psnr`. RGB with ``y_channel=False`` averages the per-channel SSIMs. The
    (cropped) images must be at least 11x11, the window size.
    """
    a, b = _prepare(sr, hr, crop, y_channel)
    if a.shape[0] < _SSIM_SIZE or a.shape[1] < _SSIM_SIZE:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {a.shape[:2]}")
    g = gaussian_window_1d()
    return float(np.mean([_ssim_plane(a[:, :, c], b[:, :, c], g) for c in range(a.shape[2])]))


def _prepare_torch(
    sr: torch.Tensor, hr: torch.Tensor, crop: int, y_channel: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape != hr.shape:
        raise ValueError(
            f"image sizes differ: sr has shape {tuple(sr.shape)}, hr has shape {tuple(hr.shape)}"
        )
    if sr.ndim != 4 or sr.shape[1] not in (1, 3):
        raise ValueError(
            f"expected NxCxHxW tensors with C in (1, 3), got sr shape {tuple(sr.shape)} "
            f"and hr shape {tuple(hr.shape)}"
        )
    if not (sr.is_floating_point() and hr.is_floating_point()):
        raise TypeError(f"expected float tensors in [0, 1], got {sr.dtype} and {hr.dtype}")
    if crop < 0 or 2 * crop >= sr.shape[-2] or 2 * crop >= sr.shape[-1]:
        raise ValueError(f"crop={crop} is invalid for tensors of shape {tuple(sr.shape)}")
    if y_channel and sr.shape[1] == 3:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)  # type: ignore[assignment]
    if crop:
        sr = sr[..., crop:-crop, crop:-crop]
        hr = hr[..., crop:-crop, crop:-crop]
    return sr, hr


def psnr_torch(
    sr: torch.Tensor, hr: torch.Tensor, *, crop: int = 0, y_channel: bool = True, data_range: float = 1.0
) -> torch.Tensor:
    """Differentiable PSNR per image, shape ``(N,)``; inputs float ``NxCxHxW`` on the ``data_range`` scale.

    No rounding to uint8 (so values differ slightly from :func:`psnr` on unrounded outputs). Identical
    images give ``inf``; as a loss use ``-psnr_torch`` or an MSE.
    """
    a, b = _prepare_torch(sr, hr, crop, y_channel)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range * data_range / mse)


def ssim_torch(
    sr: torch.Tensor, hr: torch.Tensor, *, crop: int = 0, y_channel: bool = True, data_range: float = 1.0
) -> torch.Tensor:
    """Differentiable SSIM per image (``ssim_index`` definition), shape ``(N,)``; RGB averages channels.

    SSIM is invariant to scaling images and ``data_range`` together, so [0, 1] inputs with ``data_range=1``
    give the same numbers as the 0..255 numpy version on the same (unrounded) pixels.
    """
    a, b = _prepare_torch(sr, hr, crop, y_channel)
    if a.shape[-2] < _SSIM_SIZE or a.shape[-1] < _SSIM_SIZE:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {tuple(a.shape[-2:])}")
    n, c = a.shape[0], a.shape[1]
    g = torch.as_tensor(gaussian_window_1d(), dtype=a.dtype, device=a.device)
    kh = g.view(1, 1, _SSIM_SIZE, 1).expand(5 * c, 1, _SSIM_SIZE, 1)
    kw = g.view(1, 1, 1, _SSIM_SIZE).expand(5 * c, 1, 1, _SSIM_SIZE)
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    m = F.conv2d(F.conv2d(stack, kh, groups=5 * c), kw, groups=5 * c)
    mu1, mu2, e11, e22, e12 = m.split(c, dim=1)
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1, s2, s12 = e11 - mu1_sq, e22 - mu2_sq, e12 - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return ssim_map.reshape(n, c, -1).mean(dim=2).mean(dim=1)
