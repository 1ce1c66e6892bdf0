"""SRMD (Zhang, Zuo, Zhang, CVPR 2018): one plain 12-layer CNN for many degradations.

The LR image is stacked with constant "degradation maps": a 15-dim PCA code of the blur kernel and,
for SRMD (not the noise-free SRMDNF), the noise level sigma/255. Only the bicubic-degradation code is
built in (:data:`BICUBIC_DEGRADATION`, the numbers the upstream ncnn port feeds its models), so this
network is a bicubic super-resolver whose denoising strength is the ``noise_level`` hyper-parameter
(sigma on the 0-255 scale; upstream's ncnn tool offers 0-10, the network was trained on 0-75).

Why a module wraps the maps: callers pass an RGB image like for every other network; the extra input
channels are an internal detail. The maps are constant, so tiling is exact with the conv receptive field.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, register, shuffle_scale

PCA_DIMS = 15
NUM_CONVS = 12
MAX_NOISE = 75
# PCA code of the bicubic degradation kernel, as fed by nihui/srmd-ncnn-vulkan (srmd_preproc.comp):
# model data that the converted weights were trained with, not code.
BICUBIC_DEGRADATION = (
    -1.12360956e-08, -1.36899159e-08, 1.85637958e-02, 2.86066886e-08, 3.35292965e-02,
    8.37272935e-08, -2.54424009e-07, -3.16234976e-02, -1.35169253e-02, -1.10466090e-08,
    3.84753793e-02, 3.79465739e-08, -2.44916752e-01, -8.02213490e-01, -5.40549755e-01,
)


class SRMD(SRNet):
    """``noise_level=None`` is SRMDNF (no noise map); an int 0-75 is SRMD denoising that much."""

    arch_name = "srmd"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 128, scale: int = 4,
                 noise_level: int | None = 0) -> None:
        if noise_level is not None and not 0 <= int(noise_level) <= MAX_NOISE:
            raise ValueError(f"SRMD noise_level must be 0-{MAX_NOISE} (sigma on 0-255) or None, not {noise_level}")
        super().__init__(in_channels=in_channels, out_channels=out_channels, num_feat=num_feat, scale=scale,
                         noise_level=noise_level)
        maps = list(BICUBIC_DEGRADATION) + ([] if noise_level is None else [int(noise_level) / 255.0])
        self.register_buffer("maps", torch.tensor(maps, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        cin = in_channels + len(maps)
        layers: list[nn.Module] = []
        for i in range(NUM_CONVS):
            last = i == NUM_CONVS - 1
            layers.append(nn.Conv2d(cin if i == 0 else num_feat, out_channels * scale * scale if last else num_feat,
                                    3, 1, 1))
        self.convs = nn.ModuleList(layers)
        self.relu = nn.ReLU(inplace=True)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        y = torch.cat([x, self.maps.to(x.dtype).expand(n, -1, h, w)], dim=1)
        for conv in self.convs[:-1]:
            y = self.relu(conv(y))
        return self.upsampler(self.convs[-1](y))


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if count_indexed(sd, "convs.", ".weight") != NUM_CONVS or any(not k.startswith("convs.") for k in sd):
        return None
    first, last = sd["convs.0.weight"], sd[f"convs.{NUM_CONVS - 1}.weight"]
    extra = {PCA_DIMS: None, PCA_DIMS + 1: 0}
    for in_ch in (3, 1):
        noise = extra.get(int(first.shape[1]) - in_ch, -1)
        s = shuffle_scale(int(last.shape[0]), in_ch)
        if noise != -1 and s:
            # the noise level is not in the weights: 0 unless the file's metadata says otherwise
            return dict(in_channels=in_ch, out_channels=in_ch, num_feat=int(first.shape[0]), scale=s,
                        noise_level=noise)
    return None


SPEC = register(
    ArchSpec(
        name="srmd",
        title="SRMD / SRMDNF (multiple-degradation SR, bicubic kernel)",
        build=SRMD,
        detect=_detect,
        receptive_field=lambda hp: NUM_CONVS,
    )
)
