"""SRCNN (Dong et al., 2014/2016): three convolutions applied to a bicubic upscale of the input.

The paper feeds a bicubic-upscaled image to the network; here the module does that upscale itself
(``F.interpolate(..., mode="bicubic", align_corners=False)``) so it obeys the library's LR-in / HR-out
convention. Hyper-parameters follow the paper's notation: kernel sizes ``f1-f2-f3`` (9-5-5 by default)
and widths ``n1``/``n2`` (64/32). Convs are zero-padded to keep the size (the paper used valid
convolutions, which shrinks the output). Key layout ``conv{1,2,3}.{weight,bias}`` is the common PyTorch
one. The 1-channel 9-5-5 network has 57,281 parameters (57,184 weights + 97 biases; the paper's "57K");
the 9-1-5 network has 8,129 (8,032 weights + 97 biases).

The weights do not record the scale (SRCNN is the same network for every scale), so :func:`_detect`
reports :data:`DEFAULT_SCALE`; pass the scale the weights were trained for when building.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, register

DEFAULT_SCALE = 3  # the paper's main setting; not recoverable from the weights
_KEYS = frozenset(f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))


class SRCNN(SRNet):
    arch_name = "srcnn"

    def __init__(
        self,
        channels: int = 1,
        scale: int = DEFAULT_SCALE,
        n1: int = 64,
        n2: int = 32,
        f1: int = 9,
        f2: int = 5,
        f3: int = 5,
    ) -> None:
        super().__init__(channels=channels, scale=scale, n1=n1, n2=n2, f1=f1, f2=f2, f3=f3)
        if scale < 1:
            raise ValueError(f"scale must be >= 1, not {scale}")
        for f in (f1, f2, f3):
            if f % 2 == 0:
                raise ValueError(f"kernel sizes must be odd to keep the image size, got {(f1, f2, f3)}")
        self.conv1 = nn.Conv2d(channels, n1, f1, 1, f1 // 2)
        self.conv2 = nn.Conv2d(n1, n2, f2, 1, f2 // 2)
        self.conv3 = nn.Conv2d(n2, channels, f3, 1, f3 // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if set(sd) != _KEYS:
        return None
    w1, w2, w3 = sd["conv1.weight"], sd["conv2.weight"], sd["conv3.weight"]
    if w1.ndim != 4 or w2.ndim != 4 or w3.ndim != 4:
        return None
    channels = int(w1.shape[1])
    # SRCNN maps c -> c at the same size; ESPCN (same key names) ends in c * s^2 channels.
    if int(w3.shape[0]) != channels or w2.shape[1] != w1.shape[0] or w3.shape[1] != w2.shape[0]:
        return None
    kernels = [int(w.shape[2]) for w in (w1, w2, w3)]
    if any(k % 2 == 0 for k in kernels) or any(w.shape[2] != w.shape[3] for w in (w1, w2, w3)):
        return None
    return dict(channels=channels, scale=DEFAULT_SCALE, n1=int(w1.shape[0]), n2=int(w2.shape[0]),
                f1=kernels[0], f2=kernels[1], f3=kernels[2])


def _rf(hp: dict[str, Any]) -> int:
    # Conv radius at HR, converted to LR pixels, plus the bicubic kernel's 2 LR pixels each side.
    hr_radius = int(hp["f1"]) // 2 + int(hp["f2"]) // 2 + int(hp["f3"]) // 2
    return math.ceil(hr_radius / int(hp["scale"])) + 2


SPEC = register(
    ArchSpec(
        name="srcnn",
        title="SRCNN (Dong et al.)",
        build=SRCNN,
        detect=_detect,
        receptive_field=_rf,
        extra_activations=lambda hp, feat: 3 * feat * int(hp["scale"]) ** 2,  # every conv runs at HR size
        in_channels_key="channels",
        out_channels_key="channels",
    )
)
