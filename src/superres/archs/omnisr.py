"""Omni-SR (Wang et al., CVPR 2023, "Omni Aggregation Networks for Lightweight Image Super-Resolution").

Source and licence: github.com/Francis0625/Omni-SR, Apache-2.0 (stated in its README; the repository has
no LICENSE file). Written here from the paper; the key layout is the official one (``components/OmniSR.py``
and ``ops/``), so the published x2/x3/x4 DIV2K/DF2K checkpoints and community OmniSR models load with
``strict=True``. Profiler counters some of them carry (``total_ops`` / ``total_params``) are dropped by
the weights reader.

Layout: ``input`` (3x3 conv), ``residual_layer.{r}`` Omni-Scale Aggregation Groups (OSAG), ``output`` (3x3)
plus a skip from ``input``, ``up.0`` (3x3 conv to ``out * s^2``) and a pixel shuffle. An OSAG is
``residual_layer.{0..n-1}`` OSA blocks, ``residual_layer.{n}`` (1x1 conv), a skip, then ``esa`` (enhanced
spatial attention: strided conv, 7x7/3 max-pool, bilinear upsampling, sigmoid gate). An OSA block is one
``layer`` sequence whose indices name the weights:

- ``0`` MBConv (1x1, GELU, depthwise 3x3, GELU, squeeze-excitation ``4.gate.{1,3}``, 1x1) with a skip;
- ``2`` window self-attention over contiguous ``w x w`` blocks (LayerNorm ``norm``, ``fn.to_qkv``,
  ``fn.rel_pos_bias`` an embedding of (2w-1)^2 relative offsets per head, ``fn.to_out.0``), 4 heads;
- ``4``, ``6``, ``10``, ``12`` gated depthwise feed-forwards (channel LayerNorm, ``project_in``,
  ``dwconv``, GELU gate, ``project_out``);
- ``5`` channel attention inside each ``w x w`` block (``qkv``, ``qkv_dwconv``, L2-normalised q and k,
  learned ``temperature`` per head, ``project_out``);
- ``8`` the same window attention over a dilated grid (token ``(i, j)`` of window ``(x, y)`` is pixel
  ``(i * H/w + x, j * W/w + y)``), and ``11`` channel attention over that grid.

The grid attention and the squeeze-excitation see the whole input, so the receptive field is global and
tiles only approximate the whole image (tiling "discouraged"). Inputs are zero-padded to a multiple of
the window size, as upstream does, and to at least 2w pixels (the ESA's strided conv and 7x7 pool need
15; upstream fails on smaller inputs).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import window_attention
from .base import ArchSpec, SRNet, StateDict, count_indexed, has_all, register, shuffle_scale
from .norms import ChannelLayerNorm

_HEADS = 4  # both attentions: window attention has dim_head = dim // 4, channel attention 4 heads


def relative_position_index(window: int, device: torch.device | None = None) -> torch.Tensor:
    """(w^2, w^2) index of the (dy, dx) offset between two tokens of a window into a (2w-1)^2 table."""
    r = torch.arange(window, device=device)
    ys, xs = torch.meshgrid(r, r, indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :] + window - 1) * (2 * window - 1) + (
        xs[:, None] - xs[None, :] + window - 1
    )


class SqueezeExcitation(nn.Module):
    def __init__(self, dim: int, shrinkage: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * shrinkage)
        # indices 1 and 3 as upstream's Sequential (0, 2, 4, 5 hold the reduce and activations)
        self.gate = nn.ModuleDict(
            {"1": nn.Linear(dim, hidden, bias=False), "3": nn.Linear(hidden, dim, bias=False)}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.silu(self.gate["1"](x.mean(dim=(2, 3))))
        return x * torch.sigmoid(self.gate["3"](g))[:, :, None, None]


class MBConv(nn.Module):
    """Inverted bottleneck with expansion 1 and a skip; ``fn.{0,2,4,5}`` as upstream."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fn = nn.ModuleDict(
            {
                "0": nn.Conv2d(dim, dim, 1),
                "2": nn.Conv2d(dim, dim, 3, 1, 1, groups=dim),
                "4": SqueezeExcitation(dim),
                "5": nn.Conv2d(dim, dim, 1),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fn
        y = F.gelu(f["2"](F.gelu(f["0"](x))))
        return f["5"](f["4"](y)) + x


class WindowAttention(nn.Module):
    """Multi-head attention among the w^2 tokens of each window, with a learned relative-position bias."""

    def __init__(self, dim: int, window: int, with_pe: bool) -> None:
        super().__init__()
        self.heads = _HEADS
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim, bias=False)])
        self.rel_pos_bias = nn.Embedding((2 * window - 1) ** 2, self.heads) if with_pe else None
        # the (w^2, w^2) index is rebuilt per forward (a few small ops), not stored per module: upstream
        # keeps it as a non-persistent buffer, which a file cannot vouch for (weight_limits counts such
        # buffers against a small allowance: 48 attention modules x w^4 would exceed it)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B', N, C) tokens of B' windows."""
        b, n, c = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = None
        if self.rel_pos_bias is not None:
            bias = (
                self.rel_pos_bias.weight[relative_position_index(self.window, q.device)]
                .permute(2, 0, 1)
                .to(q.dtype)
            )  # (heads, N, N)
        out = window_attention(q, k, v, bias)
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, c))


class PreNormAttention(nn.Module):
    """LayerNorm -> window attention -> residual, over block (``grid=False``) or grid windows."""

    def __init__(self, dim: int, window: int, with_pe: bool, grid: bool) -> None:
        super().__init__()
        self.window, self.grid = window, grid
        self.norm = nn.LayerNorm(dim)
        self.fn = WindowAttention(dim, window, with_pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window
        if self.grid:  # token (i, j) of window (gy, gx) is pixel (i * h/ws + gy, j * w/ws + gx)
            t = x.view(b, c, ws, h // ws, ws, w // ws).permute(0, 3, 5, 2, 4, 1)
        else:  # window (gy, gx) holds pixels (gy * ws + i, gx * ws + j)
            t = x.view(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1)
        shape = t.shape
        t = t.reshape(-1, ws * ws, c)
        t = t + self.fn(self.norm(t))
        t = t.view(shape)
        if self.grid:
            return t.permute(0, 5, 3, 1, 4, 2).reshape(b, c, h, w)
        return t.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


class GatedFeedForward(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(dim * 2, dim * 2, 3, 1, 1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * g)


class ChannelAttention(nn.Module):
    """Attention among the channels of each head, with pixels of a window (or of a grid) as features."""

    def __init__(self, dim: int, window: int, grid: bool) -> None:
        super().__init__()
        self.heads, self.window, self.grid = _HEADS, window, grid
        self.temperature = nn.Parameter(torch.ones(_HEADS, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, 1, 1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, nh, d = self.window, self.heads, c // self.heads
        gh, gw = h // ws, w // ws
        t = self.qkv_dwconv(self.qkv(x)).view(b, 3, nh, d, gh, ws, gw, ws)
        if self.grid:  # groups: offset inside the window; features: the windows
            t = t.permute(1, 0, 5, 7, 2, 3, 4, 6).reshape(3, b, ws * ws, nh, d, gh * gw)
        else:  # groups: windows; features: the pixels of a window
            t = t.permute(1, 0, 4, 6, 2, 3, 5, 7).reshape(3, b, gh * gw, nh, d, ws * ws)
        q, k, v = t.unbind(0)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        out = attn @ v  # (b, groups, heads, d, features)
        if self.grid:
            out = out.view(b, ws, ws, nh, d, gh, gw).permute(0, 3, 4, 5, 1, 6, 2)
        else:
            out = out.view(b, gh, gw, nh, d, ws, ws).permute(0, 3, 4, 1, 5, 2, 6)
        return self.project_out(out.reshape(b, c, h, w))


class ConvPreNorm(nn.Module):
    """Channel LayerNorm -> ``fn`` -> residual."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


class OSABlock(nn.Module):
    def __init__(self, dim: int, window: int, with_pe: bool) -> None:
        super().__init__()
        ff = lambda: ConvPreNorm(dim, GatedFeedForward(dim))  # noqa: E731
        # keys are the indices of upstream's Sequential; its reshapes (1, 3, 7, 9) hold no weights
        self.layer = nn.ModuleDict(
            {
                "0": MBConv(dim),
                "2": PreNormAttention(dim, window, with_pe, grid=False),
                "4": ff(),
                "5": ConvPreNorm(dim, ChannelAttention(dim, window, grid=False)),
                "6": ff(),
                "8": PreNormAttention(dim, window, with_pe, grid=True),
                "10": ff(),
                "11": ConvPreNorm(dim, ChannelAttention(dim, window, grid=True)),
                "12": ff(),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.layer.values():
            x = m(x)
        return x


class ESA(nn.Module):
    """Enhanced spatial attention (from RFANet): a coarse, pooled view of the features gates them."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, channels, 1)
        self.conv_f = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 2, 0)
        self.conv3 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv4 = nn.Conv2d(channels, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        coarse = self.conv3(F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3))
        coarse = F.interpolate(coarse, size=x.shape[2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(coarse + self.conv_f(c1)))


class OSAG(nn.Module):
    def __init__(self, dim: int, block_num: int, window: int, with_pe: bool, bias: bool) -> None:
        super().__init__()
        self.residual_layer = nn.Sequential(
            *(OSABlock(dim, window, with_pe) for _ in range(block_num)), nn.Conv2d(dim, dim, 1, bias=bias)
        )
        self.esa = ESA(max(dim // 4, 16), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.esa(self.residual_layer(x) + x)


class OmniSR(SRNet):
    arch_name = "omnisr"

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_feat: int = 64,
        block_num: int = 1,
        res_num: int = 5,
        window_size: int = 8,
        pe: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__(
            scale=scale,
            in_channels=in_channels,
            out_channels=out_channels,
            num_feat=num_feat,
            block_num=block_num,
            res_num=res_num,
            window_size=window_size,
            pe=pe,
            bias=bias,
        )
        if num_feat % _HEADS:
            raise ValueError(f"num_feat ({num_feat}) must be divisible by {_HEADS} heads")
        self.window_size = window_size
        self.input = nn.Conv2d(in_channels, num_feat, 3, 1, 1, bias=bias)
        self.residual_layer = nn.Sequential(
            *(OSAG(num_feat, block_num, window_size, pe, bias) for _ in range(res_num))
        )
        self.output = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=bias)
        self.up = nn.Sequential(
            nn.Conv2d(num_feat, out_channels * scale * scale, 3, 1, 1, bias=bias), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ws = self.window_size
        least = ws * math.ceil(15 / ws)  # the ESA's smallest input
        ph, pw = max((-h) % ws, least - h), max((-w) % ws, least - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))  # zeros, as upstream
        feat = self.input(x)
        out = self.up(self.output(self.residual_layer(feat)) + feat)
        return out[:, :, : h * self.scale, : w * self.scale]


_BLOCK = "residual_layer.0.residual_layer.0.layer."


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(
        sd,
        "input.weight",
        "output.weight",
        "up.0.weight",
        _BLOCK + "0.fn.0.weight",
        _BLOCK + "2.fn.to_qkv.weight",
        _BLOCK + "5.fn.temperature",
        "residual_layer.0.esa.conv1.weight",
    ):
        return None
    num_feat, in_ch = (int(v) for v in sd["input.weight"].shape[:2])
    res_num = count_indexed(sd, "residual_layer.", ".esa.conv1.weight")
    block_num = count_indexed(sd, "residual_layer.0.residual_layer.", ".layer.0.fn.0.weight")
    if not res_num or not block_num:
        return None
    window, pe = 8, False  # without the bias table the window size is not in the weights: upstream's 8
    table = sd.get(_BLOCK + "2.fn.rel_pos_bias.weight")
    if table is not None:
        span = math.isqrt(int(table.shape[0]))
        if span * span != table.shape[0] or span % 2 == 0:
            return None
        window, pe = (span + 1) // 2, True
    up = int(sd["up.0.weight"].shape[0])
    for out_ch in dict.fromkeys((in_ch, 3, 1)):
        s = shuffle_scale(up, out_ch)
        if s:
            return dict(
                scale=s,
                in_channels=in_ch,
                out_channels=out_ch,
                num_feat=num_feat,
                block_num=block_num,
                res_num=res_num,
                window_size=window,
                pe=pe,
                bias="input.bias" in sd,
            )
    return None


SPEC = register(
    ArchSpec(
        name="omnisr",
        title="Omni-SR (Wang et al., omni aggregation network)",
        build=OmniSR,
        detect=_detect,
        supports_fp16=True,
        supports_bf16=True,
        size_multiple=lambda hp: int(hp["window_size"]),
        tiling="discouraged",
        receptive_field=lambda hp: None,  # grid attention and squeeze-excitation see the whole input
        # qkv triples and gated feed-forward doubles; attention scores, 4 heads x w^2 per pixel
        extra_activations=lambda hp, feat: 8 * feat + _HEADS * int(hp["window_size"]) ** 2,
        licence="Apache-2.0",
    )
)
