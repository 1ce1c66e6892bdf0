"""waifu2x CUNet (nagadomi/waifu2x ``cunet``): two cascaded U-Nets of unpadded convolutions with
squeeze-and-excitation gates; the second refines the first one's output and adds it back. One network
per denoise level: the 2x models (no denoise, levels 0-3) and the 1x denoise-only models (levels 0-3).

Real-CUGAN's 2x network (:mod:`superres.archs.cugan`) descends from this one and has the same layers,
so the U-Net blocks are shared; the 1x models differ only in the first U-Net's last layer (a 3x3
convolution instead of the 4x4 stride-2 transposed one). The state-dict keys are ``stage1``/``stage2``
(not ``unet1``/``unet2``) so that a CUNet file is never detected as Real-CUGAN, nor the reverse.

Why padding and crop live in ``forward``: the unpadded layers consume 18 LR pixels per side at 2x and
28 at 1x, which is exactly the border upstream's runtime (nihui/waifu2x-ncnn-vulkan) adds outside the
graph ("prepadding" 18 / 28), edge-replicated; the two stride-2 levels need an input size that is even
at 2x and a multiple of 4 at 1x (the second U-Net runs at 1x resolution there), so the engine pads to
that multiple (``size_multiple``) and the output is cropped back to exactly ``scale`` times the input.
The SE gates average over the whole input, so a tile's output depends on the tile: ``tiling="internal"``
(the engine runs whole images), as for Real-CUGAN.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import ArchSpec, SRNet, StateDict, has_all, register
from .cugan import UNet1, UNet2, _crop, run_padded

PAD = {1: 28, 2: 18}  # LR pixels each side (upstream's prepadding)
MULTIPLE = {1: 4, 2: 2}  # the input size (before padding) must be a multiple of this


class CUNet(SRNet):
    arch_name = "cunet"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, scale: int = 2) -> None:
        if scale not in PAD:
            raise ValueError(f"waifu2x CUNet exists at 1x (denoise only) and 2x, not x{scale}")
        super().__init__(in_channels=in_channels, out_channels=out_channels, scale=scale)
        self.pad, self.multiple = PAD[scale], MULTIPLE[scale]
        self.stage1 = UNet1(in_channels, out_channels)
        if scale == 1:
            self.stage1.out = nn.Conv2d(64, out_channels, 3)  # type: ignore[assignment]
        self.stage2 = UNet2(out_channels, out_channels)

    def core(self, x: torch.Tensor) -> torch.Tensor:
        """The ncnn graph itself: input padded by PAD[scale] (size a multiple of MULTIPLE[scale])."""
        y1 = self.stage1(x)
        return self.stage2(y1) + _crop(y1, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_padded(self.core, x, self.pad, self.multiple, self.scale)


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(sd, "stage1.out.weight", "stage2.out.weight", "stage2.se4.fc1.weight"):
        return None
    out = sd["stage1.out.weight"]
    scale = 2 if tuple(out.shape[2:]) == (4, 4) else 1  # ConvTranspose2d(64, c, 4) vs Conv2d(64, c, 3)
    return dict(in_channels=int(sd["stage1.conv1a.weight"].shape[1]),
                out_channels=int(sd["stage2.out.weight"].shape[0]), scale=scale)


SPEC = register(
    ArchSpec(
        name="cunet",
        title="waifu2x CUNet 1x/2x (cascaded U-Nets with SE gates)",
        build=CUNet,
        detect=_detect,
        tiling="internal",
        size_multiple=lambda hp: MULTIPLE[int(hp.get("scale", 2))],
        # measured whole-image peaks (engine, 512 x 512, fp32): 4420 bytes per LR pixel at x2, 1413 at x1
        extra_activations=lambda hp, feat: 680 if int(hp.get("scale", 2)) == 2 else 0,
    )
)
