"""SAFMN (Sun et al., ICCV 2023, "Spatially-Adaptive Feature Modulation for Efficient Image
Super-Resolution").

Source and licence: github.com/sunny2109/SAFMN, Apache-2.0 (``LICENSE/LICENSE``; the NVIDIA
non-commercial licence beside it covers BasicSR's StyleGAN2 CUDA ops, which SAFMN does not use). Written
here from the paper; the key layout is the official one, so SAFMN and SAFMN-L checkpoints (and the
community's SAFMN models on OpenModelDB) load with ``strict=True``:

``to_feat`` (3x3 conv), ``feats.{i}`` blocks of ``norm1`` / ``norm2`` (channel LayerNorms),
``safm.mfr.{l}`` (3x3 depthwise convs, one per level), ``safm.aggr`` (1x1), ``ccm.ccm.{0,2}``
(3x3 expand, 1x1 project), then ``to_img.0`` (3x3 conv to ``3 * scale^2``) and a pixel shuffle.

SAFM splits the channels into ``n_levels`` groups; group 0 runs a depthwise conv at full resolution,
group ``l`` is max-pooled by ``2^l``, convolved and brought back by nearest upsampling. The modulation
``GELU(aggr(...)) * x`` multiplies the input. The pooling grid is anchored at the image origin, so the
network is translation-variant at 8-pixel steps (``size_multiple`` 8; inputs are padded to it, as
spandrel does). The tiler starts every piece on that grid, so tiles see the same pooling cells as the
whole image and, with the receptive field as context, equal it exactly (tiling "safe"). Receptive field
per block: the coarsest level reaches 2 * 8 - 1 pixels, the CCM conv one more (130 LR pixels for the
8-block SAFMN; the default context is capped at 48, where overlapping tiles are blended).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, has_all, register, shuffle_scale
from .norms import ChannelLayerNorm


class SAFM(nn.Module):
    """Spatially-adaptive feature modulation: multi-scale depthwise features gate the input."""

    def __init__(self, dim: int, n_levels: int) -> None:
        super().__init__()
        if dim % n_levels:
            raise ValueError(f"dim ({dim}) must be divisible by n_levels ({n_levels})")
        self.n_levels = n_levels
        chunk = dim // n_levels
        self.mfr = nn.ModuleList(nn.Conv2d(chunk, chunk, 3, 1, 1, groups=chunk) for _ in range(n_levels))
        self.aggr = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        parts = x.chunk(self.n_levels, dim=1)
        out = [self.mfr[0](parts[0])]
        for level in range(1, self.n_levels):
            k = 2**level
            if h % k == 0 and w % k == 0:  # the padded case: a plain pool, cheaper and ONNX-friendly
                s = F.max_pool2d(parts[level], k)
            else:  # any other size, exactly as upstream's adaptive pooling
                s = F.adaptive_max_pool2d(parts[level], (h // k, w // k))
            s = F.interpolate(self.mfr[level](s), size=(h, w), mode="nearest")
            out.append(s)
        return F.gelu(self.aggr(torch.cat(out, dim=1))) * x


class CCM(nn.Module):
    """Convolutional channel mixer: 3x3 expand, GELU, 1x1 project (``ccm.0``, ``ccm.2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.ccm = nn.Sequential(nn.Conv2d(dim, hidden, 3, 1, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ccm(x)


class AttBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, n_levels: int) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.norm2 = ChannelLayerNorm(dim)
        self.safm = SAFM(dim, n_levels)
        self.ccm = CCM(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.safm(self.norm1(x)) + x
        return self.ccm(self.norm2(x)) + x


class SAFMN(SRNet):
    arch_name = "safmn"

    def __init__(
        self, scale: int = 4, dim: int = 36, n_blocks: int = 8, ffn_scale: float = 2.0, n_levels: int = 4
    ) -> None:
        super().__init__(scale=scale, dim=dim, n_blocks=n_blocks, ffn_scale=ffn_scale, n_levels=n_levels)
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1)
        hidden = int(dim * ffn_scale)
        self.feats = nn.Sequential(*(AttBlock(dim, hidden, n_levels) for _ in range(n_blocks)))
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.to_feat(x)
        return self.to_img(self.feats(feat) + feat)


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(
        sd,
        "to_feat.weight",
        "feats.0.norm1.weight",
        "feats.0.safm.mfr.0.weight",
        "feats.0.safm.aggr.weight",
        "feats.0.ccm.ccm.0.weight",
        "feats.0.ccm.ccm.2.weight",
        "to_img.0.weight",
    ):
        return None
    dim, in_ch = (int(v) for v in sd["to_feat.weight"].shape[:2])
    if in_ch != 3:
        return None
    scale = shuffle_scale(int(sd["to_img.0.weight"].shape[0]), 3)
    n_levels = count_indexed(sd, "feats.0.safm.mfr.")
    if scale is None or n_levels == 0:
        return None
    hidden = int(sd["feats.0.ccm.ccm.0.weight"].shape[0])
    return dict(
        scale=scale,
        dim=dim,
        n_blocks=count_indexed(sd, "feats.", ".norm1.weight"),
        ffn_scale=hidden / dim,
        n_levels=n_levels,
    )


def _receptive_field(hp: dict[str, Any]) -> int:
    per_block = 2 * 2 ** (int(hp["n_levels"]) - 1) - 1 + 1  # coarsest pooled 3x3 neighbourhood, CCM's 3x3
    return 1 + int(hp["n_blocks"]) * per_block + 1  # to_feat, blocks, to_img


SPEC = register(
    ArchSpec(
        name="safmn",
        title="SAFMN (Sun et al., spatially-adaptive feature modulation)",
        build=SAFMN,
        detect=_detect,
        supports_fp16=False,  # not verified in fp16 (spandrel marks it unsupported too); bf16 is safe
        supports_bf16=True,
        size_multiple=lambda hp: 2 ** (int(hp["n_levels"]) - 1),
        tiling="safe",  # with the tiler's grid-aligned pieces (inference.tiling)
        receptive_field=_receptive_field,
        # the width is "dim" (the common estimate assumes 64 features): features plus the CCM's hidden layer
        extra_activations=lambda hp, feat: max(0, int(hp["dim"] * (6 + hp["ffn_scale"])) - 6 * feat),
        licence="Apache-2.0",
    )
)
