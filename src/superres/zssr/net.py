"""The image-specific network: small, fully convolutional, residual over the bicubic-upscaled input.

ZSSR (Shocher et al., CVPR 2018) uses 8 convolutions of 64 channels with ReLU between them and learns only
the residual that bicubic interpolation misses. Being fully convolutional it trains on small crops and
runs on the whole image. On a CPU the width is the knob that trades quality for steps per second, so it
is a parameter (the default 32 does about four times the steps of 64 in the same time).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ZSSRNet"]


class ZSSRNet(nn.Module):
    """``depth`` 3x3 convolutions (``width`` channels, ReLU between), output added to the input."""

    def __init__(self, channels: int = 3, width: int = 32, depth: int = 8) -> None:
        super().__init__()
        if depth < 2 or width < 1:
            raise ValueError(f"ZSSRNet needs depth >= 2 and width >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.channels, self.width, self.depth = channels, width, depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
