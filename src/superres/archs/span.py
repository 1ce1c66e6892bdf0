"""SPAN (Wan et al. 2024, "Swift Parameter-free Attention Network", NTIRE 2024 efficient-SR winner).

Inference form: the training-time re-parameterisable convolutions are already folded into plain 3x3
convolutions (that is what the official ncnn files hold). Each of the six blocks runs three 3x3 convs
with SiLU between them and gates ``conv3 + input`` by the parameter-free attention ``sigmoid(conv3) - 0.5``.
Four feature maps are concatenated and mixed by a 1x1 conv before a pixel-shuffle upsampler.

Input is normalised as upstream does, ``(x - mean) * img_range``; the output is *not* de-normalised (the
network learned to emit [0, 1] directly), which is why ``mean`` is part of the state dict.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, has_all, register, shuffle_scale

NUM_BLOCKS = 6  # fixed by the architecture: the concat taps blocks 1 and 6


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class SPAB(nn.Module):
    """One swift parameter-free attention block; also returns the first activation (a concat tap)."""

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = _conv3(num_feat, num_feat), _conv3(num_feat, num_feat), _conv3(num_feat, num_feat)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a1 = F.silu(self.c1(x))
        y = self.c3(F.silu(self.c2(a1)))
        return (y + x) * (torch.sigmoid(y) - 0.5), a1


class SPAN(SRNet):
    arch_name = "span"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 48, scale: int = 4,
                 img_range: float = 255.0) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, num_feat=num_feat, scale=scale,
                         img_range=img_range)
        self.img_range = float(img_range)
        self.register_buffer("mean", torch.zeros(1, in_channels, 1, 1))
        self.conv_first = _conv3(in_channels, num_feat)
        self.blocks = nn.ModuleList(SPAB(num_feat) for _ in range(NUM_BLOCKS))
        self.conv_body = _conv3(num_feat, num_feat)
        self.conv_cat = nn.Conv2d(4 * num_feat, num_feat, 1)
        self.conv_up = _conv3(num_feat, out_channels * scale * scale)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first((x - self.mean) * self.img_range)
        y, _ = self.blocks[0](feat)
        first_block = y
        tap = y
        for block in self.blocks[1:]:
            y, tap = block(y)
        body = self.conv_body(y)
        # tap is the last block's first activation (upstream's out_b5_2)
        mixed = self.conv_cat(torch.cat([feat, body, first_block, tap], dim=1))
        return self.upsampler(self.conv_up(mixed))


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(sd, "mean", "conv_first.weight", "conv_cat.weight", "conv_up.weight", "conv_body.weight"):
        return None
    if count_indexed(sd, "blocks.", ".c1.weight") != NUM_BLOCKS:
        return None
    num_feat, in_ch = (int(v) for v in sd["conv_first.weight"].shape[:2])
    for out_ch in (in_ch, 3, 1):
        s = shuffle_scale(int(sd["conv_up.weight"].shape[0]), out_ch)
        if s:
            # img_range is not in the weights: upstream's 255 unless the file's metadata says otherwise
            return dict(in_channels=in_ch, out_channels=out_ch, num_feat=num_feat, scale=s, img_range=255.0)
    return None


SPEC = register(
    ArchSpec(
        name="span",
        title="SPAN (swift parameter-free attention network)",
        build=SPAN,
        detect=_detect,
        # conv_first + 6 blocks x 3 convs + conv_body + conv_up (the 1x1 mix adds none)
        receptive_field=lambda hp: 1 + 3 * NUM_BLOCKS + 1 + 1,
    )
)
