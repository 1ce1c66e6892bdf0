"""RCAN (Zhang et al., 2018): residual groups of residual channel-attention blocks (RCAB).

Key layout matches the official RCAN PyTorch release (EDSR-style framework): ``sub_mean``/``add_mean``,
``head.0``, ``body.{g}.body.{b}.body.{0,2}`` (RCAB convs), ``body.{g}.body.{b}.body.3.conv_du.{0,2}``
(channel attention squeeze/excite 1x1 convs), ``body.{g}.body.{n_blocks}`` (conv closing a group),
``body.{n_groups}`` (conv closing the body), ``tail.0.{0,2,..}`` (upsampler) and ``tail.1``.

Channel attention pools over the whole feature map, so the output depends on the whole input:
tiles never equal the full image exactly (``receptive_field`` None, tiling "discouraged").
Like EDSR, official weights expect [0, 255] pixels (``rgb_range=255``); the module rescales.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, register
from .edsr import MeanShift, detect_rgb_range, make_upsampler, upsampler_scale


class ChannelAttention(nn.Module):
    """Global average pool -> 1x1 squeeze -> ReLU -> 1x1 excite -> sigmoid gate (``conv_du`` keys)."""

    def __init__(self, num_feat: int, reduction: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(num_feat, num_feat // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // reduction, num_feat, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class RCAB(nn.Module):
    def __init__(self, num_feat: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(num_feat, num_feat, 3, 1, 1), ChannelAttention(num_feat, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ResidualGroup(nn.Module):
    def __init__(self, num_feat: int, num_blocks: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[RCAB(num_feat, reduction) for _ in range(num_blocks)],
                                  nn.Conv2d(num_feat, num_feat, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class RCAN(SRNet):
    arch_name = "rcan"

    def __init__(
        self,
        scale: int = 4,
        num_groups: int = 10,
        num_blocks: int = 20,
        num_feat: int = 64,
        reduction: int = 16,
        rgb_range: float = 255.0,
        channels: int = 3,
    ) -> None:
        super().__init__(scale=scale, num_groups=num_groups, num_blocks=num_blocks, num_feat=num_feat,
                         reduction=reduction, rgb_range=rgb_range, channels=channels)
        if channels != 3:
            raise ValueError("RCAN's mean shift is defined for RGB; channels must be 3")
        if num_feat % reduction:
            raise ValueError(f"num_feat ({num_feat}) must be divisible by reduction ({reduction})")
        self.rgb_range = float(rgb_range)
        self.sub_mean = MeanShift(rgb_range, -1)
        self.head = nn.Sequential(nn.Conv2d(channels, num_feat, 3, 1, 1))
        groups = [ResidualGroup(num_feat, num_blocks, reduction) for _ in range(num_groups)]
        self.body = nn.Sequential(*groups, nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.tail = nn.Sequential(make_upsampler(scale, num_feat), nn.Conv2d(num_feat, channels, 3, 1, 1))
        self.add_mean = MeanShift(rgb_range, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x * self.rgb_range))
        x = self.tail(self.body(x) + x)
        return self.add_mean(x) / self.rgb_range


_REQUIRED = ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias", "head.0.weight",
             "body.0.body.0.body.0.weight", "body.0.body.0.body.3.conv_du.0.weight", "tail.1.weight")


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not all(k in sd for k in _REQUIRED):
        return None
    head = sd["head.0.weight"]
    if head.ndim != 4 or head.shape[1] != 3:
        return None
    num_feat = int(head.shape[0])
    squeeze = int(sd["body.0.body.0.body.3.conv_du.0.weight"].shape[0])
    if squeeze <= 0 or num_feat % squeeze:
        return None
    num_groups = count_indexed(sd, "body.", ".body.0.body.0.weight")
    num_blocks = count_indexed(sd, "body.0.body.", ".body.0.weight")
    if f"body.{num_groups}.weight" not in sd or f"body.0.body.{num_blocks}.weight" not in sd:
        return None
    scale = upsampler_scale(sd, "tail.0.", num_feat)
    rgb_range = detect_rgb_range(sd)
    if scale is None or rgb_range is None:
        return None
    return dict(scale=scale, num_groups=num_groups, num_blocks=num_blocks, num_feat=num_feat,
                reduction=num_feat // squeeze, rgb_range=rgb_range, channels=3)


SPEC = register(
    ArchSpec(
        name="rcan",
        title="RCAN (Zhang et al.)",
        build=RCAN,
        detect=_detect,
        tiling="discouraged",
        receptive_field=lambda hp: None,
        in_channels_key="channels",
        out_channels_key="channels",
    )
)
