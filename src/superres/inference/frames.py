"""Whole video frames through an Upscaler's network, in float32 torch end to end.

Video and real-time frames are many, small and all the same size, so the still-image path's float64 colour
handling and per-call set-up cost more than a small network. Here:

* luma (1-channel) models get Y through the network and bicubic chroma (:func:`bicubic_upscale_planes`,
  the values of ``F.interpolate``'s bicubic, about three times faster on a CPU), with the BT.601 matrices
  of :mod:`superres.metrics.color`; the colour conversion, scaling and rounding are one matrix product;
* RGB models get the whole frame through ``Upscaler.forward`` (the fast CPU engine or the GPU), several
  frames stacked in one batch where asked, or tiles (the image path's tiler) when a frame is large, so
  memory stays bounded;
* an output size other than the network's is reached by one bicubic resize (antialiased when shrinking).

uint8 frames give uint8, uint16 frames (10/12/16-bit video) give uint16: no 8-bit round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .upscaler import UpscaleOptions

__all__ = ["bicubic_matrix", "bicubic_upscale_planes", "ycbcr_to_rgb255", "FrameUpscaler"]

#: Above this many LR pixels an RGB frame goes through the tiler: a 64-channel network at 1280x720 holds
#: several 236 MB activations at once, and the tiles keep a 720p -> 1440p run well under 1.5 GB.
WHOLE_FRAME_PIXELS = 640 * 360
#: LR tile side used above WHOLE_FRAME_PIXELS when the user gave none.
VIDEO_TILE = 384


def bicubic_matrix(n_in: int, scale: int) -> np.ndarray:
    """``(n_in * scale, n_in)`` weights of PyTorch's bicubic upsampling along one axis (A = -0.75,
    half-pixel centres, edge samples repeated), so that ``M @ x`` equals ``F.interpolate(..., "bicubic")``
    for an integer ``scale``."""

    def cubic(d: float, a: float = -0.75) -> float:
        d = abs(d)
        if d <= 1.0:
            return (a + 2.0) * d**3 - (a + 3.0) * d**2 + 1.0
        return a * d**3 - 5.0 * a * d**2 + 8.0 * a * d - 4.0 * a if d < 2.0 else 0.0

    m = np.zeros((n_in * scale, n_in), dtype=np.float64)
    for o in range(n_in * scale):
        t = (o + 0.5) / scale - 0.5
        i0 = int(np.floor(t))
        f = t - i0
        for k, d in enumerate((1.0 + f, f, 1.0 - f, 2.0 - f)):
            m[o, min(max(i0 - 1 + k, 0), n_in - 1)] += cubic(d)
    return m


@functools.lru_cache(maxsize=8)
def _bicubic_taps(scale: int) -> np.ndarray:
    """``(scale, 5)``: the five taps of each output phase, read off an interior row of the matrix."""
    return bicubic_matrix(8, scale)[4 * scale:5 * scale, 2:7]


def bicubic_upscale_planes(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``C x H x W`` float tensor -> ``C x sH x sW``, the values of ``F.interpolate(..., "bicubic")``.

    For an integer scale every output sample of one phase (its position modulo ``scale``) uses the same
    five taps (:func:`bicubic_matrix`'s interior rows) around its source pixel, so each axis is one small
    convolution with ``scale`` output channels after repeating two edge pixels, then an interleave."""
    s = int(scale)
    c, h, w = x.shape
    taps = torch.tensor(_bicubic_taps(s), dtype=x.dtype, device=x.device)  # (s, 5)
    rows = F.conv1d(F.pad(x.reshape(c * h, 1, w), (2, 2), mode="replicate"), taps[:, None, :])
    rows = rows.transpose(1, 2).reshape(c, 1, h, s * w)  # (c*h, s, w) -> interleaved columns
    out = F.conv2d(F.pad(rows, (0, 0, 2, 2), mode="replicate"), taps[:, None, :, None])  # (c, s, h, s*w)
    return out.permute(0, 2, 1, 3).reshape(c, s * h, s * w)


def ycbcr_to_rgb255() -> tuple[float, np.ndarray, np.ndarray]:
    """The inverse BT.601 conversion folded with the 0..255 output scale and the +0.5 of rounding: RGB =
    ``ky * Y + C @ (Cb, Cr) + bias`` (Y, Cb, Cr on the [0, 1] scale). Y's weight is the same for R, G and B
    (grey has Cb = Cr = neutral), so the network's luma is added once, broadcast over the channels."""
    from ..metrics.color import RGB_TO_YCBCR, YCBCR_OFFSET

    a = np.linalg.inv(RGB_TO_YCBCR) * 255.0 * 255.0
    bias = -a @ (YCBCR_OFFSET / 255.0) + 0.5
    return float(a[0, 0]), a[:, 1:], bias


class FrameUpscaler:
    """``__call__(frames)``: a list of H x W x 3 uint8/uint16 RGB frames -> the same number at ``size``
    (width, height; None = the network's scale), same dtype. Stateless per call: safe to share."""

    def __init__(self, up: Any, size: tuple[int, int] | None = None, *, tile: int | None = None) -> None:
        self.up = up
        self.size = size
        self.scale = int(up.scale)
        self.luma = up.descriptor.in_channels == 1
        self.tile = tile
        ky, chroma, bias = ycbcr_to_rgb255()
        self._ky = ky / 255.0
        self._chroma = torch.tensor(chroma / 255.0, dtype=torch.float32)
        self._bias = torch.tensor((bias - 0.5) / 255.0, dtype=torch.float32)[:, None]

    def _network_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W float [0, 1] -> N x 3 x sH x sW float (not clamped)."""
        if self.luma:
            from ..metrics.color import rgb_to_ycbcr

            outs = []
            for item in x:
                ycc = rgb_to_ycbcr(item)
                y = self._network_planes(ycc[None, :1].contiguous())[0]
                cbcr = bicubic_upscale_planes(ycc[1:], self.scale)
                hh, ww = cbcr.shape[-2:]
                rgb = torch.addmm(self._bias, self._chroma, cbcr.reshape(2, hh * ww))
                rgb.add_(y.reshape(1, hh * ww), alpha=self._ky)
                outs.append(rgb.reshape(3, hh, ww))
            return torch.stack(outs)
        return self._network_planes(x)

    def _network_planes(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        tile = self.tile
        if tile is None:
            tile = 0 if h * w <= WHOLE_FRAME_PIXELS else VIDEO_TILE
        if tile == 0 or (h <= tile and w <= tile):
            return self.up.forward(x)
        outs = []
        for item in x:  # the image path's tiler, writing rows into one float32 output
            planes = item.numpy()
            out = self.up.upscale_planes(planes, None, UpscaleOptions(tile=tile, overlap=8))
            outs.append(torch.from_numpy(out).permute(2, 0, 1))
        return torch.stack(outs)

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        if not frames:
            return []
        dtype = frames[0].dtype
        maxv = 65535.0 if dtype == np.uint16 else 255.0
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().mul_(1.0 / maxv)
            y = self._network_rgb(x)
            if self.size is not None and (y.shape[-1], y.shape[-2]) != tuple(self.size):
                w, h = self.size
                shrink = w < y.shape[-1] or h < y.shape[-2]
                y = F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False, antialias=shrink)
            y = y.clamp_(0.0, 1.0).mul_(maxv).add_(0.5).floor_()
            y = y.to(torch.int32 if dtype == np.uint16 else torch.uint8)
            out = y.permute(0, 2, 3, 1).contiguous().numpy()
        return [o.astype(dtype, copy=False) for o in out]


def frame_function(up: Any, size: tuple[int, int] | None = None, *, tile: int | None = None
                   ) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A :class:`FrameUpscaler` as a plain function (what the video pipeline takes)."""
    return FrameUpscaler(up, size, tile=tile)
