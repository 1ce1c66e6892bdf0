"""Discriminators for GAN fine-tuning: a VGG-style classifier (SRGAN/ESRGAN) and a U-Net with spectral
normalisation (Real-ESRGAN) that judges every pixel.

Both return raw logits for :class:`superres.train.losses.GANLoss`. The U-Net uses the original
``torch.nn.utils.spectral_norm`` (weights stored as ``weight_orig``/``weight_u``/``weight_v``) and names its
layers ``conv0`` .. ``conv9`` because that is the layout of the published Real-ESRGAN discriminator files,
so a user can fine-tune from one of them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from ..errors import SuperresError

__all__ = ["DISCRIMINATORS", "UNetDiscriminatorSN", "VGGStyleDiscriminator", "build_discriminator"]


class VGGStyleDiscriminator(nn.Module):
    """Strided-conv classifier for ``input_size`` square crops -> ``N x 1`` logits.

    Each stage is a 3x3 conv then a 4x4 stride-2 conv (BatchNorm and LeakyReLU 0.2 after each but the
    first), channels ``base * 2^i`` capped at ``8 base``, until the map is 4x4; then a 100-unit dense layer
    and the logit. ``input_size`` must be ``4 * 2^k`` (k >= 1; ESRGAN uses 128) and inputs must have
    exactly that size, because the dense layer's width depends on it."""

    def __init__(self, in_channels: int = 3, base: int = 64, input_size: int = 128) -> None:
        super().__init__()
        stages = math.log2(input_size / 4) if input_size >= 8 else -1
        if stages != int(stages) or stages < 1:
            raise SuperresError(
                f"VGG-style discriminator input_size must be 4 * 2^k (8, 16, ..., 128, 256), got {input_size}"
            )
        self.input_size = int(input_size)
        layers: list[nn.Module] = []
        ch_in = in_channels
        for i in range(int(stages)):
            ch = base * min(2**i, 8)
            layers += [nn.Conv2d(ch_in, ch, 3, 1, 1, bias=i == 0)]
            if i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers += [
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ch, ch, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch_in = ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(ch_in * 4 * 4, 100), nn.LeakyReLU(0.2, inplace=True), nn.Linear(100, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"this discriminator takes {self.input_size}x{self.input_size} crops, "
                f"got {tuple(x.shape[-2:])}"
            )
        return self.classifier(self.features(x).flatten(1))


class UNetDiscriminatorSN(nn.Module):
    """U-Net discriminator with spectral normalisation -> ``N x 1 x H x W`` per-pixel logits.

    Three stride-2 downsampling convs (``base`` -> ``8 base`` channels), three bilinear x2 upsampling stages
    with (``skip=True``) additive skips from the encoder, then two 3x3 convs and the 1-channel logit map.
    Per-pixel realism gives the generator local feedback, which suits the mixed degradations of real
    images; spectral norm keeps this stronger critic stable. H and W must be multiples of 8."""

    def __init__(self, in_channels: int = 3, base: int = 64, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        b = base
        self.conv0 = nn.Conv2d(in_channels, b, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(b, b * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(b * 2, b * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(b * 4, b * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(b * 8, b * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(b * 4, b * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(b * 2, b, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(b, b, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(b, b, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(b, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(
                f"U-Net discriminator input H and W must be multiples of 8, got {tuple(x.shape[-2:])}"
            )

        def act(t: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(t, 0.2)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip:
            x6 = x6 + x0
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)


DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "vgg_style": VGGStyleDiscriminator,
    "unet_sn": UNetDiscriminatorSN,
}
_ALIASES = {
    "vgg": "vgg_style",
    "vggstylediscriminator": "vgg_style",
    "unet": "unet_sn",
    "unetdiscriminatorsn": "unet_sn",
}


def build_discriminator(name: str, **kwargs: Any) -> nn.Module:
    """``vgg_style`` (alias ``vgg``) or ``unet_sn`` (alias ``unet``) with its keyword arguments."""
    import inspect

    key = str(name).lower()
    key = _ALIASES.get(key, key)
    cls = DISCRIMINATORS.get(key)
    if cls is None:
        raise SuperresError(
            f"unknown discriminator {name!r}; known: {', '.join(DISCRIMINATORS)} (aliases vgg, unet)"
        )
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise SuperresError(
            f"unknown argument(s) {', '.join(unknown)} for the {name!r} discriminator; "
            f"known: {', '.join(known)}"
        )
    return cls(**kwargs)
