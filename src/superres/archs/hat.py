"""HAT (Chen et al., CVPR 2023, "Activating More Pixels in Image Super-Resolution Transformer").

A SwinIR-like trunk whose groups (RHAG) hold hybrid attention blocks (HAB: shifted window self-attention
plus a small channel-attention conv branch, scaled by ``conv_scale``) and end with one overlapping
cross-attention block (OCAB: queries from non-overlapping windows, keys and values from larger windows
that overlap their neighbours). One architecture covers HAT, HAT-S, HAT-L and Real-HAT-GAN: they differ
only in width, depth and the channel-attention ratios, all read from the weights.

Source: https://github.com/XPixelGroup/HAT (``hat/archs/hat_arch.py``); licence Apache-2.0 (the
repository's LICENSE, "Copyright 2023 Xiangyu Chen"), which covers the released code and weights.
Written here from the paper; the upstream code was read only to learn the state-dict key layout:
``conv_first``, ``patch_embed.norm``, ``layers.{i}.residual_group.blocks.{j}.{norm1, conv_block.cab.{0,2},
conv_block.cab.3.attention.{1,3}, attn.{relative_position_bias_table, qkv, proj}, norm2, mlp.fc{1,2}}``,
``layers.{i}.residual_group.overlap_attn.{norm1, qkv, relative_position_bias_table, proj, norm2, mlp}``,
``layers.{i}.conv``, ``norm``, ``conv_after_body``, ``conv_before_upsample.0``, ``upsample.{0,2,..}``,
``conv_last``, and two top-level buffers: ``relative_position_index_SA`` (window self-attention) and
``relative_position_index_OCA`` (overlapping cross-attention). HAT stores no attention masks.

Not stored in the weights (official values used): ``conv_scale`` 0.01, ``img_range`` 1.0, the
stochastic-depth rate. ``overlap_ratio`` is recovered from the OCA index shape.

Like SwinIR, windows make the network translation-variant at the window grid (tiling "discouraged",
``receptive_field`` None); inputs are reflect-padded to a multiple of the window size and cropped back.
The OCA keys and values at the image border come from zero padding *after* the qkv projection, exactly as
upstream's ``nn.Unfold``: those zero keys take part in the softmax (they are not masked).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import window_attention
from .base import ArchSpec, SRNet, StateDict, count_indexed, register
from .edsr import DIV2K_RGB_MEAN, make_upsampler, upsampler_scale
from .swinir import init_transformer_weights, shifted_window_mask


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, ws*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // ws) * (w // ws), ws * ws, c)


def window_merge(x: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B, nW, ws*ws, C) -> (B, H, W, C)."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def window_index(ws: int) -> torch.Tensor:
    """(ws^2, ws^2) index of the (dy, dx) offset between two tokens of a window into a (2ws-1)^2 table."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :] + ws - 1) * (2 * ws - 1) + (xs[:, None] - xs[None, :] + ws - 1)


def overlap_index(ws: int, ows: int) -> torch.Tensor:
    """(ws^2, ows^2) index of the offset from a query of a ws-window to a key of its ows-window into a
    (ws+ows-1)^2 table, with the official offset origin ``ws - ows + 1``: some indices are negative and
    address the table from its end (Python indexing). The released weights were trained that way, so the
    values are kept exactly (they are a stored buffer) and :func:`gather_bias` wraps them explicitly."""
    qy, qx = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    ky, kx = torch.meshgrid(torch.arange(ows), torch.arange(ows), indexing="ij")
    dy = ky.flatten()[None, :] - qy.flatten()[:, None] + ws - ows + 1
    dx = kx.flatten()[None, :] - qx.flatten()[:, None] + ws - ows + 1
    return dy * (ws + ows - 1) + dx


def overlap_size(window_size: int, overlap_ratio: float) -> int:
    return int(window_size * overlap_ratio) + window_size


def gather_bias(table: torch.Tensor, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(heads, Nq, Nk) additive attention bias from a learned table and an offset index."""
    nq, nk = index.shape
    return table[index.reshape(-1) % table.shape[0]].view(nq, nk, -1).permute(2, 0, 1).to(dtype)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation (``attention.{1,3}``, as RCAN's): mean -> 1x1 -> ReLU -> 1x1 -> sigmoid."""

    def __init__(self, dim: int, squeezed: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, squeezed, 1),
                                       nn.ReLU(inplace=True), nn.Conv2d(squeezed, dim, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel-attention block: conv (compress) -> GELU -> conv (expand) -> channel attention."""

    def __init__(self, dim: int, compressed: int, squeezed: int) -> None:
        super().__init__()
        self.cab = nn.Sequential(nn.Conv2d(dim, compressed, 3, 1, 1), nn.GELU(),
                                 nn.Conv2d(compressed, dim, 3, 1, 1), ChannelAttention(dim, squeezed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cab(x)


class WindowAttention(nn.Module):
    """Window self-attention with a relative-position bias; the index is the model's shared buffer."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        span = 2 * window_size - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(span * span, num_heads))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: (B, nW, N, C); ``mask``: (nW, N, N) or None."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).view(b, nw, n, 3, self.num_heads, c // self.num_heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # (B, nW, heads, N, head_dim)
        bias = gather_bias(self.relative_position_bias_table, index, q.dtype).unsqueeze(0)
        if mask is not None:
            bias = bias + mask.to(q.dtype).unsqueeze(1)
        out = window_attention(q, k, v, bias)
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class HAB(nn.Module):
    """Hybrid attention block: x + W-MSA(LN x) + conv_scale * CAB(LN x); then x + MLP(LN x)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, compressed: int, squeezed: int,
                 conv_scale: float, mlp_ratio: float, qkv_bias: bool, drop_path: float) -> None:
        super().__init__()
        self.window_size, self.shift = window_size, shift
        self.conv_scale, self.drop_path = conv_scale, drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.conv_block = CAB(dim, compressed, squeezed)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, size: tuple[int, int], index: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        ws = self.window_size
        y = self.norm1(x).view(b, h, w, c)
        conv = self.conv_block(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = window_merge(self.attn(window_partition(y, ws), index, mask if self.shift else None), ws, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + _drop_path(y.reshape(b, h * w, c), self.drop_path, self.training) + conv * self.conv_scale
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class OCAB(nn.Module):
    """Overlapping cross-attention: each ws-window of queries attends to the ows-window around it."""

    def __init__(self, dim: int, window_size: int, overlap_win: int, num_heads: int, qkv_bias: bool,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.window_size, self.overlap_win, self.num_heads = window_size, overlap_win, num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        span = window_size + overlap_win - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(span * span, num_heads))
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, size: tuple[int, int], index: torch.Tensor) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        ws, ows, heads = self.window_size, self.overlap_win, self.num_heads
        d = c // heads
        qkv = self.qkv(self.norm1(x)).view(b, h, w, 3, c)
        q = window_partition(qkv[..., 0, :], ws)  # (B, nW, ws^2, C)
        nw = q.shape[1]
        q = q.view(b, nw, ws * ws, heads, d).transpose(2, 3)
        kv = qkv[..., 1:, :].reshape(b, h, w, 2 * c).permute(0, 3, 1, 2)
        kv = F.unfold(kv, kernel_size=ows, stride=ws, padding=(ows - ws) // 2)  # (B, 2C*ows^2, nW)
        kv = kv.view(b, 2, heads, d, ows * ows, nw).permute(1, 0, 5, 2, 4, 3)  # (2, B, nW, heads, ows^2, d)
        bias = gather_bias(self.relative_position_bias_table, index, q.dtype)
        out = window_attention(q, kv[0], kv[1], bias)  # (B, nW, heads, ws^2, d)
        out = window_merge(out.transpose(2, 3).reshape(b, nw, ws * ws, c), ws, h, w).reshape(b, h * w, c)
        x = x + self.proj(out)
        return x + self.mlp(self.norm2(x))


class AttenBlocks(nn.Module):
    """Official name for the HAB list plus the closing OCAB of a group (``blocks``, ``overlap_attn``)."""

    def __init__(self, blocks: Sequence[HAB], overlap_attn: OCAB) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.overlap_attn = overlap_attn


class RHAG(nn.Module):
    """Residual hybrid attention group: HABs, an OCAB, a conv on the 2-D map, and a skip."""

    def __init__(self, group: AttenBlocks, dim: int, resi_connection: str) -> None:
        super().__init__()
        self.residual_group = group
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1) if resi_connection == "1conv" else nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple[int, int], index_sa: torch.Tensor, index_oca: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        y = x
        for blk in self.residual_group.blocks:
            y = blk(y, size, index_sa, mask)
        y = self.residual_group.overlap_attn(y, size, index_oca)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, *size))
        return y.flatten(2).transpose(1, 2) + x


class PatchEmbed(nn.Module):
    """Holds the optional token LayerNorm (``patch_embed.norm``)."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None


class HAT(SRNet):
    arch_name = "hat"

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 16,
        compress_ratio: int = 3,
        squeeze_factor: int = 30,
        conv_scale: float = 0.01,
        overlap_ratio: float = 0.5,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        patch_norm: bool = True,
        resi_connection: str = "1conv",
        num_feat: int = 64,
        img_range: float = 1.0,
        drop_path_rate: float = 0.1,
    ) -> None:
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        super().__init__(
            scale=scale, in_channels=in_channels, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
            window_size=window_size, compress_ratio=compress_ratio, squeeze_factor=squeeze_factor,
            conv_scale=conv_scale, overlap_ratio=overlap_ratio, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            patch_norm=patch_norm, resi_connection=resi_connection, num_feat=num_feat, img_range=img_range,
            drop_path_rate=drop_path_rate,
        )
        if resi_connection not in ("1conv", "identity"):
            raise ValueError(f"unknown resi_connection {resi_connection!r}; expected '1conv' or 'identity'")
        if len(depths) != len(num_heads) or not depths or any(embed_dim % h for h in num_heads):
            raise ValueError("depths and num_heads must have equal length and heads must divide embed_dim")
        if scale not in (2, 3, 4, 8):
            raise ValueError(f"HAT supports scale 2, 3, 4 or 8, not {scale}")
        ows = overlap_size(window_size, overlap_ratio)
        if window_size < 2 or (ows - window_size) % 2:
            raise ValueError(f"window {window_size} with overlap ratio {overlap_ratio} gives an odd overlap")
        compressed, squeezed = embed_dim // compress_ratio, embed_dim // squeeze_factor
        if compressed < 1 or squeezed < 1:
            raise ValueError("compress_ratio and squeeze_factor must not exceed embed_dim")
        self.window_size = window_size
        self.img_range = float(img_range)
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.0,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)
        self.register_buffer("relative_position_index_SA", window_index(window_size))
        self.register_buffer("relative_position_index_OCA", overlap_index(window_size, ows))

        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        total = sum(depths)
        rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]
        self.layers = nn.ModuleList()
        start = 0
        for depth, heads in zip(depths, num_heads):
            blocks = [
                HAB(embed_dim, heads, window_size, 0 if j % 2 == 0 else window_size // 2, compressed,
                    squeezed, conv_scale, mlp_ratio, qkv_bias, rates[start + j])
                for j in range(depth)
            ]
            start += depth
            ocab = OCAB(embed_dim, window_size, ows, heads, qkv_bias, mlp_ratio)
            self.layers.append(RHAG(AttenBlocks(blocks, ocab), embed_dim, resi_connection))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1) if resi_connection == "1conv" \
            else nn.Identity()
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                  nn.LeakyReLU(inplace=True))  # slope 0.01, as official
        self.upsample = make_upsampler(scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        self.apply(init_transformer_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window_size
        mask = shifted_window_mask(h, w, ws, ws // 2, x.device, x.dtype) if any(
            len(layer.residual_group.blocks) > 1 for layer in self.layers) else None
        tokens = x.flatten(2).transpose(1, 2)
        if self.patch_embed.norm is not None:
            tokens = self.patch_embed.norm(tokens)
        for layer in self.layers:
            tokens = layer(tokens, (h, w), self.relative_position_index_SA, self.relative_position_index_OCA,
                           mask)
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
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        out = out / self.img_range + mean
        return out[:, :, : h * self.scale, : w * self.scale]


_BLOCK = "layers.{i}.residual_group.blocks.{j}."
_OCAB = "layers.{i}.residual_group.overlap_attn."


def ratio_from_width(dim: int, width: int) -> int | None:
    """The integer ratio r with ``dim // r == width`` (exact divisors first), as official widths are made."""
    if width < 1 or width > dim:
        return None
    if dim % width == 0:
        return dim // width
    for r in range(1, dim + 1):
        if dim // r == width:
            return r
    return None


def overlap_ratio_from(window_size: int, overlap_win: int) -> float | None:
    """A ratio giving ``overlap_win`` (round values first: 0.5 is the official one)."""
    for r in (0.5, 0.25, 0.75, 0.0, 1.0):
        if overlap_size(window_size, r) == overlap_win:
            return r
    r = (overlap_win - window_size) / window_size
    return r if overlap_win > window_size and overlap_size(window_size, r) == overlap_win else None


def _detect(sd: StateDict) -> dict[str, Any] | None:
    b00, o0 = _BLOCK.format(i=0, j=0), _OCAB.format(i=0)
    needed = ("relative_position_index_SA", "relative_position_index_OCA", "conv_first.weight", "norm.weight",
              "conv_last.weight", b00 + "conv_block.cab.0.weight", b00 + "mlp.fc1.weight",
              b00 + "conv_block.cab.3.attention.1.weight", o0 + "relative_position_bias_table",
              o0 + "qkv.weight")
    if not all(k in sd for k in needed) or any(k.startswith("absolute_pos_embed") for k in sd):
        return None
    first = sd["conv_first.weight"]
    if first.ndim != 4:
        return None
    embed_dim, in_ch = int(first.shape[0]), int(first.shape[1])
    num_layers = count_indexed(sd, "layers.")
    depths = [count_indexed(sd, f"layers.{i}.residual_group.blocks.") for i in range(num_layers)]
    if not num_layers or 0 in depths or any(_OCAB.format(i=i) + "relative_position_bias_table" not in sd
                                            for i in range(num_layers)):
        return None
    num_heads = [int(sd[_OCAB.format(i=i) + "relative_position_bias_table"].shape[1])
                 for i in range(num_layers)]
    sa, oca = sd["relative_position_index_SA"], sd["relative_position_index_OCA"]
    ws = math.isqrt(int(sa.shape[0]))
    if sa.ndim != 2 or oca.ndim != 2 or ws < 2 or ws * ws != sa.shape[0] or int(oca.shape[0]) != ws * ws:
        return None
    ows = math.isqrt(int(oca.shape[1]))
    ratio = overlap_ratio_from(ws, ows) if ows * ows == oca.shape[1] else None
    if ratio is None or (ows - ws) % 2:
        return None
    # The indices are buffers the forward pass gathers with: only the values this architecture defines load.
    if not torch.equal(sa.long(), window_index(ws)) or not torch.equal(oca.long(), overlap_index(ws, ows)):
        return None
    compress = ratio_from_width(embed_dim, int(sd[b00 + "conv_block.cab.0.weight"].shape[0]))
    squeeze = ratio_from_width(embed_dim, int(sd[b00 + "conv_block.cab.3.attention.1.weight"].shape[0]))
    num_feat = int(sd["conv_last.weight"].shape[1])
    scale = upsampler_scale(sd, "upsample.", num_feat)
    if compress is None or squeeze is None or scale is None:
        return None
    hidden = int(sd[b00 + "mlp.fc1.weight"].shape[0])
    return dict(scale=scale, in_channels=in_ch, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
                window_size=ws, compress_ratio=compress, squeeze_factor=squeeze, conv_scale=0.01,
                overlap_ratio=ratio, mlp_ratio=hidden / embed_dim, qkv_bias=b00 + "attn.qkv.bias" in sd,
                patch_norm="patch_embed.norm.weight" in sd,
                resi_connection="1conv" if "conv_after_body.weight" in sd else "identity",
                num_feat=num_feat, img_range=1.0, drop_path_rate=0.1)


SPEC = register(
    ArchSpec(
        name="hat",
        title="HAT (Chen et al.)",
        build=HAT,
        detect=_detect,
        supports_fp16=False,  # activations of the large models overflow float16 (spandrel marks it so too)
        supports_bf16=True,
        size_multiple=lambda hp: int(hp["window_size"]),
        tiling="discouraged",
        receptive_field=lambda hp: None,
        extra_activations=lambda hp, feat: 16 * feat,  # attention windows, overlapping keys/values, CAB
        out_channels_key="in_channels",
        licence="Apache-2.0",
    )
)
