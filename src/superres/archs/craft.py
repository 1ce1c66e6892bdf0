"""CRAFT (Li et al., ICCV 2023, "Feature Modulation Transformer: Cross-Refinement and Spatial-Frequency
Feature Fusion for Super-Resolution" / CRAFT-SR).

Each group interleaves a transformer branch and a high-frequency CNN branch and fuses them: two shifted
rectangle-window self-attention blocks (SRWAB: half the channels attend in ``s0 x s1`` windows, the other
half in ``s1 x s0`` windows, a depth-wise conv on v added, relative position bias from a small MLP over
offsets), a high-frequency enhancement block on the same input (HFERB: a 3x3 conv on half the channels,
max-pool + 1x1 on the other half), and a fusion block (HFB) where the transformer features attend to the
high-frequency ones by transposed (channel) attention, then a gated depth-wise conv feed-forward.

Source: https://github.com/AVC2-UESTC/CRAFT-SR (``basicsr/archs/craft_arch.py``); licence Apache-2.0 (the
repository's LICENSE.txt), covering the released code and weights. Written here from the paper; the upstream
code was read only to learn the key layout: ``conv_first``; ``layers.{i}.residual_group.srwa_blocks.{j}``
(``norm1``, ``qkv``, ``proj``, ``get_v``, ``attns.{0,1}.pos.{pos_proj, pos1.{0,2}, pos2.{0,2}, pos3.{0,2}}``,
``norm2``, ``mlp.fc{1,2}``; two per depth step), ``...hfer_blocks.{k}.{conv, fc, last_fc}``,
``...hf_blocks.{k}.{norm1.body, attn.{temperature, q, q_dwconv, kv, kv_dwconv, project_out}, norm2.body,
ffn.{project_in, dwconv, project_out}}``; ``layers.{i}.conv``; ``norm.body``; ``conv_after_body``;
``upsample.0``; and four top-level buffers: ``relative_position_index_h`` / ``_v`` and ``biases_h`` / ``_v``
(the offsets the position MLP reads), one pair per window orientation.

Kept as upstream, because the released weights were trained so: the shifted windows use no attention mask
(tokens rolled across the border attend to each other), and the input is always mirror-padded by 1 to
``window_size`` pixels past its size, even when the size is already a multiple (then cropped back).
``window_size`` (16) and ``img_range`` (1.0) are not stored in the weights. The fusion block's channel
attention sums over the whole image, so tiles never equal the whole image (tiling "discouraged",
``receptive_field`` None).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .atd import mirror_extend
from .attention import window_attention
from .base import ArchSpec, SRNet, StateDict, count_indexed, register, shuffle_scale
from .edsr import DIV2K_RGB_MEAN

_FFN_EXPANSION = 2.66  # the fusion block's feed-forward width, fixed upstream


def rect_offsets(hs: int, ws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For an ``hs x ws`` window: the (dy, dx) offsets as float rows ((2hs-1)(2ws-1), 2) that the position MLP
    reads, and the (N, N) index of each token pair's offset into them."""
    dy, dx = torch.meshgrid(torch.arange(1 - hs, hs), torch.arange(1 - ws, ws), indexing="ij")
    offsets = torch.stack([dy.flatten(), dx.flatten()], dim=1).float()
    ys, xs = torch.meshgrid(torch.arange(hs), torch.arange(ws), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    index = (ys[:, None] - ys[None, :] + hs - 1) * (2 * ws - 1) + (xs[:, None] - xs[None, :] + ws - 1)
    return offsets, index


def rect_partition(x: torch.Tensor, hs: int, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, hs*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // hs, hs, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // hs) * (w // ws), hs * ws, c)


def rect_merge(x: torch.Tensor, hs: int, ws: int, h: int, w: int) -> torch.Tensor:
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // hs, w // ws, hs, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class PositionMLP(nn.Module):
    """Official name DynamicPosBias (non-residual): offsets -> Linear -> 3 x (LayerNorm, ReLU, Linear)."""

    def __init__(self, pos_dim: int, num_heads: int) -> None:
        super().__init__()
        self.pos_proj = nn.Linear(2, pos_dim)
        self.pos1 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(inplace=True), nn.Linear(pos_dim, pos_dim))
        self.pos2 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(inplace=True), nn.Linear(pos_dim, pos_dim))
        self.pos3 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(inplace=True), nn.Linear(pos_dim, num_heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


class RectAttention(nn.Module):
    """Official name Attention_regular: attention inside ``hs x ws`` rectangles (only ``pos`` has weights)."""

    def __init__(self, dim: int, num_heads: int, hs: int, ws: int) -> None:
        super().__init__()
        self.num_heads, self.hs, self.ws = num_heads, hs, ws
        self.pos = PositionMLP(dim // 4 // 4, num_heads)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: tuple[int, int],
                offsets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """q, k, v: (B, H, W, C) -> (B, H, W, C)."""
        h, w = size
        b, c = q.shape[0], q.shape[-1]
        heads, n = self.num_heads, self.hs * self.ws

        def split(t: torch.Tensor) -> torch.Tensor:
            t = rect_partition(t, self.hs, self.ws)
            return t.view(b, -1, n, heads, c // heads).transpose(2, 3)  # (B, nW, heads, N, d)

        table = self.pos(offsets.to(q.dtype))  # (offsets, heads)
        bias = table[index.reshape(-1)].view(n, n, heads).permute(2, 0, 1)
        out = window_attention(split(q), split(k), split(v), bias)
        return rect_merge(out.transpose(2, 3).reshape(b, -1, n, c), self.hs, self.ws, h, w)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SRWAB(nn.Module):
    """Shifted rectangle-window attention block: half the channels in s0 x s1 windows, half in s1 x s0."""

    def __init__(self, dim: int, num_heads: int, split: tuple[int, int], shifted: bool, mlp_ratio: float,
                 qkv_bias: bool) -> None:
        super().__init__()
        s0, s1 = split
        self.shift = (s0 // 2, s1 // 2) if shifted else (0, 0)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.get_v = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.attns = nn.ModuleList([RectAttention(dim // 2, num_heads // 2, s0, s1),
                                    RectAttention(dim // 2, num_heads // 2, s1, s0)])
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, size: tuple[int, int],
                buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        h, w = size
        b, n, c = x.shape
        half = c // 2
        qkv = self.qkv(self.norm1(x)).view(b, h, w, 3, c)
        lcm = self.get_v(qkv[..., 2, :].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # local context on v
        outs = []
        for branch, (parts, (dy, dx)) in enumerate(((slice(0, half), self.shift),
                                                     (slice(half, c), self.shift[::-1]))):
            t = qkv[..., parts]
            if dy or dx:
                t = torch.roll(t, shifts=(-dy, -dx), dims=(1, 2))
            suffix = "h" if branch == 0 else "v"
            y = self.attns[branch](t[..., 0, :], t[..., 1, :], t[..., 2, :], size,
                                   buffers[f"biases_{suffix}"], buffers[f"relative_position_index_{suffix}"])
            if dy or dx:
                y = torch.roll(y, shifts=(dy, dx), dims=(1, 2))
            outs.append(y)
        y = self.proj((torch.cat(outs, dim=-1) + lcm).reshape(b, n, c))
        x = x + y
        return x + self.mlp(self.norm2(x))


class HFERB(nn.Module):
    """High-frequency enhancement: 3x3 conv + GELU on half the channels, max-pool + 1x1 + GELU on the rest."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mid = dim // 2
        self.conv = nn.Conv2d(self.mid, self.mid, 3, 1, 1)
        self.fc = nn.Conv2d(dim - self.mid, dim - self.mid, 1)
        self.last_fc = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = F.gelu(self.conv(x[:, : self.mid]))
        high = F.gelu(self.fc(F.max_pool2d(x[:, self.mid:], 3, 1, 1)))
        return x + self.last_fc(torch.cat([low, high], dim=1))


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (``body.weight``/``body.bias``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CrossChannelAttention(nn.Module):
    """Transposed attention: queries from the high-frequency map, keys/values from the window features;
    attention between channels (per head), each normalised over all pixels."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=False)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, 1, 1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        b, c, h, w = low.shape
        heads = self.num_heads
        q = self.q_dwconv(self.q(high)).view(b, heads, c // heads, h * w)
        k, v = self.kv_dwconv(self.kv(low)).view(b, 2, heads, c // heads, h * w).unbind(1)
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        return self.project_out((attn.softmax(dim=-1) @ v).view(b, c, h, w))


class GatedFFN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = int(dim * _FFN_EXPANSION)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * g)


class HFB(nn.Module):
    """Fusion: low + attention(norm low, high); + gated FFN."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(dim)
        self.attn = CrossChannelAttention(dim, num_heads)
        self.norm2 = ChannelNorm(dim)
        self.ffn = GatedFFN(dim)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = low + self.attn(self.norm1(low), high)
        return x + self.ffn(self.norm2(x))


class CRFB(nn.Module):
    """One group's blocks: per depth step, two SRWABs and one HFERB on the same input, fused by an HFB."""

    def __init__(self, dim: int, depth: int, num_heads: int, split: tuple[int, int], mlp_ratio: float,
                 qkv_bias: bool) -> None:
        super().__init__()
        self.srwa_blocks = nn.ModuleList(
            [SRWAB(dim, num_heads, split, j % 2 == 1, mlp_ratio, qkv_bias) for j in range(2 * depth)])
        self.hfer_blocks = nn.ModuleList([HFERB(dim) for _ in range(depth)])
        self.hf_blocks = nn.ModuleList([HFB(dim, num_heads) for _ in range(depth)])

    def forward(self, x: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        b, c, h, w = x.shape
        for i, (hfer, hf) in enumerate(zip(self.hfer_blocks, self.hf_blocks)):
            low = x.flatten(2).transpose(1, 2)
            low = self.srwa_blocks[2 * i + 1](self.srwa_blocks[2 * i](low, (h, w), buffers), (h, w), buffers)
            x = hf(low.transpose(1, 2).reshape(b, c, h, w), hfer(x))
        return x


class RCRFG(nn.Module):
    def __init__(self, group: CRFB, dim: int) -> None:
        super().__init__()
        self.residual_group = group
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.conv(self.residual_group(x, buffers)) + x


class CRAFT(SRNet):
    arch_name = "craft"

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        embed_dim: int = 48,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (6, 6, 6, 6),
        split_size_0: int = 4,
        split_size_1: int = 16,
        window_size: int = 16,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        resi_connection: str = "1conv",
        img_range: float = 1.0,
    ) -> None:
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        super().__init__(
            scale=scale, in_channels=in_channels, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
            split_size_0=split_size_0, split_size_1=split_size_1, window_size=window_size,
            mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, resi_connection=resi_connection, img_range=img_range,
        )
        if resi_connection not in ("1conv", "identity"):
            raise ValueError(f"unknown resi_connection {resi_connection!r}; expected '1conv' or 'identity'")
        if len(depths) != len(num_heads) or not depths or any(
                h < 2 or h % 2 or embed_dim % h for h in num_heads):
            raise ValueError("depths and num_heads must have equal length; heads even and dividing embed_dim")
        if embed_dim % 2 or embed_dim // 2 // 4 // 4 < 1:
            raise ValueError(f"embed_dim {embed_dim} is too small (the position MLP needs embed_dim >= 32)")
        if window_size % split_size_0 or window_size % split_size_1:
            raise ValueError(f"window_size {window_size} must be a multiple of both split sizes")
        if scale < 1:
            raise ValueError(f"scale must be positive, not {scale}")
        self.window_size = window_size
        self.img_range = float(img_range)
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.0,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)
        biases_h, index_h = rect_offsets(split_size_0, split_size_1)
        biases_v, index_v = rect_offsets(split_size_1, split_size_0)
        self.register_buffer("relative_position_index_h", index_h)
        self.register_buffer("relative_position_index_v", index_v)
        self.register_buffer("biases_v", biases_v)
        self.register_buffer("biases_h", biases_h)

        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        split = (split_size_0, split_size_1)
        self.layers = nn.ModuleList(
            [RCRFG(CRFB(embed_dim, d, h, split, mlp_ratio, qkv_bias), embed_dim)
             for d, h in zip(depths, num_heads)])
        self.norm = ChannelNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1) if resi_connection == "1conv" \
            else nn.Identity()
        self.upsample = nn.Sequential(nn.Conv2d(embed_dim, in_channels * scale * scale, 3, 1, 1),
                                      nn.PixelShuffle(scale))
        self.apply(self._init_linear)

    @staticmethod
    def _init_linear(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ws = self.window_size
        x = mirror_extend(x, ws - h % ws, ws - w % ws)  # as upstream: a whole window when h % ws == 0
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        buffers = {"relative_position_index_h": self.relative_position_index_h,
                   "relative_position_index_v": self.relative_position_index_v,
                   "biases_h": self.biases_h, "biases_v": self.biases_v}
        feat = self.conv_first(x)
        body = feat
        for layer in self.layers:
            body = layer(body, buffers)
        feat = self.conv_after_body(self.norm(body)) + feat
        out = self.upsample(feat) / self.img_range + mean
        return out[:, :, : h * self.scale, : w * self.scale]


_SRWA = "layers.{i}.residual_group.srwa_blocks.{j}."
_HF = "layers.{i}.residual_group.hf_blocks.{j}."


def _split_sizes(sd: StateDict) -> tuple[int, int] | None:
    """(s0, s1) whose offsets and indices are exactly the stored buffers (the pair is tried both ways)."""
    index_h, biases_h = sd["relative_position_index_h"], sd["biases_h"]
    index_v, biases_v = sd["relative_position_index_v"], sd["biases_v"]
    if index_h.ndim != 2 or biases_h.ndim != 2 or index_h.shape[0] != index_h.shape[1]:
        return None
    area = int(index_h.shape[0])
    for s0 in range(1, area + 1):
        if area % s0:
            continue
        s1 = area // s0
        if biases_h.shape != ((2 * s0 - 1) * (2 * s1 - 1), 2):  # shapes first: build only the candidate
            continue
        bh, ih = rect_offsets(s0, s1)
        bv, iv = rect_offsets(s1, s0)
        if (torch.equal(ih, index_h.long()) and torch.equal(bh, biases_h.float())
                and iv.shape == index_v.shape and torch.equal(iv, index_v.long())
                and bv.shape == biases_v.shape and torch.equal(bv, biases_v.float())):
            return s0, s1
    return None


def _detect(sd: StateDict) -> dict[str, Any] | None:
    s00, h00 = _SRWA.format(i=0, j=0), _HF.format(i=0, j=0)
    needed = ("relative_position_index_h", "relative_position_index_v", "biases_h", "biases_v",
              "conv_first.weight", "norm.body.weight", "upsample.0.weight", s00 + "qkv.weight",
              s00 + "attns.0.pos.pos_proj.weight", s00 + "mlp.fc1.weight", h00 + "attn.temperature",
              "layers.0.residual_group.hfer_blocks.0.last_fc.weight")
    if not all(k in sd for k in needed):
        return None
    first = sd["conv_first.weight"]
    if first.ndim != 4:
        return None
    embed_dim, in_ch = int(first.shape[0]), int(first.shape[1])
    num_layers = count_indexed(sd, "layers.")
    depths = [count_indexed(sd, f"layers.{i}.residual_group.hf_blocks.") for i in range(num_layers)]
    if not num_layers or 0 in depths:
        return None
    temps = [sd.get(_HF.format(i=i, j=0) + "attn.temperature") for i in range(num_layers)]
    if any(t is None or t.ndim != 3 for t in temps):
        return None
    num_heads = [int(t.shape[0]) for t in temps]  # type: ignore[union-attr]
    split = _split_sizes(sd)
    scale = shuffle_scale(int(sd["upsample.0.weight"].shape[0]), in_ch)
    if split is None or scale is None:
        return None
    s0, s1 = split
    window = 16 if 16 % s0 == 0 and 16 % s1 == 0 else math.lcm(s0, s1)
    hidden = int(sd[s00 + "mlp.fc1.weight"].shape[0])
    return dict(scale=scale, in_channels=in_ch, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
                split_size_0=s0, split_size_1=s1, window_size=window, mlp_ratio=hidden / embed_dim,
                qkv_bias=s00 + "qkv.bias" in sd,
                resi_connection="1conv" if "conv_after_body.weight" in sd else "identity", img_range=1.0)


SPEC = register(
    ArchSpec(
        name="craft",
        title="CRAFT (Li et al.)",
        build=CRAFT,
        detect=_detect,
        supports_fp16=False,  # not verified in float16; bfloat16 runs
        supports_bf16=True,
        size_multiple=lambda hp: int(hp["window_size"]),
        tiling="discouraged",
        receptive_field=lambda hp: None,
        extra_activations=lambda hp, feat: 16 * feat,  # rectangle windows, gated FFN (2 x 2.66 x width)
        out_channels_key="in_channels",
        licence="Apache-2.0",
    )
)
