"""EDSR (Lim et al., 2017): plain residual blocks without batch norm, a global skip, pixel-shuffle tail.

Key layout matches the official EDSR-PyTorch checkpoints, so ``edsr_baseline_x{2,3,4}`` and
``edsr_x{2,3,4}`` load with ``strict=True``: ``sub_mean``/``add_mean`` (frozen 1x1 convs that subtract /
add the DIV2K RGB mean), ``head.0``, ``body.{i}.body.{0,2}`` for the residual blocks, ``body.{n}`` for the
conv closing the body, ``tail.0.{0,2,..}`` for the upsampler convs and ``tail.1`` for the last conv.

Official models work on pixel values in [0, 255] (``rgb_range=255``); the module scales the library's
[0, 1] input by ``rgb_range`` and back, so the same weights obey the common I/O convention.
``res_scale`` is not stored in the weights: :func:`_detect` infers the published pairing (0.1 for the
256-wide EDSR, 1.0 otherwise). The mean-shift convs are counted as (frozen) parameters, as in the
official code; that is how the published counts (1,370K / 1,555K / 1,518K for the baseline) arise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, register

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv adding ``sign * rgb_range * mean``; a conv (not a buffer) to match official keys."""

    def __init__(self, rgb_range: float, sign: int, mean: tuple[float, ...] = DIV2K_RGB_MEAN) -> None:
        channels = len(mean)
        super().__init__(channels, channels, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
            self.bias.copy_(sign * float(rgb_range) * torch.tensor(mean))
        for p in self.parameters():
            p.requires_grad_(False)


def make_upsampler(scale: int, num_feat: int) -> nn.Sequential:
    """Official-layout upsampler: conv to 4x (or 9x) channels + pixel shuffle, repeated for 2^n scales."""
    layers: list[nn.Module] = []
    if scale in (2, 4, 8):
        for _ in range({2: 1, 4: 2, 8: 3}[scale]):
            layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"scale must be 2, 3, 4 or 8, not {scale}")
    return nn.Sequential(*layers)


def upsampler_scale(sd: StateDict, prefix: str, num_feat: int) -> int | None:
    """Scale of a ``make_upsampler`` stored under ``prefix`` (e.g. ``tail.0.``), from its conv shapes."""
    convs = [sd[f"{prefix}{i}.weight"] for i in range(0, 8, 2) if f"{prefix}{i}.weight" in sd]
    if not convs or any(w.ndim != 4 for w in convs):
        return None
    outs = [int(w.shape[0]) for w in convs]
    if len(convs) == 1 and outs[0] == 9 * num_feat:
        return 3
    if all(o == 4 * num_feat for o in outs) and len(convs) <= 3:
        return 2 ** len(convs)
    return None


class ResBlock(nn.Module):
    """conv-ReLU-conv with a scaled identity skip; ``body.{0,2}`` keys as in the official code."""

    def __init__(self, num_feat: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.res_scale + x


class EDSR(SRNet):
    arch_name = "edsr"

    def __init__(
        self,
        scale: int = 4,
        num_blocks: int = 16,
        num_feat: int = 64,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        channels: int = 3,
    ) -> None:
        super().__init__(scale=scale, num_blocks=num_blocks, num_feat=num_feat, res_scale=res_scale,
                         rgb_range=rgb_range, channels=channels)
        if channels != 3:
            raise ValueError("EDSR's mean shift is defined for RGB; channels must be 3")
        self.rgb_range = float(rgb_range)
        self.sub_mean = MeanShift(rgb_range, -1)
        self.head = nn.Sequential(nn.Conv2d(channels, num_feat, 3, 1, 1))
        self.body = nn.Sequential(*[ResBlock(num_feat, res_scale) for _ in range(num_blocks)],
                                  nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.tail = nn.Sequential(make_upsampler(scale, num_feat), nn.Conv2d(num_feat, channels, 3, 1, 1))
        self.add_mean = MeanShift(rgb_range, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x * self.rgb_range))
        x = self.tail(self.body(x) + x)
        return self.add_mean(x) / self.rgb_range


def detect_rgb_range(sd: StateDict) -> float | None:
    """rgb_range from the stored mean shift: ``sub_mean.bias = -rgb_range * mean`` (official: 255)."""
    bias = sd.get("sub_mean.bias")
    if bias is None or tuple(bias.shape) != (3,):
        return None
    if bias.is_meta:  # shapes only (e.g. a meta-device state dict): assume the official value
        return 255.0
    value = -float(bias[0]) / DIV2K_RGB_MEAN[0]
    if not value > 0:
        return None
    rounded = float(round(value))
    return rounded if abs(value - rounded) < 1e-3 * value else value


_MEAN_KEYS = ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias")


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not all(k in sd for k in (*_MEAN_KEYS, "head.0.weight", "body.0.body.0.weight", "tail.1.weight")):
        return None
    if any(k.startswith("body.0.body.0.body.") for k in sd):  # RCAN: groups of blocks
        return None
    head = sd["head.0.weight"]
    if head.ndim != 4 or head.shape[1] != 3:
        return None
    num_feat = int(head.shape[0])
    num_blocks = count_indexed(sd, "body.", ".body.0.weight")
    if f"body.{num_blocks}.weight" not in sd:
        return None
    scale = upsampler_scale(sd, "tail.0.", num_feat)
    rgb_range = detect_rgb_range(sd)
    if scale is None or rgb_range is None:
        return None
    res_scale = 0.1 if num_feat >= 256 else 1.0  # not stored; the published pairing
    return dict(scale=scale, num_blocks=num_blocks, num_feat=num_feat, res_scale=res_scale,
                rgb_range=rgb_range, channels=3)


def _rf(hp: dict[str, Any]) -> int:
    # head + 2 per block + body conv at LR, then <= 1 LR pixel per upsampler conv and the last conv.
    ups = 1 if int(hp["scale"]) == 3 else {2: 1, 4: 2, 8: 3}[int(hp["scale"])]
    return 1 + 2 * int(hp["num_blocks"]) + 1 + ups + 1


SPEC = register(
    ArchSpec(
        name="edsr",
        title="EDSR (Lim et al.)",
        build=EDSR,
        detect=_detect,
        receptive_field=_rf,
        in_channels_key="channels",
        out_channels_key="channels",
    )
)
