"""RRDBNet (Wang et al., ESRGAN; the generator of Real-ESRGAN). Residual-in-residual dense blocks at LR,
then nearest x2 upsampling steps with convs. Scales 1 and 2 fold the input with pixel-unshuffle first, as
the official x2/x1 models do. Key layout matches the official (new-style) checkpoints."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, register

_LRELU = 0.2


class DenseBlock(nn.Module):
    """Five convs, each seeing the block input and every earlier output; scaled residual."""

    def __init__(self, num_feat: int, num_grow: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow, num_grow, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow, num_grow, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow, num_grow, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), _LRELU))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow: int) -> None:
        super().__init__()
        self.rdb1 = DenseBlock(num_feat, num_grow)
        self.rdb2 = DenseBlock(num_feat, num_grow)
        self.rdb3 = DenseBlock(num_feat, num_grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(SRNet):
    arch_name = "rrdbnet"

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow: int = 32,
        scale: int = 4,
    ) -> None:
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, num_feat=num_feat,
            num_block=num_block, num_grow=num_grow, scale=scale,
        )
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet supports scale 1, 2 or 4, not {scale}")
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), _LRELU)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), _LRELU)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), _LRELU))


def _detect(sd: StateDict) -> dict[str, Any] | None:
    keys = ("conv_first.weight", "conv_body.weight", "conv_up1.weight", "conv_up2.weight", "conv_hr.weight",
            "conv_last.weight", "body.0.rdb1.conv1.weight")
    if not all(k in sd for k in keys):
        return None
    first = sd["conv_first.weight"]
    num_feat = int(first.shape[0])
    out_ch = int(sd["conv_last.weight"].shape[0])
    num_grow = int(sd["body.0.rdb1.conv1.weight"].shape[0])
    num_block = count_indexed(sd, "body.")
    folded = int(first.shape[1])
    # in_channels * unshuffle^2 == folded; assume image channels == output channels first.
    for unshuffle, scale in ((1, 4), (2, 2), (4, 1)):
        if folded == out_ch * unshuffle * unshuffle:
            return dict(in_channels=out_ch, out_channels=out_ch, num_feat=num_feat, num_block=num_block,
                        num_grow=num_grow, scale=scale)
    return dict(in_channels=folded, out_channels=out_ch, num_feat=num_feat, num_block=num_block,
                num_grow=num_grow, scale=4)


def _rf(hp: dict[str, Any]) -> int:
    # conv_first + 15 convs per RRDB + conv_body run on the (possibly pixel-unshuffled) grid; the HR convs
    # add < 2 LR pixels. At scales 1 and 2 each grid pixel spans 4 or 2 input pixels.
    unshuffle = {4: 1, 2: 2, 1: 4}[int(hp["scale"])]
    return (2 + 15 * int(hp["num_block"]) + 2) * unshuffle


SPEC = register(
    ArchSpec(
        name="rrdbnet",
        title="RRDBNet (ESRGAN / Real-ESRGAN)",
        build=RRDBNet,
        detect=_detect,
        size_multiple=lambda hp: {4: 1, 2: 2, 1: 4}[int(hp["scale"])],
        receptive_field=_rf,
        extra_activations=lambda hp, feat: 3 * feat * int(hp["scale"]) ** 2,  # upsampling convs at HR size
    )
)
