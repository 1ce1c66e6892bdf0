"""SwinIR (Liang et al., 2021): residual Swin-Transformer groups (RSTB) between a conv head and an SR tail.

Key layout matches the official SwinIR release, so its classical (``pixelshuffle``), lightweight
(``pixelshuffledirect``) and real-world (``nearest+conv``) SR checkpoints load with ``strict=True``:
``conv_first``, ``patch_embed.norm``, ``layers.{i}.residual_group.blocks.{j}.{norm1,attn,norm2,mlp}``
(``attn.relative_position_bias_table``, ``attn.relative_position_index``, ``attn.qkv``, ``attn.proj``,
``mlp.fc1``, ``mlp.fc2``), ``layers.{i}.conv`` (``resi_connection="1conv"``, or ``conv.{0,2,4}`` for
"3conv"), ``norm``, ``conv_after_body``, then ``conv_before_upsample.0`` + ``upsample.{0,2}`` +
``conv_last`` (pixelshuffle), ``upsample.0`` (pixelshuffledirect), or ``conv_before_upsample.0`` +
``conv_up1`` [+ ``conv_up2``] + ``conv_hr`` + ``conv_last`` (nearest+conv).

The official checkpoints also store, for every shifted block, the attention mask for the training
patch size (``attn_mask``, shape ``((img_size / window)^2, window^2, window^2)``). It is only a cache of
a value computed from the image size, but it must exist for strict loading, so ``img_size`` is a
hyper-parameter (``None``: no stored masks). Masks for the actual input size are computed per forward.

Windows and shifts make every output pixel depend on a large, position-dependent neighbourhood: the
network is translation-variant at the window grid, so tiles never equal the whole image exactly
(``receptive_field`` None, tiling "discouraged"). Inputs are reflect-padded to a multiple of the
window size (``size_multiple``) and the output cropped back, as in the official code.
``num_feat`` is the width of the conv tail of "pixelshuffle" and "nearest+conv" (unused otherwise);
``img_range`` and ``drop_path_rate`` are not stored in weights (official values: 1.0 and 0.1).
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

_UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
_RESI = ("1conv", "3conv")
_MASK_VALUE = -100.0  # the official value for cross-region pairs in shifted windows


def _partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, ws*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // ws) * (w // ws), ws * ws, c)


def _unpartition(x: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_partition`: (B, nW, ws*ws, C) -> (B, H, W, C)."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device: torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(nW, ws^2, ws^2) additive mask: token pairs from different regions of a rolled window get -100."""
    region = torch.zeros(h, w, device=device)
    bounds = ((0, -ws), (-ws, -shift), (-shift, None))
    label = 0
    for hs in bounds:
        for wsl in bounds:
            region[slice(*hs), slice(*wsl)] = label
            label += 1
    ids = _partition(region.view(1, h, w, 1), ws).view(-1, ws * ws)
    differs = ids.unsqueeze(1) != ids.unsqueeze(2)
    return torch.zeros(differs.shape, device=device, dtype=dtype).masked_fill(differs, _MASK_VALUE)


def init_transformer_weights(m: nn.Module) -> None:
    """The Swin family's initialisation (``net.apply``): truncated-normal Linear weights, unit LayerNorms;
    shared by SwinIR, Swin2SR, HAT and ATD (it only matters for training from scratch)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias per head."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        span = 2 * window_size - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(span * span, num_heads))
        # Index of (dy, dx) between every pair of tokens of a window into the table above.
        ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + window_size - 1
        dx = xs[:, None] - xs[None, :] + window_size - 1
        self.register_buffer("relative_position_index", dy * span + dx)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self, dtype: torch.dtype) -> torch.Tensor:
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1).to(dtype)  # (heads, N, N)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: (B, nW, N, C); ``mask``: (nW, N, N) or None."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).view(b, nw, n, 3, self.num_heads, c // self.num_heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # (B, nW, heads, N, head_dim)
        bias = self.position_bias(q.dtype).unsqueeze(0)  # (1, heads, N, N)
        if mask is not None:
            bias = bias + mask.to(q.dtype).unsqueeze(1)  # (nW, heads, N, N)
        out = window_attention(q, k, v, bias)
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch per sample (training only)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class SwinBlock(nn.Module):
    """LayerNorm -> (shifted) window attention -> residual; LayerNorm -> MLP -> residual."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: float, img_size: int | None) -> None:
        super().__init__()
        self.window_size, self.shift, self.drop_path = window_size, shift, drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if shift > 0 and img_size is not None:
            # Kept only so official checkpoints load strictly; forward computes the mask for its input.
            self.register_buffer("attn_mask", shifted_window_mask(img_size, img_size, window_size, shift))

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor | None) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        ws = self.window_size
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = _unpartition(self.attn(_partition(y, ws), mask if self.shift else None), ws, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + _drop_path(y.reshape(b, h * w, c), self.drop_path, self.training)
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class ResidualGroup(nn.Module):
    """Official name "BasicLayer": a list of Swin blocks (``blocks.{j}``)."""

    def __init__(self, blocks: Sequence[SwinBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


def _conv_tail(dim: int, resi_connection: str) -> nn.Module:
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    q = dim // 4  # "3conv" saves parameters for the large model
    return nn.Sequential(nn.Conv2d(dim, q, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(q, q, 1),
                         nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(q, dim, 3, 1, 1))


class RSTB(nn.Module):
    """Residual Swin Transformer block: Swin blocks, a conv on the 2-D map, and a skip."""

    def __init__(self, blocks: Sequence[SwinBlock], dim: int, resi_connection: str) -> None:
        super().__init__()
        self.residual_group = ResidualGroup(blocks)
        self.conv = _conv_tail(dim, resi_connection)

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor | None) -> torch.Tensor:
        y = x
        for blk in self.residual_group.blocks:
            y = blk(y, size, mask)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, *size))
        return y.flatten(2).transpose(1, 2) + x


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, H*W, C) tokens (patch size 1), with the optional LayerNorm (``norm``)."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class SwinIR(SRNet):
    arch_name = "swinir"

    def __init__(
        self,
        scale: int = 4,
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
            scale=scale, in_channels=in_channels, embed_dim=embed_dim,
            depths=depths, num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, patch_norm=patch_norm, upsampler=upsampler, resi_connection=resi_connection,
            num_feat=num_feat, img_range=img_range, img_size=img_size, drop_path_rate=drop_path_rate,
        )
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f"unknown upsampler {upsampler!r}; expected one of {_UPSAMPLERS}")
        if resi_connection not in _RESI:
            raise ValueError(f"unknown resi_connection {resi_connection!r}; expected one of {_RESI}")
        if len(depths) != len(num_heads) or any(embed_dim % h for h in num_heads):
            raise ValueError("depths and num_heads must have equal length and heads must divide embed_dim")
        if (upsampler == "" and scale != 1) or (upsampler != "" and scale < 2):
            raise ValueError(f"upsampler {upsampler!r} does not support scale {scale}")
        if upsampler == "nearest+conv" and scale not in (2, 4):
            raise ValueError("upsampler 'nearest+conv' supports scale 2 or 4")
        if img_size is not None and img_size <= window_size:
            raise ValueError(f"img_size ({img_size}) must exceed window_size ({window_size}) or be None")
        self.window_size = window_size
        self.img_range = float(img_range)
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.0,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        total = sum(depths)
        rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]  # stochastic depth ramps up
        self.layers = nn.ModuleList()
        start = 0
        for depth, heads in zip(depths, num_heads):
            blocks = [
                SwinBlock(embed_dim, heads, window_size, 0 if j % 2 == 0 else window_size // 2, mlp_ratio,
                          qkv_bias, rates[start + j], img_size)
                for j in range(depth)
            ]
            start += depth
            self.layers.append(RSTB(blocks, embed_dim, resi_connection))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _conv_tail(embed_dim, resi_connection)

        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))  # slope 0.01, as official
            self.upsample = make_upsampler(scale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, in_channels * scale * scale, 3, 1, 1),
                                          nn.PixelShuffle(scale))
        elif upsampler == "nearest+conv":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            if scale == 4:
                self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        else:
            self.conv_last = nn.Conv2d(embed_dim, in_channels, 3, 1, 1)
        self.apply(init_transformer_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window_size
        mask = shifted_window_mask(h, w, ws, ws // 2, x.device, x.dtype) if any(
            blk.shift for layer in self.layers for blk in layer.residual_group.blocks) else None
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, (h, w), mask)
        return self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ws = self.window_size
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
        elif up == "pixelshuffledirect":
            out = self.upsample(feat)
        elif up == "nearest+conv":
            y = self.conv_before_upsample(feat)
            y = F.leaky_relu(self.conv_up1(F.interpolate(y, scale_factor=2, mode="nearest")), 0.2)
            if self.scale == 4:
                y = F.leaky_relu(self.conv_up2(F.interpolate(y, scale_factor=2, mode="nearest")), 0.2)
            out = self.conv_last(F.leaky_relu(self.conv_hr(y), 0.2))
        else:  # restoration at scale 1: predict a residual on the input
            out = x + self.conv_last(feat)
        out = out / self.img_range + mean
        return out[:, :, : h * self.scale, : w * self.scale]


_BLOCK = "layers.{i}.residual_group.blocks.{j}."


def _detect(sd: StateDict) -> dict[str, Any] | None:
    table_key = _BLOCK.format(i=0, j=0) + "attn.relative_position_bias_table"
    index_key = _BLOCK.format(i=0, j=0) + "attn.relative_position_index"  # per block: HAT's is shared
    if not all(k in sd for k in ("conv_first.weight", "norm.weight", table_key, index_key)):
        return None
    if any(k.startswith("absolute_pos_embed") for k in sd):
        return None  # absolute position embedding (ape=True) is not supported
    first = sd["conv_first.weight"]
    embed_dim, in_ch = int(first.shape[0]), int(first.shape[1])
    num_layers = count_indexed(sd, "layers.")
    depths = [count_indexed(sd, f"layers.{i}.residual_group.blocks.") for i in range(num_layers)]
    if not num_layers or 0 in depths:
        return None
    num_heads = [int(sd[_BLOCK.format(i=i, j=0) + "attn.relative_position_bias_table"].shape[1])
                 for i in range(num_layers)]
    span = math.isqrt(int(sd[table_key].shape[0]))
    if span * span != sd[table_key].shape[0] or span % 2 == 0:
        return None
    window_size = (span + 1) // 2
    hidden = int(sd[_BLOCK.format(i=0, j=0) + "mlp.fc1.weight"].shape[0])
    qkv_bias = _BLOCK.format(i=0, j=0) + "attn.qkv.bias" in sd
    patch_norm = "patch_embed.norm.weight" in sd
    if "layers.0.conv.weight" in sd:
        resi = "1conv"
    elif "layers.0.conv.0.weight" in sd:
        resi = "3conv"
    else:
        return None

    img_size: int | None = None
    if num_layers and depths[0] > 1:
        mask = sd.get(_BLOCK.format(i=0, j=1) + "attn_mask")
        if mask is not None:
            per_side = math.isqrt(int(mask.shape[0]))
            if per_side * per_side != mask.shape[0]:
                return None
            img_size = per_side * window_size

    num_feat = 64
    if "conv_up1.weight" in sd:
        upsampler = "nearest+conv"
        num_feat = int(sd["conv_up1.weight"].shape[0])
        scale = 4 if "conv_up2.weight" in sd else 2
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
    return dict(scale=scale, in_channels=in_ch, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
                window_size=window_size, mlp_ratio=hidden / embed_dim, qkv_bias=qkv_bias,
                patch_norm=patch_norm, upsampler=upsampler, resi_connection=resi, num_feat=num_feat,
                img_range=1.0, img_size=img_size, drop_path_rate=0.1)


SPEC = register(
    ArchSpec(
        name="swinir",
        title="SwinIR (Liang et al.)",
        build=SwinIR,
        detect=_detect,
        supports_fp16=True,
        supports_bf16=True,
        size_multiple=lambda hp: int(hp["window_size"]),
        tiling="discouraged",
        receptive_field=lambda hp: None,
        extra_activations=lambda hp, feat: 12 * feat,  # attention windows
        out_channels_key="in_channels",  # restores the image it was given: out == in
    )
)
