"""PLKSR (Lee & Yoo, 2024, "Partial Large Kernel CNNs for Efficient Super-Resolution") and RealPLKSR, the
neosr variant the community trains for real-world images.

Sources and licences: PLKSR from github.com/dslisleedh/PLKSR (MIT, ``LICENSE``); RealPLKSR from
github.com/neosr-project/neosr (Apache-2.0, ``license.txt``). Written here from the paper and the
checkpoints' key layout, so both load with ``strict=True``:

- PLKSR: ``feats.0`` (3x3 conv), ``feats.{1..n}`` blocks of ``channe_mixer.{0,2}`` (upstream's
  spelling; CCM 3x3+1x1, ICCM 1x1+3x3 or DCCM 3x3+3x3 with GELU), ``lk.conv`` (the partial large kernel:
  a k x k conv on the first ``split_ratio`` of the channels), ``attn.f.0`` (element-wise attention, a
  sigmoid-gated 3x3 conv, optional) and ``refine`` (1x1); ``feats.{n+1}`` the 3x3 conv to ``3 * s^2``.
- RealPLKSR: the same blocks with ``channel_mixer`` (DCCM with Mish), an optional channel LayerNorm
  (``layer_norm``) before, a GroupNorm (``norm``, 4 groups, when there is no LayerNorm) after; a dropout
  slot at ``feats.{n+1}`` (no weights) and the last conv at ``feats.{n+2}``; ``to_img`` a pixel shuffle or
  DySample (``to_img.offset`` / ``scope`` / ``end_conv`` / ``init_pos``: learned sampling offsets).

Both add the input, repeated ``s^2`` times along channels, before the pixel shuffle (a nearest-neighbour
skip). Only the plain ("PLK") large kernel is supported; the paper's sparse and rectangular ablations
are refused by detection. PLKSR is fully convolutional (tiling "safe", receptive field from the kernel
sizes). RealPLKSR's GroupNorm takes statistics over the whole input, and DySample samples at learned,
unbounded offsets, so tiles differ from the whole image (tiling "discouraged").
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, has_all, register, shuffle_scale
from .norms import ChannelLayerNorm

CCM_TYPES = ("CCM", "ICCM", "DCCM")


def _mixer(dim: int, kind: str, act: type[nn.Module]) -> nn.Sequential:
    """Channel mixer: two convs around an activation; ``kind`` says which of them is 3x3."""
    k1, k2 = {"CCM": (3, 1), "ICCM": (1, 3), "DCCM": (3, 3)}[kind]
    return nn.Sequential(
        nn.Conv2d(dim, dim * 2, k1, 1, k1 // 2), act(), nn.Conv2d(dim * 2, dim, k2, 1, k2 // 2)
    )


class PartialLargeKernel(nn.Module):
    """A k x k conv over the first ``channels`` channels; the rest pass through (``lk.conv``)."""

    def __init__(self, channels: int, kernel_size: int, with_idt: bool = False) -> None:
        super().__init__()
        self.channels, self.with_idt = channels, with_idt
        self.conv = nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = x[:, : self.channels], x[:, self.channels :]
        y = self.conv(head)
        if self.with_idt:
            y = y + head
        return torch.cat([y, tail], dim=1)


class ElementwiseAttention(nn.Module):
    """x * sigmoid(conv3x3(x)) (``attn.f.0``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f(x)


class PLKBlock(nn.Module):
    def __init__(
        self, dim: int, ccm_type: str, kernel_size: int, partial: int, use_ea: bool, with_idt: bool
    ) -> None:
        super().__init__()
        self.channe_mixer = _mixer(dim, ccm_type, nn.GELU)  # sic: the official key name
        self.lk = PartialLargeKernel(partial, kernel_size, with_idt)
        self.attn = ElementwiseAttention(dim) if use_ea else nn.Identity()
        self.refine = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.attn(self.lk(self.channe_mixer(x)))) + x


class RealPLKBlock(nn.Module):
    def __init__(
        self, dim: int, kernel_size: int, partial: int, use_ea: bool, norm_groups: int, layer_norm: bool
    ) -> None:
        super().__init__()
        self.layer_norm = ChannelLayerNorm(dim) if layer_norm else nn.Identity()
        self.channel_mixer = _mixer(dim, "DCCM", nn.Mish)
        self.lk = PartialLargeKernel(partial, kernel_size)
        self.attn = ElementwiseAttention(dim) if use_ea else nn.Identity()
        self.refine = nn.Conv2d(dim, dim, 1)
        self.norm = nn.Identity() if layer_norm else nn.GroupNorm(norm_groups, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lk(self.channel_mixer(self.layer_norm(x)))
        return self.norm(self.refine(self.attn(y))) + x


class DySample(nn.Module):
    """Learned-offset upsampler (Liu et al. 2023, "Learning to Upsample by Learning to Sample").

    Each output pixel bilinearly samples the input at its nearest-neighbour position plus an offset
    predicted per group of channels (``offset`` scaled by the gate ``sigmoid(scope) * 0.5``), starting
    from the sub-pixel centres in ``init_pos``; ``end_conv`` (1x1) maps the sampled channels to RGB."""

    def __init__(
        self, channels: int, out_channels: int, scale: int, groups: int, end_convolution: bool
    ) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"DySample: {channels} channels do not split into {groups} groups")
        self.scale, self.groups = scale, groups
        n = 2 * groups * scale * scale
        self.offset = nn.Conv2d(channels, n, 1)
        self.scope = nn.Conv2d(channels, n, 1, bias=False)
        self.end_conv = nn.Conv2d(channels, out_channels, 1) if end_convolution else None
        # Sub-pixel centres (-(s-1)/2 .. (s-1)/2) / s: x varies along the last axis, y along the one before.
        h = (torch.arange(scale, dtype=torch.float32) - (scale - 1) / 2) / scale
        ys, xs = torch.meshgrid(h, h, indexing="ij")
        pos = torch.stack([xs, ys]).unsqueeze(1).expand(2, groups, scale, scale)
        self.register_buffer("init_pos", pos.reshape(1, n, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s, g = self.scale, self.groups
        offset = self.offset(x) * torch.sigmoid(self.scope(x)) * 0.5 + self.init_pos
        gx = torch.arange(w, device=x.device, dtype=x.dtype) + 0.5
        gy = torch.arange(h, device=x.device, dtype=x.dtype) + 0.5
        base = torch.stack([gx.view(1, w).expand(h, w), gy.view(h, 1).expand(h, w)]).view(1, 2, 1, h, w)
        norm = torch.tensor([w, h], device=x.device, dtype=x.dtype).view(1, 2, 1, 1, 1)
        coords = 2 * (base + offset.view(b, 2, g * s * s, h, w)) / norm - 1
        coords = F.pixel_shuffle(coords.reshape(b, 2 * g * s * s, h, w), s).view(b, 2, g, s * h, s * w)
        grid = coords.permute(0, 2, 3, 4, 1).reshape(b * g, s * h, s * w, 2)
        out = F.grid_sample(
            x.reshape(b * g, c // g, h, w), grid, mode="bilinear", padding_mode="border", align_corners=False
        ).view(b, c, s * h, s * w)
        return self.end_conv(out) if self.end_conv is not None else out


def _check(dim: int, split_ratio: float, ccm_type: str | None = None) -> int:
    if ccm_type is not None and ccm_type not in CCM_TYPES:
        raise ValueError(f"unknown ccm_type {ccm_type!r}; expected one of {CCM_TYPES}")
    partial = int(dim * split_ratio)
    if not 0 < partial <= dim:
        raise ValueError(f"split_ratio {split_ratio} leaves no channels for the large kernel")
    return partial


class PLKSR(SRNet):
    arch_name = "plksr"

    def __init__(
        self,
        scale: int = 4,
        dim: int = 64,
        n_blocks: int = 28,
        ccm_type: str = "CCM",
        kernel_size: int = 17,
        split_ratio: float = 0.25,
        use_ea: bool = True,
        with_idt: bool = False,
    ) -> None:
        super().__init__(
            scale=scale,
            dim=dim,
            n_blocks=n_blocks,
            ccm_type=ccm_type,
            kernel_size=kernel_size,
            split_ratio=split_ratio,
            use_ea=use_ea,
            with_idt=with_idt,
        )
        partial = _check(dim, split_ratio, ccm_type)
        self.feats = nn.Sequential(
            nn.Conv2d(3, dim, 3, 1, 1),
            *(PLKBlock(dim, ccm_type, kernel_size, partial, use_ea, with_idt) for _ in range(n_blocks)),
            nn.Conv2d(dim, 3 * scale * scale, 3, 1, 1),
        )
        self.to_img = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_img(self.feats(x) + x.repeat_interleave(self.scale * self.scale, dim=1))


class RealPLKSR(SRNet):
    arch_name = "realplksr"

    def __init__(
        self,
        scale: int = 4,
        dim: int = 64,
        n_blocks: int = 28,
        kernel_size: int = 17,
        split_ratio: float = 0.25,
        use_ea: bool = True,
        norm_groups: int = 4,
        dysample: bool = False,
        layer_norm: bool = False,
    ) -> None:
        super().__init__(
            scale=scale,
            dim=dim,
            n_blocks=n_blocks,
            kernel_size=kernel_size,
            split_ratio=split_ratio,
            use_ea=use_ea,
            norm_groups=norm_groups,
            dysample=dysample,
            layer_norm=layer_norm,
        )
        partial = _check(dim, split_ratio)
        self.feats = nn.Sequential(
            nn.Conv2d(3, dim, 3, 1, 1),
            *(
                RealPLKBlock(dim, kernel_size, partial, use_ea, norm_groups, layer_norm)
                for _ in range(n_blocks)
            ),
            nn.Dropout2d(0.0),  # a training-time slot upstream; it holds the index n+1
            nn.Conv2d(dim, 3 * scale * scale, 3, 1, 1),
        )
        if dysample:
            self.to_img: nn.Module = DySample(
                3 * scale * scale, 3, scale, groups=3 if scale % 2 else 4, end_convolution=scale != 1
            )
        else:
            self.to_img = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_img(self.feats(x) + x.repeat_interleave(self.scale * self.scale, dim=1))


def _blocks(sd: StateDict) -> int:
    n = 0
    while f"feats.{n + 1}.refine.weight" in sd:
        n += 1
    return n


def _common(sd: StateDict, last: int) -> dict[str, Any] | None:
    """dim, scale, blocks, kernel and split from the shapes shared by both variants."""
    first, lk = sd["feats.0.weight"], sd["feats.1.lk.conv.weight"]
    tail = sd.get(f"feats.{last}.weight")
    if first.ndim != 4 or int(first.shape[1]) != 3 or tail is None or lk.ndim != 4:
        return None
    dim = int(first.shape[0])
    scale = shuffle_scale(int(tail.shape[0]), 3)
    if scale is None:
        return None
    return dict(
        scale=scale,
        dim=dim,
        kernel_size=int(lk.shape[2]),
        split_ratio=int(lk.shape[0]) / dim,
        use_ea="feats.1.attn.f.0.weight" in sd,
    )


def _detect_plksr(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(
        sd,
        "feats.0.weight",
        "feats.1.lk.conv.weight",
        "feats.1.refine.weight",
        "feats.1.channe_mixer.0.weight",
        "feats.1.channe_mixer.2.weight",
    ):
        return None
    n = _blocks(sd)
    hp = _common(sd, n + 1)
    if hp is None:
        return None
    k1, k2 = (
        int(sd["feats.1.channe_mixer.0.weight"].shape[2]),
        int(sd["feats.1.channe_mixer.2.weight"].shape[2]),
    )
    kinds = {(3, 1): "CCM", (1, 3): "ICCM", (3, 3): "DCCM"}
    if (k1, k2) not in kinds:
        return None
    # with_idt (an identity added around the large kernel) leaves no trace in the weights: upstream's False
    return dict(hp, n_blocks=n, ccm_type=kinds[(k1, k2)], with_idt=False)


def _detect_realplksr(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(
        sd,
        "feats.0.weight",
        "feats.1.lk.conv.weight",
        "feats.1.refine.weight",
        "feats.1.channel_mixer.0.weight",
    ):
        return None
    n = _blocks(sd)
    hp = _common(sd, n + 2)
    if hp is None:
        return None
    layer_norm = "feats.1.layer_norm.weight" in sd
    if not layer_norm and "feats.1.norm.weight" not in sd:
        return None
    # norm_groups is not in the weights (GroupNorm's affine parameters are per channel): neosr's 4
    return dict(hp, n_blocks=n, norm_groups=4, dysample="to_img.init_pos" in sd, layer_norm=layer_norm)


def _extra(hp: dict[str, Any], feat: int) -> int:
    """The width is "dim" (the common estimate assumes 64 features), plus the mixer's 2 x dim hidden layer."""
    return max(0, 8 * int(hp["dim"]) - 6 * feat)


def _plksr_field(hp: dict[str, Any]) -> int:
    mixer = {"CCM": 1, "ICCM": 1, "DCCM": 2}[hp["ccm_type"]]
    per_block = mixer + int(hp["kernel_size"]) // 2 + (1 if hp["use_ea"] else 0)
    return 1 + int(hp["n_blocks"]) * per_block + 1


def _realplksr_field(hp: dict[str, Any]) -> int | None:
    if not hp["layer_norm"] or hp["dysample"]:
        return None  # GroupNorm statistics over the whole input; DySample's offsets are unbounded
    per_block = 2 + int(hp["kernel_size"]) // 2 + (1 if hp["use_ea"] else 0)
    return 1 + int(hp["n_blocks"]) * per_block + 1


SPEC_PLKSR = register(
    ArchSpec(
        name="plksr",
        title="PLKSR (Lee & Yoo, partial large kernel CNN)",
        build=PLKSR,
        detect=_detect_plksr,
        receptive_field=_plksr_field,
        extra_activations=_extra,
        licence="MIT",
    )
)

SPEC_REALPLKSR = register(
    ArchSpec(
        name="realplksr",
        title="RealPLKSR (neosr's real-world PLKSR)",
        build=RealPLKSR,
        detect=_detect_realplksr,
        supports_fp16=False,  # GroupNorm variant: not verified in fp16 (spandrel marks it unsupported)
        tiling="discouraged",
        receptive_field=_realplksr_field,
        extra_activations=_extra,
        licence="Apache-2.0",
    )
)
