"""DAT on a whole image in bands of rows: the whole-image result, with a fraction of its memory.

Every DAT block has a global term: the AIM's channel gate pools the whole map, and a channel block's
attention is a C x C product over all pixels. Tiles cannot see those, so a tiled DAT is a slightly different
rendering (README, "DAT-light"). But each global term is a sum over pixels, so a block runs here in two sweeps
over bands of rows: the first adds up every band's share of the sums (in float64), the second computes each
band's output with the finished sums. Window attention, the depth-wise convolutions and the 3x3 convolutions
are local: a band reads the rows its windows and kernels cover (the shifted windows wrap around the padded
map, as ``torch.roll`` does in the whole-image pass). Between blocks three maps of ``embed_dim`` channels are
kept whole; the q/k/v projection, the attention windows and the SGFN's hidden channels exist for one band at
a time (one per worker: on the CPU engine the bands of a sweep run on its workers at once, each torch op
single-threaded, :func:`superres.archs.base.parallel_items`). The result equals :meth:`DAT.forward` up to
float rounding (the sums are added in another order, the same order however the bands were scheduled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from .base import map_attention, map_attention_available, parallel_items, report_step

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .dat import DAT, ChannelAttention, DATBlock, ResidualGroup, SpatialAttention

# LR pixels per band on a CPU: a band's temporaries stay near 100 MB for DAT-light, and the engine's two
# workers take bands at once (64-row bands ran a 256x256 map 1.25x faster than the whole-image pass there)
BAND_PIXELS = 16384
GPU_BAND_FACTOR = 16  # larger bands off the CPU, where small kernels are launch-bound (not measured: no GPU here)
UPSAMPLE_HALO = 4  # rows of context for the "pixelshuffle" tail (4 convs over growing resolutions; 1 for direct)

Span = tuple[int, int]


def band_rows(width: int, multiple: int, device: torch.device | None = None) -> int:
    """Rows per band for a map ``width`` wide: about BAND_PIXELS, a multiple of the window size."""
    pixels = BAND_PIXELS * (GPU_BAND_FACTOR if device is not None and device.type != "cpu" else 1)
    rows = max(1, pixels // max(width, 1)) // multiple * multiple
    return max(multiple, rows)


def spans(height: int, rows: int) -> list[Span]:
    return [(a, min(a + rows, height)) for a in range(0, height, rows)]


def _halo(a: int, b: int, height: int, r: int) -> Span:
    return max(a - r, 0), min(b + r, height)


def nchw(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) tokens seen as an NCHW image without a copy (channels-last strides)."""
    return x.permute(0, 3, 1, 2)


def nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _local(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, a: int, b: int, r: int) -> torch.Tensor:
    """``fn`` (a map of NHWC rows to NHWC rows with a receptive radius of ``r`` rows) at rows a..b of ``x``."""
    lo, hi = _halo(a, b, x.shape[1], r)
    return fn(x[:, lo:hi])[:, a - lo : b - lo]


def _each(bands: list[Span], fn: Callable[[int, int], None]) -> None:
    """``fn(a, e)`` for every band (rows a..e), on the engine's workers when it lends them: bands write
    disjoint rows, so they run at once."""
    parallel_items(lambda i: fn(*bands[i]), len(bands))


def _summed(bands: list[Span], fn: Callable[[int, int], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """The sums over bands of ``fn(a, e)``'s tensors, added in band order (the same float64 sums however the
    bands were scheduled)."""
    parts: list[Any] = [None] * len(bands)

    def one(i: int) -> None:
        parts[i] = fn(*bands[i])

    parallel_items(one, len(bands))
    total = parts[0]
    for part in parts[1:]:
        total = tuple(t + p for t, p in zip(total, part))
    return total


def _channel_gate(attn: nn.Module, mean: torch.Tensor) -> torch.Tensor:
    """The AIM's channel map from an already pooled (B, C) mean: ``channel_interaction`` past its pooling."""
    return torch.sigmoid(nhwc(attn.channel_interaction[1:](mean[:, :, None, None])))


# ---- spatial blocks ---------------------------------------------------------------------------------------
def _window_rows(a: int, b: int, wh: int, sh: int, hp: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The window rows (of the map rolled up by ``sh``) that hold rows a..b, and the map rows they hold, in
    rolled order. A rolled row r is map row (r + sh) mod hp."""
    k = torch.unique(((torch.arange(a, b) - sh) % hp) // wh)
    rows = ((k[:, None] * wh + sh + torch.arange(wh)) % hp).flatten()
    return k, rows


def _spatial_gate(attn: SpatialAttention, norm: nn.Module, x: torch.Tensor, bands: list[Span]) -> torch.Tensor:
    """First sweep of a spatial block: the conv branch's global mean -> the channel gate of the attention."""
    b, h, w, c = x.shape
    weight, bias = attn.qkv.weight[2 * c:], None if attn.qkv.bias is None else attn.qkv.bias[2 * c:]

    def part(a: int, e: int) -> tuple[torch.Tensor]:
        conv = _local(lambda t: attn.conv_branch(F.linear(norm(t), weight, bias)), x, a, e, 1)
        return (conv.sum((1, 2), dtype=torch.float64),)

    (total,) = _summed(bands, part)
    return _channel_gate(attn, (total / (h * w)).to(x.dtype))


def _spatial_rows(attn: SpatialAttention, norm: nn.Module, x: torch.Tensor, a: int, e: int,
                  gate: torch.Tensor, masks: dict[Any, Any]) -> torch.Tensor:
    """Second sweep of a spatial block: its output at rows a..e."""
    b, h, w, c = x.shape
    m = max(attn.split)
    hp, wp = -(-h // m) * m, -(-w // m) * m
    plans = []
    for branch in (0, 1):
        wh, sh = attn.windows[branch][0], attn.shifts[branch][0] if attn.shifted else 0
        plans.append(_window_rows(a, e, wh, sh, hp))
    lo, hi = _halo(a, e, h, 1)
    need = torch.unique(torch.cat([rows for _, rows in plans] + [torch.arange(lo, hi)]))  # sorted
    real = need[need < h]  # rows past the image are the zero padding
    qkv = x.new_zeros(b, need.numel(), wp, 3 * c)
    qkv[:, : real.numel(), :w] = attn.qkv(norm(x[:, real]))
    where = torch.full((hp,), -1, dtype=torch.long)
    where[need] = torch.arange(need.numel())
    # the compiled attention where the engine lends it, straight into the band's rows
    attended: torch.Tensor | None = qkv.new_empty(b, e - a, w, c) if map_attention_available() else None
    for branch, (k, rows) in enumerate(plans if attended is not None else []):
        outrow = torch.where((rows >= a) & (rows < e), rows - a, -1)
        if not map_attention(attn.map_windows(qkv, branch, where[rows], attended, outrow, masks, hp, k)):
            attended = None
            break
    if attended is None:
        qkv5 = qkv.view(b, need.numel(), wp, 3, c)
        half = c // 2
        parts = []
        for branch, (k, rows) in enumerate(plans):
            piece = qkv5[:, where[rows], :, :, branch * half:(branch + 1) * half]
            out = attn.attend_rows(piece, branch, masks, hp, k)
            keep = ((rows >= a) & (rows < e)).nonzero().flatten()
            keep = keep[torch.argsort(rows[keep])]
            parts.append(out[:, keep, :w])
        attended = torch.cat(parts, dim=-1)
    first = int(where[lo])  # rows lo..hi are consecutive in ``need``
    conv = attn.conv_branch(qkv[:, first:first + hi - lo, :w, 2 * c:])[:, a - lo : e - lo]
    return attn.proj(attended * gate + conv * attn.spatial_gate(attended))


# ---- channel blocks ---------------------------------------------------------------------------------------
def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, n, C) -> (B, heads, d, n), the layout of the channel attention."""
    b, n, c = t.shape
    return t.reshape(b, n, heads, c // heads).permute(0, 2, 3, 1)


def _channel_sums(attn: ChannelAttention, norm: nn.Module, x: torch.Tensor,
                  bands: list[Span]) -> tuple[torch.Tensor, torch.Tensor]:
    """First sweep of a channel block: the C x C attention from the summed Gram matrix and row norms, and
    the channel gate from the mean of the attended map (= attention @ mean of v, since it is linear in v)."""
    b, h, w, c = x.shape
    heads = attn.num_heads

    def part(a: int, e: int) -> tuple[torch.Tensor, ...]:
        q, k, v = attn.qkv(norm(x[:, a:e])).reshape(b, -1, 3 * c).split(c, dim=-1)
        q, k, v = _heads(q, heads), _heads(k, heads), _heads(v, heads)
        return ((q @ k.transpose(-2, -1)).double(), q.square().sum(-1, dtype=torch.float64),
                k.square().sum(-1, dtype=torch.float64), v.sum(-1, dtype=torch.float64))

    gram, qq, kk, vs = _summed(bands, part)
    eps = 1e-12  # F.normalize's
    cos = gram / (qq.sqrt().clamp_min(eps)[..., :, None] * kk.sqrt().clamp_min(eps)[..., None, :])
    amap = torch.softmax(cos.to(x.dtype) * attn.temperature, dim=-1)  # (B, heads, d, d)
    mean = (amap.double() @ (vs / (h * w))[..., None])[..., 0].reshape(b, c)
    return amap, _channel_gate(attn, mean.to(x.dtype))


def _channel_rows(attn: ChannelAttention, norm: nn.Module, x: torch.Tensor, a: int, e: int,
                  amap: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Second sweep of a channel block: its output at rows a..e."""
    b, h, w, c = x.shape
    lo, hi = _halo(a, e, h, 1)
    v_img = attn.qkv(norm(x[:, lo:hi]))[..., 2 * c:]
    conv = attn.conv_branch(v_img)[:, a - lo : e - lo]
    v = _heads(v_img[:, a - lo : e - lo].reshape(b, -1, c), attn.num_heads)
    attended = (amap @ v).permute(0, 3, 1, 2).reshape(b, e - a, w, c)
    return attn.proj(attended * attn.spatial_gate(conv) + conv * gate)


# ---- blocks, groups, the network ------------------------------------------------------------------------------
def block(blk: DATBlock, x: torch.Tensor, mid: torch.Tensor, out: torch.Tensor, bands: list[Span],
          masks: dict[Any, Any]) -> None:
    """One DAT block, ``x`` -> ``out`` (which may be ``x``); ``mid`` receives x + attention."""
    attn = blk.attn
    if hasattr(attn, "split"):  # spatial
        gate = _spatial_gate(attn, blk.norm1, x, bands)

        def attend(a: int, e: int) -> None:
            mid[:, a:e] = x[:, a:e] + _spatial_rows(attn, blk.norm1, x, a, e, gate, masks)
    else:
        amap, gate = _channel_sums(attn, blk.norm1, x, bands)

        def attend(a: int, e: int) -> None:
            mid[:, a:e] = x[:, a:e] + _channel_rows(attn, blk.norm1, x, a, e, amap, gate)

    def ffn(a: int, e: int) -> None:  # the SGFN's depth-wise conv reads one row either side
        out[:, a:e] = mid[:, a:e] + _local(lambda t: blk.ffn(blk.norm2(t)), mid, a, e, 1)

    _each(bands, attend)
    _each(bands, ffn)


def _tail_radius(net: DAT) -> int:
    return 1 if net.hyperparams["resi_connection"] == "1conv" else 2


def group(layer: ResidualGroup, x: torch.Tensor, mid: torch.Tensor, y: torch.Tensor, bands: list[Span],
          masks: dict[Any, Any], radius: int, step: Callable[[], None] = lambda: None) -> None:
    """One residual group, in place on ``x``; ``mid`` and ``y`` are scratch maps of its size; ``step`` is
    called after each block."""
    for i, blk in enumerate(layer.blocks):
        block(blk, x if i == 0 else y, mid, y, bands, masks)
        step()
    source = y if layer.blocks else x

    def tail(a: int, e: int) -> None:
        x[:, a:e] += _local(lambda t: nhwc(layer.conv(nchw(t))), source, a, e, radius)

    _each(bands, tail)


def _features(net: DAT, pixels: torch.Tensor, bands: list[Span],
              first: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The body's output plus the shallow features (what the tail upsamples) of the NHWC input ``pixels``,
    band by band; the body's whole maps live only here."""
    b, h, w, _ = pixels.shape
    tokens = pixels.new_empty(b, h, w, net.conv_first.out_channels)

    def embed(a: int, e: int) -> None:
        tokens[:, a:e] = net.before_RG(_local(first, pixels, a, e, 1))

    _each(bands, embed)
    mid, y = torch.empty_like(tokens), torch.empty_like(tokens)
    masks: dict[Any, Any] = {}
    radius = _tail_radius(net)
    steps, done = sum(len(layer.blocks) for layer in net.layers) + 1, [0]

    def step() -> None:  # progress: one step per block, the tail is the last
        done[0] += 1
        report_step(done[0] / steps)

    for layer in net.layers:
        group(layer, tokens, mid, y, bands, masks, radius, step)
    feat = mid  # conv_after_body(norm(.)) + the shallow features, recomputed from the input

    def body_out(a: int, e: int) -> None:
        feat[:, a:e] = (_local(lambda t: nhwc(net.conv_after_body(nchw(net.norm(t)))), tokens, a, e, radius)
                        + _local(first, pixels, a, e, 1))

    _each(bands, body_out)
    return feat


def forward(net: DAT, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """:meth:`DAT.forward` in bands of ``rows`` rows (default: :func:`band_rows`), for inference."""
    mean = net.mean.to(x.dtype)
    x = (x - mean) * net.img_range
    b, _, h, w = x.shape
    bands = spans(h, rows or band_rows(w, max(net.hyperparams["split_size"]), x.device))

    def first(t: torch.Tensor) -> torch.Tensor:  # conv_first on NHWC-indexed rows of the NCHW input
        return nhwc(net.conv_first(nchw(t)))

    feat = _features(net, nhwc(x), bands, first)
    s = net.scale
    out = x.new_empty(b, int(net.hyperparams["in_channels"]), h * s, w * s)
    direct = net.hyperparams["upsampler"] != "pixelshuffle"

    def upsample(a: int, e: int) -> None:
        lo, hi = _halo(a, e, h, 1 if direct else UPSAMPLE_HALO)
        up = net.upsample_features(nchw(feat[:, lo:hi]))
        out[:, :, a * s:e * s] = up[:, :, (a - lo) * s:(e - lo) * s]

    _each(bands, upsample)
    report_step(1.0)
    return (out / net.img_range + mean).contiguous()
