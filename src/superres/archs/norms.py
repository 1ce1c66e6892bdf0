"""Normalisations the community's convolutional transformers share (SAFMN, OmniSR, RealPLKSR).

``ChannelLayerNorm`` normalises each pixel over its channels on an NCHW map (the "channels_first"
LayerNorm of ConvNeXt), with parameters named ``weight`` and ``bias`` as upstream checkpoints store
them. It is written with ``mean`` over dim 1 rather than a permute to NHWC and ``F.layer_norm``: the
same arithmetic, no layout copies, and it exports to ONNX as plain ops.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (per pixel), eps 1e-6 as upstream."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        centred = x - mu
        var = centred.pow(2).mean(1, keepdim=True)
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]
