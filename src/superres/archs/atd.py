"""ATD (Zhang et al., CVPR 2024, "Transcending the Limit of Local Window: Advanced Super-Resolution
Transformer with Adaptive Token Dictionary"): ATD and ATD-light.

Each transformer layer projects its tokens once (``wqkv``) and sums three attentions over them:
shifted window self-attention (``attn_win``); token-dictionary cross-attention (``attn_atd``: every pixel
attends, by scaled cosine similarity, to a small learned dictionary of ``num_tokens`` vectors that the layers
of a group refine from the image); and category self-attention (``attn_aca``: pixels are sorted by the
dictionary entry they resemble most and attend within groups of ``category_size`` pixels of the same
category, wherever they lie in the image). A depth-wise conv feed-forward (``convffn``) follows.

Source: https://github.com/LabShuHangGU/Adaptive-Token-Dictionary (``basicsr/archs/atd_arch.py``); licence
Apache-2.0 (the repository's LICENSE.txt), covering the released code and weights. Written here from the
paper; the upstream code was read only to learn the key layout: ``conv_first``, ``patch_embed.norm``,
``relative_position_index_SA`` (top-level buffer), ``layers.{i}.residual_group.td`` (the dictionary),
``layers.{i}.residual_group.layers.{j}.{norm1, norm2, norm3 (InstanceNorm, all but the last layer), sigma,
wqkv, attn_win.{relative_position_bias_table, proj}, attn_atd.{wq, wk, wv, scale}, attn_aca.{proj,
logit_scale}, convffn.{fc1, dwconv.depthwise_conv.0, fc2}}``, ``layers.{i}.conv`` ("1conv"/"3conv"), ``norm``,
``conv_after_body`` and the SwinIR tails (``pixelshuffle``: ``conv_before_upsample.0``, ``upsample``,
``conv_last``; ``pixelshuffledirect`` (ATD-light): ``upsample.0``; ``nearest+conv`` x4; none at x1).
A ``no_norm`` buffer (spandrel's marker for community models trained without the mean shift) is honoured.

Not stored in the weights: ``category_size`` (official: 256 for ATD, 128 for ATD-light, told apart as
spandrel does: the light model is the 48-channel ``pixelshuffledirect`` one) and ``img_range`` (1.0).
Inputs are padded to the window multiple by mirroring (edge pixel repeated, as upstream's flip-concat) and
cropped back. Category grouping makes every output pixel depend on the whole image: tiles never equal the
whole image (tiling "discouraged", ``receptive_field`` None).

Pixels of one category are kept in image order (a stable sort). Upstream sorts with torch's *unstable*
sort, so where a category spans a group boundary, which pixels fall on either side depends on the torch build
and device (CPU and CUDA differ), and an ONNX export could not reproduce it; here the order is defined, the
same in torch and ONNX. The reference fixture was therefore made with upstream's sort made stable (its
JSON records how far upstream's own unstable order moves that output).
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
from .hat import gather_bias, window_index, window_merge, window_partition
from .swinir import init_transformer_weights, shifted_window_mask

_UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
_LOG_MAX_LOGIT = math.log(100.0)  # category attention's logit scale is clamped at 100


class WindowAttention(nn.Module):
    """Window self-attention on the layer's shared q, k, v (``relative_position_bias_table``, ``proj``)."""

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        span = 2 * window_size - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(span * span, num_heads))
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, qkv: torch.Tensor, index: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``qkv``: (B, nW, N, 3C); ``mask``: (nW, N, N) or None."""
        b, nw, n, c3 = qkv.shape
        c = c3 // 3
        heads = self.num_heads
        q, k, v = qkv.view(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
        bias = gather_bias(self.relative_position_bias_table, index, q.dtype).unsqueeze(0)
        if mask is not None:
            bias = bias + mask.to(q.dtype).unsqueeze(1)
        out = window_attention(q, k, v, bias)
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


class DictionaryAttention(nn.Module):
    """Official name ATD_CA: pixels attend to the token dictionary by scaled cosine similarity; also returns
    the similarity map, which sorts pixels into categories and refines the dictionary."""

    def __init__(self, dim: int, num_tokens: int, reduced_dim: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.wq = nn.Linear(dim, reduced_dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, reduced_dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, dim, bias=qkv_bias)
        self.scale = nn.Parameter(torch.full((num_tokens,), 0.5))

    def forward(self, x: torch.Tensor, td: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = F.normalize(self.wq(x), dim=-1)
        k = F.normalize(self.wk(td), dim=-1)
        sharpen = 1 + self.scale.clamp(0, 1) * math.log(self.num_tokens)
        sim = torch.softmax((q @ k.transpose(-2, -1)) * sharpen, dim=-1)  # (B, N, tokens)
        return sim @ self.wv(td), sim


class CategoryAttention(nn.Module):
    """Official name AC_MSA: self-attention within groups of pixels that share a dictionary category."""

    def __init__(self, dim: int, num_heads: int, category_size: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads, self.category_size = num_heads, category_size
        self.proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.logit_scale = nn.Parameter(torch.log(torch.full((1, 1), 10.0)))

    def forward(self, qkv: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
        b, n, c3 = qkv.shape
        c, heads = c3 // 3, self.num_heads
        # Written without data-dependent branches so an ONNX trace keeps working at other sizes: the group
        # size is fixed once the image has at least category_size pixels (always, at the official windows).
        gs = self.category_size if n >= self.category_size else n
        pad = (gs - n % gs) % gs
        # Category first, then position: unique keys, so every runtime (torch on any device, ONNX's TopK)
        # orders the pixels the same way, as a stable sort would.
        position = torch.arange(n, device=sim.device)
        order = torch.sort(sim.argmax(dim=-1) * n + position, dim=-1).indices  # (B, N)
        inverse = torch.argsort(order, dim=-1)
        x = torch.gather(qkv, 1, order.unsqueeze(-1).expand(b, n, c3))
        x = torch.cat([x, x[:, n - pad:].flip(1)], dim=1)  # the last group filled by mirroring, as upstream
        q, k, v = x.view(b, -1, gs, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
        logit = self.logit_scale.clamp(max=_LOG_MAX_LOGIT).exp().to(q.dtype)
        out = window_attention(q * logit, k, v, None, scale=1.0)  # (B, groups, heads, gs, d)
        out = out.permute(0, 1, 3, 2, 4).reshape(b, -1, c)[:, :n]
        return self.proj(torch.gather(out, 1, inverse.unsqueeze(-1).expand(b, n, c)))


class DepthwiseConv(nn.Module):
    """``depthwise_conv.0``: a k x k per-channel conv on the token map, then GELU."""

    def __init__(self, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel_size, 1, (kernel_size - 1) // 2, groups=hidden), nn.GELU())

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        return self.depthwise_conv(x.transpose(1, 2).reshape(b, c, *size)).flatten(2).transpose(1, 2)


class ConvFFN(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden, kernel_size)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.gelu(self.fc1(x))
        return self.fc2(x + self.dwconv(x, size))


class ATDLayer(nn.Module):
    """x + window + dictionary + category attention (one shared qkv); + ConvFFN; then refine the dictionary
    from the image (every layer of a group but the last)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, category_size: int,
                 num_tokens: int, reduced_dim: int, kernel_size: int, mlp_ratio: float, qkv_bias: bool,
                 is_last: bool) -> None:
        super().__init__()
        self.window_size, self.shift, self.is_last = window_size, shift, is_last
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        if not is_last:
            self.norm3 = nn.InstanceNorm1d(num_tokens, affine=True)
            self.sigma = nn.Parameter(torch.zeros(num_tokens, 1))
        self.wqkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_win = WindowAttention(dim, window_size, num_heads)
        self.attn_atd = DictionaryAttention(dim, num_tokens, reduced_dim, qkv_bias)
        self.attn_aca = CategoryAttention(dim, num_heads, category_size, qkv_bias)
        self.convffn = ConvFFN(dim, int(dim * mlp_ratio), kernel_size)

    def forward(self, x: torch.Tensor, td: torch.Tensor, size: tuple[int, int], index: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = size
        b, n, c = x.shape
        ws = self.window_size
        y = self.norm1(x)
        qkv = self.wqkv(y)
        x_atd, sim = self.attn_atd(y, td)
        x_aca = self.attn_aca(qkv, sim)
        grid = qkv.view(b, h, w, 3 * c)
        if self.shift:
            grid = torch.roll(grid, shifts=(-self.shift, -self.shift), dims=(1, 2))
        x_win = window_merge(self.attn_win(window_partition(grid, ws), index, mask if self.shift else None),
                             ws, h, w)
        if self.shift:
            x_win = torch.roll(x_win, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + x_win.reshape(b, n, c) + x_atd + x_aca
        x = x + self.convffn(self.norm2(x), size)
        if not self.is_last:
            weights = torch.softmax(self.norm3(sim.transpose(1, 2)), dim=-1)  # (B, tokens, N)
            keep = torch.sigmoid(self.sigma)
            td = keep * td + (1 - keep) * (weights @ x)
        return x, td


class TokenGroup(nn.Module):
    """Official name BasicBlock: the layers of a group and its dictionary (``td``)."""

    def __init__(self, layers: Sequence[ATDLayer], num_tokens: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.td = nn.Parameter(torch.randn(num_tokens, dim))


def _conv_tail(dim: int, resi_connection: str) -> nn.Module:
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    q = dim // 4
    return nn.Sequential(nn.Conv2d(dim, q, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(q, q, 1),
                         nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(q, dim, 3, 1, 1))


class ATDB(nn.Module):
    """A token group, a conv on the 2-D map, and a skip."""

    def __init__(self, group: TokenGroup, dim: int, resi_connection: str) -> None:
        super().__init__()
        self.residual_group = group
        self.conv = _conv_tail(dim, resi_connection)

    def forward(self, x: torch.Tensor, size: tuple[int, int], index: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        td = self.residual_group.td.unsqueeze(0).expand(x.shape[0], -1, -1)
        y = x
        for layer in self.residual_group.layers:
            y, td = layer(y, td, size, index, mask)
        b, _, c = y.shape
        return self.conv(y.transpose(1, 2).reshape(b, c, *size)).flatten(2).transpose(1, 2) + x


class PatchEmbed(nn.Module):
    """Holds the optional token LayerNorm (``patch_embed.norm``)."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None


def mirror_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple by mirroring with the edge repeated (flip-concat, as upstream)."""
    h, w = x.shape[2:]
    return mirror_extend(x, (-h) % multiple, (-w) % multiple)


def mirror_extend(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Add ``ph`` rows and ``pw`` columns bottom/right, mirrored with the edge repeated."""
    while ph > 0 or pw > 0:  # more than one image side of padding needs repeated mirrors
        th, tw = min(ph, x.shape[2]), min(pw, x.shape[3])
        if th:
            x = torch.cat([x, x.flip(2)[:, :, :th]], 2)
        if tw:
            x = torch.cat([x, x.flip(3)[:, :, :, :tw]], 3)
        ph, pw = ph - th, pw - tw
    return x


class ATD(SRNet):
    arch_name = "atd"

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        embed_dim: int = 210,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 16,
        category_size: int = 256,
        num_tokens: int = 128,
        reducted_dim: int = 20,
        convffn_kernel_size: int = 5,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        patch_norm: bool = True,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        norm: bool = True,
        num_feat: int = 64,
        img_range: float = 1.0,
    ) -> None:
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        super().__init__(
            scale=scale, in_channels=in_channels, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
            window_size=window_size, category_size=category_size, num_tokens=num_tokens,
            reducted_dim=reducted_dim, convffn_kernel_size=convffn_kernel_size, mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, patch_norm=patch_norm, upsampler=upsampler, resi_connection=resi_connection,
            norm=norm, num_feat=num_feat, img_range=img_range,
        )
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f"unknown upsampler {upsampler!r}; expected one of {_UPSAMPLERS}")
        if resi_connection not in ("1conv", "3conv"):
            raise ValueError(f"unknown resi_connection {resi_connection!r}; expected '1conv' or '3conv'")
        if len(depths) != len(num_heads) or not depths or any(embed_dim % h for h in num_heads):
            raise ValueError("depths and num_heads must have equal length and heads must divide embed_dim")
        if (upsampler == "" and scale != 1) or (upsampler != "" and scale < 2) or (
                upsampler == "nearest+conv" and scale != 4):
            raise ValueError(f"upsampler {upsampler!r} does not support scale {scale}")
        if window_size < 2 or category_size < 1 or num_tokens < 1:
            raise ValueError("window_size, category_size and num_tokens must be positive")
        self.window_size = window_size
        self.img_range = float(img_range)
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.0,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)
        if not norm:
            self.register_buffer("no_norm", torch.zeros(1))
        self.register_buffer("relative_position_index_SA", window_index(window_size))

        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        self.layers = nn.ModuleList()
        for depth, heads in zip(depths, num_heads):
            layers = [
                ATDLayer(embed_dim, heads, window_size, 0 if j % 2 == 0 else window_size // 2, category_size,
                         num_tokens, reducted_dim, convffn_kernel_size, mlp_ratio, qkv_bias, j == depth - 1)
                for j in range(depth)
            ]
            self.layers.append(ATDB(TokenGroup(layers, num_tokens, embed_dim), embed_dim, resi_connection))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _conv_tail(embed_dim, resi_connection)
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = make_upsampler(scale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, in_channels * scale * scale, 3, 1, 1),
                                          nn.PixelShuffle(scale))
        elif upsampler == "nearest+conv":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
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
            len(layer.residual_group.layers) > 1 for layer in self.layers) else None
        tokens = x.flatten(2).transpose(1, 2)
        if self.patch_embed.norm is not None:
            tokens = self.patch_embed.norm(tokens)
        for layer in self.layers:
            tokens = layer(tokens, (h, w), self.relative_position_index_SA, mask)
        return self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x = mirror_pad(x, self.window_size)
        norm = bool(self.hyperparams["norm"])
        mean = self.mean.to(x.dtype)
        if norm:
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
            y = F.leaky_relu(self.conv_up2(F.interpolate(y, scale_factor=2, mode="nearest")), 0.2)
            out = self.conv_last(F.leaky_relu(self.conv_hr(y), 0.2))
        else:
            out = x + self.conv_last(feat)
        if norm:
            out = out / self.img_range + mean
        return out[:, :, : h * self.scale, : w * self.scale]


_LAYER = "layers.{i}.residual_group.layers.{j}."


def _detect(sd: StateDict) -> dict[str, Any] | None:
    l00 = _LAYER.format(i=0, j=0)
    needed = ("relative_position_index_SA", "conv_first.weight", "norm.weight", "layers.0.residual_group.td",
              l00 + "wqkv.weight", l00 + "attn_win.relative_position_bias_table", l00 + "attn_atd.scale",
              l00 + "attn_atd.wq.weight", l00 + "attn_aca.logit_scale", l00 + "convffn.fc1.weight",
              l00 + "convffn.dwconv.depthwise_conv.0.weight")
    if not all(k in sd for k in needed) or any(k.startswith("absolute_pos_embed") for k in sd):
        return None
    first = sd["conv_first.weight"]
    if first.ndim != 4:
        return None
    embed_dim, in_ch = int(first.shape[0]), int(first.shape[1])
    num_layers = count_indexed(sd, "layers.")
    depths = [count_indexed(sd, f"layers.{i}.residual_group.layers.") for i in range(num_layers)]
    if not num_layers or 0 in depths:
        return None
    tables = [sd.get(_LAYER.format(i=i, j=0) + "attn_win.relative_position_bias_table")
              for i in range(num_layers)]
    if any(t is None or t.ndim != 2 for t in tables):
        return None
    num_heads = [int(t.shape[1]) for t in tables]  # type: ignore[union-attr]
    sa = sd["relative_position_index_SA"]
    ws = math.isqrt(int(sa.shape[0])) if sa.ndim == 2 else 0
    if ws < 2 or ws * ws != sa.shape[0] or not torch.equal(sa.long(), window_index(ws)):
        return None  # the index is gathered with at every forward: only the values we define load
    num_tokens = int(sd[l00 + "attn_atd.scale"].shape[0])
    reduced = int(sd[l00 + "attn_atd.wq.weight"].shape[0])
    kernel = int(sd[l00 + "convffn.dwconv.depthwise_conv.0.weight"].shape[-1])
    hidden = int(sd[l00 + "convffn.fc1.weight"].shape[0])
    if "layers.0.conv.weight" in sd:
        resi = "1conv"
    elif "layers.0.conv.0.weight" in sd:
        resi = "3conv"
    else:
        return None
    num_feat = 64
    if "conv_up1.weight" in sd:
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
    light = upsampler == "pixelshuffledirect" and embed_dim == 48
    return dict(scale=scale, in_channels=in_ch, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
                window_size=ws, category_size=128 if light else 256, num_tokens=num_tokens,
                reducted_dim=reduced, convffn_kernel_size=kernel, mlp_ratio=hidden / embed_dim,
                qkv_bias=l00 + "wqkv.bias" in sd, patch_norm="patch_embed.norm.weight" in sd,
                upsampler=upsampler, resi_connection=resi, norm="no_norm" not in sd, num_feat=num_feat,
                img_range=1.0)


SPEC = register(
    ArchSpec(
        name="atd",
        title="ATD (Zhang et al.)",
        build=ATD,
        detect=_detect,
        supports_fp16=False,  # unverified in float16 (spandrel leaves it off too); bfloat16 runs
        supports_bf16=True,
        size_multiple=lambda hp: int(hp["window_size"]),
        tiling="discouraged",
        receptive_field=lambda hp: None,
        extra_activations=lambda hp, feat: 16 * feat,  # three attentions over one qkv, ConvFFN
        out_channels_key="in_channels",
        licence="Apache-2.0",
    )
)
