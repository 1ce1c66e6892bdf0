"""SRVGGNetCompact (Wang et al., Real-ESRGAN's compact model): a plain conv stack + pixel shuffle,
residual on a nearest-neighbour upscale of the input. Key layout matches the official checkpoints
(``body.{i}.weight``), so ``realesr-animevideov3.pth`` loads unchanged."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, register, shuffle_scale

_ACTS = ("prelu", "relu", "leakyrelu")


def _act(kind: str, num_feat: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1, inplace=True)
    raise ValueError(f"unknown activation {kind!r}; expected one of {_ACTS}")


class SRVGGNetCompact(SRNet):
    arch_name = "srvgg"

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        scale: int = 4,
        act: str = "prelu",
    ) -> None:
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, num_feat=num_feat,
            num_conv=num_conv, scale=scale, act=act,
        )
        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_feat, 3, 1, 1), _act(act, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _act(act, num_feat)]
        layers.append(nn.Conv2d(num_feat, out_channels * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        if base.shape[1] != out.shape[1]:  # 1 -> 3 channel models
            base = base.expand(-1, out.shape[1], -1, -1)
        return out + base


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if "body.0.weight" not in sd or sd["body.0.weight"].ndim != 4:
        return None
    if any(not k.startswith("body.") for k in sd):
        return None
    # Convs sit at even indices; activations at odd ones store weights only when they are PReLU.
    indices = {int(k.split(".")[1]) for k in sd if k.split(".")[1].isdigit()}
    last = max(indices)
    convs = set(range(0, last + 1, 2))
    if last < 2 or last % 2 or not convs <= indices:
        return None
    acts = indices - convs
    if acts and acts != set(range(1, last, 2)):
        return None
    first, final = sd["body.0.weight"], sd[f"body.{last}.weight"]
    if first.shape[2:] != (3, 3) or final.ndim != 4:
        return None
    num_feat, in_ch = int(first.shape[0]), int(first.shape[1])
    num_conv = (last - 2) // 2
    act = "prelu" if acts else "relu"  # relu and leakyrelu store nothing: relu is assumed
    for out_ch in (3, 1, in_ch):
        s = shuffle_scale(int(final.shape[0]), out_ch)
        if s:
            return dict(in_channels=in_ch, out_channels=out_ch, num_feat=num_feat, num_conv=num_conv, scale=s, act=act)
    return None


SPEC = register(
    ArchSpec(
        name="srvgg",
        title="SRVGGNetCompact (Real-ESRGAN compact)",
        build=SRVGGNetCompact,
        detect=_detect,
        receptive_field=lambda hp: int(hp["num_conv"]) + 2,
    )
)
