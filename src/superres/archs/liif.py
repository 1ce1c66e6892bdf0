"""LIIF (Chen, Liu, Wang, CVPR 2021, "Learning Continuous Image Representation with Local Implicit Image
Function"): an encoder turns the LR image into a feature map, and an MLP decodes the RGB value at any
continuous coordinate from the nearest feature vector, the offset to it and the size of the output pixel,
so one network serves every scale.

Written from the paper; the key layout is the official checkpoint's (``encoder.*`` an EDSR-baseline
without upsampler, ``imnet.layers.{0,2,4,..}`` the MLP), so ``edsr-baseline-liif.pth`` loads strictly.
The paper's three refinements are all here:

* **feature unfolding**: each feature vector is concatenated with its 3x3 neighbours (zero outside);
* **local ensemble**: the four feature vectors around a query are each decoded and blended with weights
  proportional to the area of the rectangle *opposite* each one;
* **cell decoding**: the size of the output pixel (in LR pixels) is an input of the MLP.

Why the first MLP layer is a convolution here: that layer is linear in the unfolded feature, so its
feature part (256 x 64 x 3 x 3) is applied once per LR pixel as a 3x3 convolution of the feature map
instead of once per query and ensemble member (4 x s^2 times per LR pixel at scale s); the coordinate and
cell terms are added per query. Same values within float rounding, about 1.7x less work at x4.

What is left is three 256x256 products per query and ensemble member (0.79 MMAC an output pixel), so the
decoder is arranged around them: a block of queries gathers its four members' rows of that table at once and
runs each layer as one product over all of them (the coordinate terms are two broadcast adds, not a K=2
product); on a CPU a block is 256 queries, so its activations (1 MiB) stay in cache from layer to layer, and
the blocks go to single-threaded workers when the caller passes ``map_blocks`` (the pipeline does), which
keeps both cores busy without a thread barrier per product, the part that stalls when other jobs share the
cores.

Coordinates: queries are given in LR pixels (x in [0, w), pixel i covers [i, i+1)), relative to the
feature map they are decoded from, which is what makes tiles equal to the whole image: a tile's queries
are offset by the tile's origin and decoded from a crop whose border lies beyond the encoder's receptive
field. The nearest feature is ``floor(y +- 1/2 + 1e-6)`` clamped to the map, as upstream's grid_sample
with its ``eps_shift`` picks it (ties, e.g. every odd integer scale, go the same way).

I/O: [0, 1] RGB in; upstream normalises to [-1, 1] and back, done here, so the common convention holds.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, has_all, register
from .edsr import MeanShift, ResBlock

MAX_SCALE = 30.0  # the paper trains on x1-x4 and evaluates up to x30
QUERY_CHUNK = 16384  # queries decoded at once on a GPU: bounds the MLP's activations (4 x chunk x 256 floats)
MapBlocks = Callable[[Callable[[int], None], int], None]  # map(fn, n): fn(0..n-1), any order/threads
CPU_QUERY_CHUNK = 256  # on CPU workers: a block's activations (4 x 256 x 256 floats, 1 MiB) stay in cache
CPU_SHARED_CHUNK = 2048  # on a CPU without workers: big enough for torch's threads to share each product


class EDSRBaselineEncoder(nn.Module):
    """EDSR body without the upsampler (upstream ``no_upsampling=True``); its mean shifts are stored in
    the checkpoint but unused (commented out upstream), kept so the official keys load strictly."""

    def __init__(self, num_feat: int = 64, num_blocks: int = 16, channels: int = 3) -> None:
        super().__init__()
        self.sub_mean = MeanShift(1.0, -1)
        self.add_mean = MeanShift(1.0, 1)
        self.head = nn.Sequential(nn.Conv2d(channels, num_feat, 3, 1, 1))
        self.body = nn.Sequential(*[ResBlock(num_feat, 1.0) for _ in range(num_blocks)],
                                  nn.Conv2d(num_feat, num_feat, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.body(x) + x


class MLP(nn.Module):
    """``layers.{0,2,..}``: Linear + ReLU per hidden width, then the output Linear (upstream ``mlp``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)


class LIIF(SRNet):
    arch_name = "liif"

    def __init__(
        self,
        scale: int = 4,
        num_feat: int = 64,
        num_blocks: int = 16,
        hidden: Sequence[int] = (256, 256, 256, 256),
        feat_unfold: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        channels: int = 3,
    ) -> None:
        """``scale``: the factor ``forward`` renders (the pipeline asks for any size with :meth:`render`)."""
        hidden = tuple(int(h) for h in hidden)
        super().__init__(scale=scale, num_feat=num_feat, num_blocks=num_blocks, hidden=list(hidden),
                         feat_unfold=feat_unfold, local_ensemble=local_ensemble, cell_decode=cell_decode,
                         channels=channels)
        if not hidden:
            raise ValueError("LIIF's MLP needs at least one hidden layer")
        self.feat_unfold, self.local_ensemble, self.cell_decode = feat_unfold, local_ensemble, cell_decode
        self.encoder = EDSRBaselineEncoder(num_feat, num_blocks, channels)
        in_dim = num_feat * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = MLP(in_dim, channels, hidden)

    # ---- the two stages --------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] image (N x C x h x w) -> the first MLP layer's feature term at every LR pixel
        (N x hidden x h x w): the encoder, then that layer's weights as a 3x3 (or 1x1) convolution."""
        feat = self.encoder((x - 0.5) / 0.5)
        first: nn.Linear = self.imnet.layers[0]  # type: ignore[assignment]
        c = feat.shape[1]
        k = 3 if self.feat_unfold else 1
        w = first.weight[:, : c * k * k].reshape(first.weight.shape[0], c, k, k)
        return F.conv2d(feat, w, None, padding=k // 2)

    def render(self, proj: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
               cell: tuple[float, float], chunk: int | None = None, map_blocks: MapBlocks | None = None,
               ) -> torch.Tensor:
        """Decode the grid ``ys x xs`` (LR-pixel coordinates relative to ``proj``, from :meth:`encode`)
        with output pixels ``cell = (height, width)`` in LR pixels. Returns N x C x len(ys) x len(xs) in
        [0, 1] units (not clamped). Queries are decoded in blocks of about ``chunk`` output pixels (all
        four ensemble members of a block in one matrix product per layer; by default
        :data:`CPU_QUERY_CHUNK` on CPU workers, :data:`CPU_SHARED_CHUNK` on a CPU without them,
        :data:`QUERY_CHUNK` elsewhere): memory stays bounded.
        ``map_blocks(fn, n)`` runs ``fn(0..n-1)`` (in any order, possibly on worker threads: each block
        writes only its own part of the output); None runs them here."""
        n, hid, h, w = proj.shape
        first: nn.Linear = self.imnet.layers[0]  # type: ignore[assignment]
        c = first.weight.shape[1] - 2 - (2 if self.cell_decode else 0)
        const = first.bias
        if self.cell_decode:  # the cell term is the same for every query: folded into the bias
            cell_in = proj.new_tensor([2.0 * cell[0], 2.0 * cell[1]])
            const = const + first.weight[:, c + 2: c + 4] @ cell_in
        # channels-last, bias folded in: one row per LR pixel, gathered by a flat index per query
        table = (proj + const.view(1, -1, 1, 1)).permute(0, 2, 3, 1).reshape(n * h * w, hid).contiguous()
        w_coord = first.weight[:, c: c + 2].T.contiguous()  # (2, hidden): the row and column offset terms
        rows = _axis_lookups(ys, h, self.local_ensemble, proj.dtype)
        cols = _axis_lookups(xs, w, self.local_ensemble, proj.dtype)
        linears = [m for m in self.imnet.layers[2:] if isinstance(m, nn.Linear)]
        layers = [(m.weight.T.contiguous(), m.bias) for m in linears]
        out = proj.new_empty(n, len(layers[-1][1]), len(ys), len(xs))
        if chunk is None:
            on_cpu = proj.device.type == "cpu"
            chunk = (CPU_QUERY_CHUNK if map_blocks else CPU_SHARED_CHUNK) if on_cpu else QUERY_CHUNK
        bh, bw = _block_shape(len(ys), len(xs), max(1, chunk // n))
        blocks = [(r, q) for r in range(0, len(ys), bh) for q in range(0, len(xs), bw)]

        inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

        def one(i: int) -> None:  # on a worker thread too: the caller's grad / inference mode (thread-local)
            r, q = blocks[i]
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                out[:, :, r: r + bh, q: q + bw] = self._decode_block(
                    table, w_coord, layers, rows.part(r, r + bh), cols.part(q, q + bw), n, h * w, w)

        (map_blocks or _run_here)(one, len(blocks))
        return out

    def _decode_block(self, table: torch.Tensor, w_coord: torch.Tensor,
                      layers: list[tuple[torch.Tensor, torch.Tensor]], rows: "_AxisLookup",
                      cols: "_AxisLookup", n: int, hw: int, w: int) -> torch.Tensor:
        """One block of output pixels (rows x cols) for the N images: N x C x rows x cols."""
        mr, ny = rows.index.shape  # ensemble members along the axis (2, or 1 without the local ensemble)
        mc, nx = cols.index.shape
        # member (a, b) reads LR pixel (rows.index[a], cols.index[b]); the member axis is outermost
        idx = ((rows.index * w).view(mr, 1, 1, ny, 1) + cols.index.view(1, mc, 1, 1, nx)
               + (torch.arange(n, device=table.device) * hw).view(1, 1, n, 1, 1))
        x = table.index_select(0, idx.reshape(-1)).view(mr, mc, n, ny, nx, -1)
        # first layer, coordinate terms: rel_y * W[:, y] + rel_x * W[:, x]
        x.add_((rows.rel[..., None] * w_coord[0]).view(mr, 1, 1, ny, 1, -1))
        x.add_((cols.rel[..., None] * w_coord[1]).view(1, mc, 1, 1, nx, -1))
        x = x.view(mr * mc * n * ny * nx, -1).relu_()
        for k, (wt, b) in enumerate(layers):
            x = torch.addmm(b, x, wt)
            if k < len(layers) - 1:
                x.relu_()
        pred = x.view(mr, mc, n, ny, nx, -1)
        if mr * mc == 1:
            ret = pred[0, 0]
        else:  # each member weighted by the area of the rectangle opposite to it
            area = (rows.rel.abs().view(mr, 1, ny, 1) * cols.rel.abs().view(1, mc, 1, nx)) + 1e-9
            weight = area.flip(0, 1) / area.sum((0, 1))
            ret = (pred * weight.view(mr, mc, 1, ny, nx, 1)).sum((0, 1))
        return (ret * 0.5 + 0.5).permute(0, 3, 1, 2)

    # ---- whole images ----------------------------------------------------------------------------------
    def upscale_to(self, x: torch.Tensor, out_h: int, out_w: int, chunk: int | None = None,
                   map_blocks: MapBlocks | None = None) -> torch.Tensor:
        """The whole image at any output size (upstream's ``batched_predict`` on a full grid)."""
        h, w = x.shape[-2:]
        ys, xs = pixel_centres(h, out_h, x.device), pixel_centres(w, out_w, x.device)
        return self.render(self.encode(x), ys, xs, (h / out_h, w / out_w), chunk, map_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """At the nominal ``scale`` (so generic code -- eval, export -- sees a fixed-scale network)."""
        s = self.scale
        return self.upscale_to(x, x.shape[-2] * s, x.shape[-1] * s)


def pixel_centres(lr: int, out: int, device: torch.device | str = "cpu", start: int = 0,
                  stop: int | None = None) -> torch.Tensor:
    """LR-pixel coordinates of output pixels ``start..stop-1`` centres when ``lr`` pixels become ``out``
    (float64 for exactness, then the caller's dtype decisions)."""
    stop = out if stop is None else stop
    j = torch.arange(start, stop, dtype=torch.float64, device=device)
    return (j + 0.5) * (lr / out)


def _run_here(fn: Callable[[int], None], n: int) -> None:
    for i in range(n):
        fn(i)


def _block_shape(ny: int, nx: int, chunk: int) -> tuple[int, int]:
    """Rows x columns of a query block of about ``chunk`` pixels: whole rows when they fit, else a square-ish
    tile (so a very wide output does not make one block of a single huge row)."""
    if nx <= chunk:
        return max(1, min(ny, chunk // nx)), nx
    side = max(1, int(math.isqrt(chunk)))
    return min(ny, side), max(1, chunk // side)


class _AxisLookup:
    """Along one axis: for each ensemble member (shift -1/2, +1/2 of an LR pixel; one member without the local
    ensemble), the LR index each output coordinate reads and the offset to it (upstream's ``rel_coord``, in
    units of half an LR pixel)."""

    def __init__(self, index: torch.Tensor, rel: torch.Tensor) -> None:
        self.index, self.rel = index, rel  # both (members, len)

    def part(self, a: int, b: int) -> "_AxisLookup":
        return _AxisLookup(self.index[:, a:b], self.rel[:, a:b])


def _axis_lookups(coords: torch.Tensor, size: int, ensemble: bool, dtype: torch.dtype) -> _AxisLookup:
    shifts, eps = ((-1, 1), 1e-6) if ensemble else ((0,), 0.0)
    index = torch.stack([torch.floor(coords + v / 2 + eps).clamp_(0, size - 1).long() for v in shifts])
    rel = (2 * (coords - (index + 0.5))).to(dtype)
    return _AxisLookup(index, rel)


# ---- registry -------------------------------------------------------------------------------------------


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if not has_all(sd, "encoder.head.0.weight", "encoder.body.0.body.0.weight", "imnet.layers.0.weight"):
        return None
    head = sd["encoder.head.0.weight"]
    if head.ndim != 4:
        return None
    num_feat, channels = int(head.shape[0]), int(head.shape[1])
    num_blocks = count_indexed(sd, "encoder.body.", ".body.0.weight")
    if f"encoder.body.{num_blocks}.weight" not in sd:
        return None
    n_lin = count_indexed(sd, "imnet.layers.", ".weight")  # 0, 2, 4.. : count the even ones
    linears = [sd[f"imnet.layers.{i}.weight"] for i in range(0, 64, 2) if f"imnet.layers.{i}.weight" in sd]
    if n_lin < 1 or len(linears) < 2 or any(t.ndim != 2 for t in linears):
        return None
    in_dim = int(linears[0].shape[1])
    for unfold in (True, False):
        for cell in (True, False):
            if in_dim == num_feat * (9 if unfold else 1) + 2 + (2 if cell else 0):
                hidden = [int(t.shape[0]) for t in linears[:-1]]
                return dict(scale=4, num_feat=num_feat, num_blocks=num_blocks, hidden=hidden,
                            feat_unfold=unfold, local_ensemble=True, cell_decode=cell, channels=channels)
    return None


def _rf(hp: dict[str, Any]) -> int:
    # head + 2 per block + body conv, then the decoder reads the nearest feature (up to 1 LR pixel away) and its
    # unfolded 3x3 neighbours (1 more)
    return 1 + 2 * int(hp["num_blocks"]) + 1 + 2


def _extra(hp: dict[str, Any], feat: int) -> int:
    # the projected map (hidden[0] channels at LR) and the decoded output at the nominal scale
    return int(hp.get("hidden", [256])[0]) + 4 * 3 * int(hp["scale"]) ** 2


def check_scale(factor: float) -> None:
    """LIIF decodes any real scale in [1, MAX_SCALE]; a clear error outside it."""
    if not (1.0 - 1e-9 <= factor <= MAX_SCALE + 1e-9) or math.isnan(factor):
        raise ValueError(f"LIIF takes scales from 1 to {MAX_SCALE:g}, not {factor:.4g}")


SPEC = register(
    ArchSpec(
        name="liif",
        title="LIIF (local implicit image function, EDSR-baseline encoder)",
        build=LIIF,
        detect=_detect,
        receptive_field=_rf,
        extra_activations=_extra,
        in_channels_key="channels",
        out_channels_key="channels",
        supports_fp16=False,  # coordinates and areas need fp32; untested in half precision
        supports_bf16=False,
        continuous=True,
    )
)
