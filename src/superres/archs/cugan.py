"""Real-CUGAN 2x (bilibili/ailab, "UpCunet2x"): two cascaded U-Nets of unpadded convolutions with
squeeze-and-excitation gates; the second refines the first one's 2x output.

Why the padding and crop live in ``forward``: the unpadded layers consume 18 LR pixels per side and the
two stride-2 levels need an even size, so the input is edge-padded and the output cropped back to exactly
2x. Edge (replicate) padding, where upstream reflects: a reflect pad of 18 fails on inputs under 19 pixels
and would make the traced ONNX graph depend on the example size; it changes only the context of border
pixels. The SE gates average over the *whole* tile, so a tile's output depends on the tile: the
descriptor says ``tiling="internal"`` (the engine runs whole images) and ``size_multiple=2`` (the engine
pads odd sizes, so exported graphs need no size-dependent branch).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, has_all, register

PAD = 18  # LR pixels each side


class SE(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean over H, W of x))))."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * g[:, :, None, None]


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def _crop(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[:, :, n:-n, n:-n]


class UNet1(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1a, self.conv1b = nn.Conv2d(cin, 32, 3), nn.Conv2d(32, 64, 3)
        self.down = nn.Conv2d(64, 64, 2, 2)
        self.conv2a, self.conv2b = nn.Conv2d(64, 128, 3), nn.Conv2d(128, 64, 3)
        self.se = SE(64, 8)
        self.up = nn.ConvTranspose2d(64, 64, 2, 2)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.out = nn.ConvTranspose2d(64, cout, 4, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _lrelu(self.conv1b(_lrelu(self.conv1a(x))))
        x2 = self.se(_lrelu(self.conv2b(_lrelu(self.conv2a(_lrelu(self.down(x1)))))))
        y = _lrelu(self.conv3(_crop(x1, 4) + _lrelu(self.up(x2))))
        return self.out(y)


class UNet2(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1a, self.conv1b = nn.Conv2d(cin, 32, 3), nn.Conv2d(32, 64, 3)
        self.down1 = nn.Conv2d(64, 64, 2, 2)
        self.conv2a, self.conv2b = nn.Conv2d(64, 64, 3), nn.Conv2d(64, 128, 3)
        self.se2 = SE(128, 8)
        self.down2 = nn.Conv2d(128, 128, 2, 2)
        self.conv3a, self.conv3b = nn.Conv2d(128, 256, 3), nn.Conv2d(256, 128, 3)
        self.se3 = SE(128, 8)
        self.up3 = nn.ConvTranspose2d(128, 128, 2, 2)
        self.conv4a, self.conv4b = nn.Conv2d(128, 64, 3), nn.Conv2d(64, 64, 3)
        self.se4 = SE(64, 8)
        self.up4 = nn.ConvTranspose2d(64, 64, 2, 2)
        self.conv5 = nn.Conv2d(64, 64, 3)
        self.out = nn.Conv2d(64, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _lrelu(self.conv1b(_lrelu(self.conv1a(x))))
        x2 = self.se2(_lrelu(self.conv2b(_lrelu(self.conv2a(_lrelu(self.down1(x1)))))))
        x3 = self.se3(_lrelu(self.conv3b(_lrelu(self.conv3a(_lrelu(self.down2(x2)))))))
        x4 = self.se4(_lrelu(self.conv4b(_lrelu(self.conv4a(_crop(x2, 4) + _lrelu(self.up3(x3)))))))
        x5 = _lrelu(self.conv5(_crop(x1, 16) + _lrelu(self.up4(x4))))
        return self.out(x5)


class RealCUGAN2x(SRNet):
    arch_name = "cugan"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, scale: int = 2) -> None:
        if scale != 2:
            raise ValueError(f"only the 2x Real-CUGAN network is implemented, not x{scale}")
        super().__init__(in_channels=in_channels, out_channels=out_channels, scale=scale)
        self.unet1 = UNet1(in_channels, out_channels)
        self.unet2 = UNet2(out_channels, out_channels)

    def core(self, x: torch.Tensor) -> torch.Tensor:
        """The ncnn graph itself: input padded by 18 (even size), output 2x the unpadded size."""
        y1 = self.unet1(x)
        return self.unet2(y1) + _crop(y1, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ph, pw = h % 2, w % 2  # 0 through the engine (size_multiple 2); direct odd-size calls still work
        y = self.core(F.pad(x, (PAD, PAD + pw, PAD, PAD + ph), mode="replicate"))
        return y[:, :, : 2 * h, : 2 * w]


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(sd, "unet1.out.weight", "unet2.out.weight", "unet2.se4.fc1.weight"):
        return None
    return dict(in_channels=int(sd["unet1.conv1a.weight"].shape[1]), out_channels=int(sd["unet2.out.weight"].shape[0]),
                scale=2)


SPEC = register(
    ArchSpec(
        name="cugan",
        title="Real-CUGAN 2x (cascaded U-Nets with SE gates)",
        build=RealCUGAN2x,
        detect=_detect,
        tiling="internal",
        size_multiple=lambda hp: 2,
    )
)
