"""waifu2x UpConv7 (nagadomi/waifu2x): six unpadded 3x3 convs (LeakyReLU 0.1) and a 4x4 stride-2
transposed conv; one network per style (anime art, photo) and denoise level (none, 0-3), always 2x.

Why the padding lives in ``forward``: the network shrinks its input by 7 pixels per side, and upstream
feeds it an edge-replicated border of 7 pixels; doing the same here makes the output exactly 2x the input
and lets the tiling engine treat it like any padded network (context 7 LR pixels).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, has_all, register

WIDTHS = (16, 32, 64, 128, 128, 256)
BORDER = 7  # LR pixels each side the unpadded layers consume (6 convs + the transposed conv's crop)


class UpConv7(SRNet):
    arch_name = "upconv7"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, scale: int = 2) -> None:
        if scale != 2:
            raise ValueError(f"UpConv7 is a 2x network, not x{scale}")
        super().__init__(in_channels=in_channels, out_channels=out_channels, scale=scale)
        chans = (in_channels, *WIDTHS)
        self.features = nn.ModuleList(nn.Conv2d(a, b, 3) for a, b in zip(chans[:-1], chans[1:]))
        self.upconv = nn.ConvTranspose2d(WIDTHS[-1], out_channels, 4, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pad(x, (BORDER,) * 4, mode="replicate")
        for conv in self.features:
            y = F.leaky_relu(conv(y), 0.1)
        return self.upconv(y)


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(sd, "upconv.weight", "upconv.bias") or count_indexed(sd, "features.", ".weight") != len(WIDTHS):
        return None
    return dict(in_channels=int(sd["features.0.weight"].shape[1]), out_channels=int(sd["upconv.weight"].shape[1]),
                scale=2)


SPEC = register(
    ArchSpec(
        name="upconv7",
        title="waifu2x UpConv7",
        build=UpConv7,
        detect=_detect,
        receptive_field=lambda hp: BORDER,
    )
)
