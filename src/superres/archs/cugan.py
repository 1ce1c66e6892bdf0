"""Real-CUGAN (bilibili/ailab, "UpCunet2x/3x/4x"): two cascaded U-Nets of unpadded convolutions with
squeeze-and-excitation gates; the second refines the first one's upscaled output.

The three scales share the second U-Net and differ in the first one's last layer and in what follows:

* 2x: UNet1 ends in a 4x4 stride-2 transposed conv to RGB; output = UNet2(y1) + crop(y1, 20).
* 3x: UNet1 ends in a 5x5 stride-3 transposed conv (pad 2) to RGB; same cascade.
* 4x: UNet1 ends in a 4x4 stride-2 transposed conv to 64 *features*; UNet2 maps 64 -> 64; the sum goes
  through a 3x3 conv to 12 channels, a 1-pixel crop and a 2x pixel shuffle, and the *nearest-neighbour*
  4x input is added (a residual the ncnn runtime adds outside the graph, upstream inside ``forward``).

``se=False`` is the "models-nose" variant (same layers, no SE gates). ``pro=True`` is upstream's
handling of the "pro" weights: they were trained on pixels mapped to [0.15, 0.85], so the input is
``x * 0.7 + 0.15`` and the output ``(y - 0.15) / 0.7`` (bilibili/ailab ``upcunet_v3.py``). The ncnn
runtime (realcugan-ncnn-vulkan, the wheel's binding) feeds pro graphs plain [0, 1] pixels -- reported
upstream as a bug (nihui/realcugan-ncnn-vulkan issue #52, open) -- so ``pro=False`` reproduces the ncnn
runtime and ``pro=True`` the model authors.

Why the padding and crop live in ``forward``: the unpadded layers consume 18 (2x), 14 (3x) or 19 (4x) LR
pixels per side -- the ncnn runtime's ``prepadding`` -- and the stride-2 levels need an even (2x, 4x) or
a multiple-of-4 (3x) size, so the input is edge-padded and the output cropped back to exactly scale x.
Edge (replicate) padding, where upstream reflects: a reflect pad fails on inputs smaller than the pad and
would make the traced ONNX graph depend on the example size; it changes only the context of border
pixels. The SE gates average over the *whole* tile, so a tile's output depends on the tile: the
descriptor says ``tiling="internal"`` (the engine runs whole images) and ``size_multiple`` 2 or 4 (the
engine pads odd sizes, so exported graphs need no size-dependent branch).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, has_all, register

PAD = 18  # LR pixels each side at 2x (kept for callers of the 2x-only module)
PREPADDING = {2: 18, 3: 14, 4: 19}  # LR pixels each side (realcugan-ncnn-vulkan's prepadding)
SIZE_MULTIPLE = {2: 2, 3: 4, 4: 2}
PRO_GAIN, PRO_OFFSET = 0.7, 0.15


class SEControl(Protocol):
    """What answers the SE gates while superres.inference.se_bands runs a U-Net in bands of rows: the whole
    image's channel means (the band alone would average only itself)."""

    def __call__(self, se: "SE", x: torch.Tensor) -> torch.Tensor:
        """An eager gate on its NCHW map."""

    def engine_gate(self, key: int, src: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor],
                    mean: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The engine plan's gate (inference.fast._UNetPlan) on its (h, w, C) map."""


SE_CONTROL: ContextVar[SEControl | None] = ContextVar("se_control", default=None)


class SE(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean over H, W of x))))."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        control = SE_CONTROL.get()
        if control is not None:
            return control(self, x)
        return self.gate(x, x.mean(dim=(2, 3)))

    def gate(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """x times the gate of channel means ``mean`` (B, C)."""
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(mean))))
        return x * g[:, :, None, None]


def _gate(channels: int, se: bool) -> nn.Module:
    return SE(channels, 8) if se else nn.Identity()


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def _crop(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[:, :, n:-n, n:-n]


def run_padded(core: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, pad: int, multiple: int, scale: int) -> torch.Tensor:
    """What the ncnn runtimes do around these unpadded graphs: edge-pad ``pad`` pixels a side (plus the
    bottom/right rows that make the size a multiple of ``multiple``; 0 through the engine, which pads to
    ``size_multiple`` itself), run ``core``, crop the output to ``scale`` x the input."""
    h, w = x.shape[2:]
    ph, pw = -h % multiple, -w % multiple
    return core(F.pad(x, (pad, pad + pw, pad, pad + ph), mode="replicate"))[:, :, : scale * h, : scale * w]


# The first U-Net's last layer per scale: (out channels or None for RGB, kernel, stride, padding).
UNET1_OUT = {2: (None, 4, 2, 3), 3: (None, 5, 3, 2), 4: (64, 4, 2, 3)}


class UNet1(nn.Module):
    def __init__(self, cin: int, cout: int, se: bool = True, kernel: int = 4, stride: int = 2, pad: int = 3) -> None:
        super().__init__()
        self.conv1a, self.conv1b = nn.Conv2d(cin, 32, 3), nn.Conv2d(32, 64, 3)
        self.down = nn.Conv2d(64, 64, 2, 2)
        self.conv2a, self.conv2b = nn.Conv2d(64, 128, 3), nn.Conv2d(128, 64, 3)
        self.se = _gate(64, se)
        self.up = nn.ConvTranspose2d(64, 64, 2, 2)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.out = nn.ConvTranspose2d(64, cout, kernel, stride, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _lrelu(self.conv1b(_lrelu(self.conv1a(x))))
        x2 = self.se(_lrelu(self.conv2b(_lrelu(self.conv2a(_lrelu(self.down(x1)))))))
        y = _lrelu(self.conv3(_crop(x1, 4) + _lrelu(self.up(x2))))
        return self.out(y)


class UNet2(nn.Module):
    def __init__(self, cin: int, cout: int, se: bool = True) -> None:
        super().__init__()
        self.conv1a, self.conv1b = nn.Conv2d(cin, 32, 3), nn.Conv2d(32, 64, 3)
        self.down1 = nn.Conv2d(64, 64, 2, 2)
        self.conv2a, self.conv2b = nn.Conv2d(64, 64, 3), nn.Conv2d(64, 128, 3)
        self.se2 = _gate(128, se)
        self.down2 = nn.Conv2d(128, 128, 2, 2)
        self.conv3a, self.conv3b = nn.Conv2d(128, 256, 3), nn.Conv2d(256, 128, 3)
        self.se3 = _gate(128, se)
        self.up3 = nn.ConvTranspose2d(128, 128, 2, 2)
        self.conv4a, self.conv4b = nn.Conv2d(128, 64, 3), nn.Conv2d(64, 64, 3)
        self.se4 = _gate(64, se)
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


class RealCUGAN(SRNet):
    arch_name = "cugan"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, scale: int = 2, se: bool = True,
                 pro: bool = False) -> None:
        if scale not in UNET1_OUT:
            raise ValueError(f"Real-CUGAN exists at x2, x3 and x4, not x{scale}")
        if scale == 4 and in_channels != out_channels:
            raise ValueError("Real-CUGAN x4 adds the nearest-upscaled input: in_channels must equal out_channels")
        hp: dict[str, Any] = dict(in_channels=in_channels, out_channels=out_channels, scale=scale)
        if not se:
            hp["se"] = False
        if pro:
            hp["pro"] = True
        super().__init__(**hp)
        self.pad, self.multiple, self.pro = PREPADDING[scale], SIZE_MULTIPLE[scale], bool(pro)
        feat, kernel, stride, pad = UNET1_OUT[scale]
        mid = feat or out_channels
        self.unet1 = UNet1(in_channels, mid, se, kernel, stride, pad)
        self.unet2 = UNet2(mid, mid, se)
        self.final = nn.Conv2d(64, 4 * out_channels, 3) if scale == 4 else None

    def core(self, x: torch.Tensor) -> torch.Tensor:
        """The ncnn graph itself: input padded by ``PREPADDING[scale]`` (size a multiple of 2, or 4 at 3x);
        output ``scale`` x the unpadded size (at 4x without the nearest-neighbour residual)."""
        y1 = self.unet1(x)
        y = self.unet2(y1) + _crop(y1, 20)
        if self.final is not None:
            y = F.pixel_shuffle(_crop(self.final(y), 1), 2)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x * PRO_GAIN + PRO_OFFSET if self.pro else x
        y = run_padded(self.core, z, self.pad, self.multiple, self.scale)
        if self.pro:
            y = (y - PRO_OFFSET) / PRO_GAIN
        if self.scale == 4:
            y = y + F.interpolate(x, scale_factor=4, mode="nearest")
        return y


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(sd, "unet1.out.weight", "unet2.out.weight", "unet1.conv1a.weight"):
        return None
    cin = int(sd["unet1.conv1a.weight"].shape[1])
    mid, k = int(sd["unet1.out.weight"].shape[1]), int(sd["unet1.out.weight"].shape[2])
    if "final.weight" in sd:
        scale, cout = 4, int(sd["final.weight"].shape[0]) // 4
    else:
        scale, cout = (3 if k == 5 else 2), mid
    hp: dict[str, Any] = dict(in_channels=cin, out_channels=cout, scale=scale)
    if "unet2.se4.fc1.weight" not in sd:
        hp["se"] = False
    return hp


SPEC = register(
    ArchSpec(
        name="cugan",
        title="Real-CUGAN x2/x3/x4 (cascaded U-Nets with SE gates)",
        build=RealCUGAN,
        detect=_detect,
        tiling="internal",
        size_multiple=lambda hp: SIZE_MULTIPLE.get(int(hp.get("scale", 2)), 2),
        # the whole-image pass holds both U-Nets' maps: measured peaks (engine, 512 x 512, fp32) 4442 / 9914 /
        # 5862 bytes per LR pixel at x2 / x3 / x4; these bring the common estimate just above them
        extra_activations=lambda hp, feat: {2: 680, 3: 1990, 4: 890}.get(int(hp.get("scale", 2)), 1990),
    )
)
