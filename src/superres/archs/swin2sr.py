"""Swin2SR (Conde et al., ECCV 2022 AIM workshop, "Swin2SR: SwinV2 Transformer for Compressed Image
Super-Resolution and Restoration"): SwinIR's residual groups with SwinV2 attention blocks.

Source and licence: github.com/mv-lab/swin2sr, Apache-2.0 (``LICENSE``). Written here from the papers
(SwinV2, Liu et al. CVPR 2022, and Swin2SR), sharing SwinIR's windows, masks, MLP and tails
(:mod:`superres.archs.swinir`). Official key layout, so the released classical, lightweight, real-world
and compressed SR checkpoints load with ``strict=True``. What differs from SwinIR:

- attention is cosine similarity scaled by a learned per-head temperature (``attn.logit_scale``,
  clamped at log 100), and the relative-position bias comes from a small MLP over log-spaced offsets
  (``attn.cpb_mlp.{0,2}`` applied to the ``attn.relative_coords_table`` buffer, then ``16 * sigmoid``);
  ``attn.qkv`` has no bias, ``attn.q_bias`` / ``attn.v_bias`` are separate (k has none);
- blocks are post-norm: ``x + norm1(attn(x))``, then ``x + norm2(mlp(x))``;
- every patch embedding holds a 1x1 conv (``patch_embed.proj``, and ``layers.{i}.patch_embed.proj``
  after each group's conv);
- one more tail, ``pixelshuffle_aux`` (the compressed-input model): a bicubic-upsampled path
  (``conv_bicubic``) is added before the last conv, through a 3-channel auxiliary image
  (``conv_aux``, ``conv_after_aux``).

The bias MLP is evaluated once per block per forward (a (2w-1)^2 x 512 matmul), not per window; all
windows run as one batch through :func:`superres.archs.attention.window_attention`. Tiling as SwinIR:
translation-variant at the window grid ("discouraged", reflect-padded to a multiple of the window).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import window_attention
from .base import ArchSpec, SRNet, StateDict, count_indexed, register, shuffle_scale
from .edsr import DIV2K_RGB_MEAN, make_upsampler, upsampler_scale
from .swinir import (
    Mlp,
    _conv_tail,
    _drop_path,
    _partition,
    _unpartition,
    init_transformer_weights,
    shifted_window_mask,
)

_UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "pixelshuffle_aux", "")
_RESI = ("1conv", "3conv")
_MAX_LOGIT = math.log(100.0)  # SwinV2 clamps the learned temperature at 100


def log_spaced_offsets(window: int) -> torch.Tensor:
    """(1, 2w-1, 2w-1, 2) relative offsets (dy, dx) mapped to sign(t) * log2(1 + |t|) / 3, t = 8d / (w-1)."""
    r = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).unsqueeze(0)
    table = table / max(window - 1, 1) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0


def relative_position_index(window: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :] + window - 1) * (2 * window - 1) + (
        xs[:, None] - xs[None, :] + window - 1
    )


class WindowAttentionV2(nn.Module):
    """Scaled-cosine window attention with a continuous (MLP) relative-position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads, self.window_size = num_heads, window_size
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False)
        )
        self.register_buffer("relative_coords_table", log_spaced_offsets(window_size))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, dtype: torch.dtype) -> torch.Tensor:
        n = self.window_size * self.window_size
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index.view(-1)].view(n, n, self.num_heads).permute(2, 0, 1)
        return (16 * torch.sigmoid(bias)).to(dtype)  # (heads, N, N)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: (B, nW, N, C); ``mask``: (nW, N, N) or None."""
        b, nw, n, c = x.shape
        bias = None
        if self.q_bias is not None and self.v_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = (
            qkv.view(b, nw, n, 3, self.num_heads, c // self.num_heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
        )
        temperature = torch.clamp(self.logit_scale, max=_MAX_LOGIT).exp().to(q.dtype)  # (heads, 1, 1)
        q = F.normalize(q, dim=-1) * temperature
        k = F.normalize(k, dim=-1)
        attn_bias = self.position_bias(q.dtype).unsqueeze(0)  # (1, heads, N, N)
        if mask is not None:
            attn_bias = attn_bias + mask.to(q.dtype).unsqueeze(1)  # (nW, heads, N, N)
        out = window_attention(q, k, v, attn_bias, scale=1.0)
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


class SwinV2Block(nn.Module):
    """(Shifted) window attention -> LayerNorm -> residual; MLP -> LayerNorm -> residual (post-norm)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: float,
        img_size: int | None,
    ) -> None:
        super().__init__()
        self.window_size, self.shift, self.drop_path = window_size, shift, drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttentionV2(dim, window_size, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if shift > 0 and img_size is not None:
            # Kept only so official checkpoints load strictly; forward computes the mask for its input.
            self.register_buffer("attn_mask", shifted_window_mask(img_size, img_size, window_size, shift))

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor | None) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        ws = self.window_size
        y = x.view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = _unpartition(self.attn(_partition(y, ws), mask if self.shift else None), ws, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + _drop_path(self.norm1(y.reshape(b, h * w, c)), self.drop_path, self.training)
        return x + _drop_path(self.norm2(self.mlp(x)), self.drop_path, self.training)


class ResidualGroup(nn.Module):
    def __init__(self, blocks: Sequence[SwinV2Block]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> 1x1 conv (``proj``) -> (B, H*W, C) tokens, with the optional LayerNorm (``norm``)."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 1)
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class RSTB(nn.Module):
    """Residual group of SwinV2 blocks, a conv on the 2-D map, the 1x1 re-embedding, and a skip."""

    def __init__(self, blocks: Sequence[SwinV2Block], dim: int, resi_connection: str) -> None:
        super().__init__()
        self.residual_group = ResidualGroup(blocks)
        self.conv = _conv_tail(dim, resi_connection)
        self.patch_embed = PatchEmbed(dim, norm=False)

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor | None) -> torch.Tensor:
        y = x
        for blk in self.residual_group.blocks:
            y = blk(y, size, mask)
        b, _, c = y.shape
        return self.patch_embed(self.conv(y.transpose(1, 2).reshape(b, c, *size))) + x


class Swin2SR(SRNet):
    arch_name = "swin2sr"

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        patch_norm: bool = True,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        num_feat: int = 64,
        img_range: float = 1.0,
        img_size: int | None = 64,
        drop_path_rate: float = 0.1,
    ) -> None:
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        super().__init__(
            scale=scale,
            in_channels=in_channels,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            patch_norm=patch_norm,
            upsampler=upsampler,
            resi_connection=resi_connection,
            num_feat=num_feat,
            img_range=img_range,
            img_size=img_size,
            drop_path_rate=drop_path_rate,
        )
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f"unknown upsampler {upsampler!r}; expected one of {_UPSAMPLERS}")
        if resi_connection not in _RESI:
            raise ValueError(f"unknown resi_connection {resi_connection!r}; expected one of {_RESI}")
        if len(depths) != len(num_heads) or any(embed_dim % h for h in num_heads):
            raise ValueError("depths and num_heads must have equal length and heads must divide embed_dim")
        if (upsampler == "" and scale != 1) or (upsampler != "" and scale < 2):
            raise ValueError(f"upsampler {upsampler!r} does not support scale {scale}")
        if upsampler == "nearest+conv" and scale != 4:
            raise ValueError("upsampler 'nearest+conv' supports scale 4 only (as upstream)")
        if upsampler == "pixelshuffle_aux" and in_channels != 3:
            raise ValueError("upsampler 'pixelshuffle_aux' needs 3 input channels")
        if img_size is not None and img_size <= window_size:
            raise ValueError(f"img_size ({img_size}) must exceed window_size ({window_size}) or be None")
        self.window_size = window_size
        self.img_range = float(img_range)
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.0,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        total = sum(depths)
        rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]
        self.layers = nn.ModuleList()
        start = 0
        for depth, heads in zip(depths, num_heads):
            blocks = [
                SwinV2Block(
                    embed_dim,
                    heads,
                    window_size,
                    0 if j % 2 == 0 else window_size // 2,
                    mlp_ratio,
                    qkv_bias,
                    rates[start + j],
                    img_size,
                )
                for j in range(depth)
            ]
            start += depth
            self.layers.append(RSTB(blocks, embed_dim, resi_connection))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _conv_tail(embed_dim, resi_connection)

        if upsampler in ("pixelshuffle", "pixelshuffle_aux", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )  # slope 0.01, as official
        if upsampler in ("pixelshuffle", "pixelshuffle_aux"):
            self.upsample = make_upsampler(scale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        if upsampler == "pixelshuffle_aux":
            self.conv_bicubic = nn.Conv2d(in_channels, num_feat, 3, 1, 1)
            self.conv_aux = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
            self.conv_after_aux = nn.Sequential(nn.Conv2d(3, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(
                nn.Conv2d(embed_dim, in_channels * scale * scale, 3, 1, 1), nn.PixelShuffle(scale)
            )
        elif upsampler == "nearest+conv":
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        elif upsampler == "":
            self.conv_last = nn.Conv2d(embed_dim, in_channels, 3, 1, 1)
        self.apply(init_transformer_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window_size
        mask = (
            shifted_window_mask(h, w, ws, ws // 2, x.device, x.dtype)
            if any(blk.shift for layer in self.layers for blk in layer.residual_group.blocks)
            else None
        )
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, (h, w), mask)
        return self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ws, s = self.window_size, self.scale
        ph, pw = (-h) % ws, (-w) % ws
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        up = self.hyperparams["upsampler"]
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        if up == "pixelshuffle":
            out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        elif up == "pixelshuffle_aux":
            # upstream resizes the padded input straight to the unpadded target size
            bicubic = self.conv_bicubic(
                F.interpolate(x, size=(h * s, w * s), mode="bicubic", align_corners=False)
            )
            aux = self.conv_aux(self.conv_before_upsample(feat))
            y = self.upsample(self.conv_after_aux(aux))[:, :, : h * s, : w * s]
            out = self.conv_last(y + bicubic)
        elif up == "pixelshuffledirect":
            out = self.upsample(feat)
        elif up == "nearest+conv":
            y = self.conv_before_upsample(feat)
            y = F.leaky_relu(self.conv_up1(F.interpolate(y, scale_factor=2, mode="nearest")), 0.2)
            y = F.leaky_relu(self.conv_up2(F.interpolate(y, scale_factor=2, mode="nearest")), 0.2)
            out = self.conv_last(F.leaky_relu(self.conv_hr(y), 0.2))
        else:  # restoration at scale 1: predict a residual on the input
            out = x + self.conv_last(feat)
        out = out / self.img_range + mean
        return out[:, :, : h * s, : w * s]


_BLOCK = "layers.{i}.residual_group.blocks.{j}."


def _detect(sd: StateDict) -> dict[str, Any] | None:
    first_block = _BLOCK.format(i=0, j=0)
    if not all(
        k in sd
        for k in (
            "conv_first.weight",
            "norm.weight",
            "layers.0.patch_embed.proj.weight",
            first_block + "attn.cpb_mlp.0.weight",
            first_block + "attn.logit_scale",
            first_block + "attn.relative_coords_table",
        )
    ):
        return None
    if any(k.startswith(("absolute_pos_embed", "layers_hf.")) for k in sd):
        return None  # absolute position embedding (ape=True) and the "pixelshuffle_hf" tail are not supported
    first = sd["conv_first.weight"]
    embed_dim, in_ch = int(first.shape[0]), int(first.shape[1])
    num_layers = count_indexed(sd, "layers.", ".patch_embed.proj.weight")
    depths = [count_indexed(sd, f"layers.{i}.residual_group.blocks.") for i in range(num_layers)]
    if not num_layers or 0 in depths:
        return None
    num_heads = [int(sd[_BLOCK.format(i=i, j=0) + "attn.logit_scale"].shape[0]) for i in range(num_layers)]
    table = sd[first_block + "attn.relative_coords_table"]
    if table.ndim != 4 or table.shape[1] != table.shape[2] or table.shape[1] % 2 == 0:
        return None
    window_size = (int(table.shape[1]) + 1) // 2
    hidden = int(sd[first_block + "mlp.fc1.weight"].shape[0])
    if "layers.0.conv.weight" in sd:
        resi = "1conv"
    elif "layers.0.conv.0.weight" in sd:
        resi = "3conv"
    else:
        return None
    img_size: int | None = None
    mask = sd.get(_BLOCK.format(i=0, j=1) + "attn_mask") if depths[0] > 1 else None
    if mask is not None:
        per_side = math.isqrt(int(mask.shape[0]))
        if per_side * per_side != mask.shape[0]:
            return None
        img_size = per_side * window_size

    num_feat = 64
    if "conv_aux.weight" in sd:
        upsampler = "pixelshuffle_aux"
        num_feat = int(sd["conv_before_upsample.0.weight"].shape[0])
        scale = upsampler_scale(sd, "upsample.", num_feat)
    elif "conv_up1.weight" in sd:
        upsampler, scale = "nearest+conv", 4
        num_feat = int(sd["conv_up1.weight"].shape[0])
    elif "conv_before_upsample.0.weight" in sd:
        upsampler = "pixelshuffle"
        num_feat = int(sd["conv_before_upsample.0.weight"].shape[0])
        scale = upsampler_scale(sd, "upsample.", num_feat)
    elif "upsample.0.weight" in sd:
        upsampler = "pixelshuffledirect"
        scale = shuffle_scale(int(sd["upsample.0.weight"].shape[0]), in_ch)
    elif "conv_last.weight" in sd:
        upsampler, scale = "", 1
    else:
        return None
    if scale is None:
        return None
    return dict(
        scale=scale,
        in_channels=in_ch,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        mlp_ratio=hidden / embed_dim,
        qkv_bias=first_block + "attn.q_bias" in sd,
        patch_norm="patch_embed.norm.weight" in sd,
        upsampler=upsampler,
        resi_connection=resi,
        num_feat=num_feat,
        img_range=1.0,
        img_size=img_size,
        drop_path_rate=0.1,
    )


SPEC = register(
    ArchSpec(
        name="swin2sr",
        title="Swin2SR (Conde et al., SwinV2 for SR)",
        build=Swin2SR,
        detect=_detect,
        supports_fp16=True,
        supports_bf16=True,
        size_multiple=lambda hp: int(hp["window_size"]),
        tiling="discouraged",
        receptive_field=lambda hp: None,
        # attention windows, as SwinIR, and the scores (heads x w^2 per pixel)
        extra_activations=lambda hp, feat: 12 * feat + max(hp["num_heads"]) * int(hp["window_size"]) ** 2,
        out_channels_key="in_channels",
        licence="Apache-2.0",
    )
)
