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

Coordinates: queries are given in LR pixels (x in [0, w), pixel i covers [i, i+1)), relative to the
feature map they are decoded from, which is what makes tiles equal to the whole image: a tile's queries
are offset by the tile's origin and decoded from a crop whose border lies beyond the encoder's receptive
field. The nearest feature is ``floor(y +- 1/2 + 1e-6)`` clamped to the map, as upstream's grid_sample
with its ``eps_shift`` picks it (ties, e.g. every odd integer scale, go the same way).

I/O: [0, 1] RGB in; upstream normalises to [-1, 1] and back, done here, so the common convention holds.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, count_indexed, has_all, register
from .edsr import MeanShift, ResBlock

MAX_SCALE = 30.0  # the paper trains on x1-x4 and evaluates up to x30
QUERY_CHUNK = 16384  # queries decoded at once: bounds the MLP's activations (4 x chunk x 256 floats)


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
               cell: tuple[float, float], chunk: int = QUERY_CHUNK) -> torch.Tensor:
        """Decode the grid ``ys x xs`` (LR-pixel coordinates relative to ``proj``, from :meth:`encode`)
        with output pixels ``cell = (height, width)`` in LR pixels. Returns N x C x len(ys) x len(xs) in
        [0, 1] units (not clamped). Queries are decoded ``chunk`` at a time: memory stays bounded."""
        n, hid, h, w = proj.shape
        first: nn.Linear = self.imnet.layers[0]  # type: ignore[assignment]
        c = first.weight.shape[1] - 2 - (2 if self.cell_decode else 0)
        const = first.bias
        if self.cell_decode:  # the cell term is the same for every query: folded into the bias
            cell_in = proj.new_tensor([2.0 * cell[0], 2.0 * cell[1]])
            const = const + first.weight[:, c + 2: c + 4] @ cell_in
        # channels-last, bias folded in: one row per LR pixel, gathered by a flat index per query
        table = (proj + const.view(1, -1, 1, 1)).permute(0, 2, 3, 1).reshape(n * h * w, hid)
        w_coord_t = first.weight[:, c: c + 2].T.contiguous()  # (2, hidden): (row, col) offsets
        rows = max(1, chunk // max(1, len(xs)))
        out = [self._render_rows(table, w_coord_t, ys[r: r + rows], xs, n, h, w) for r in range(0, len(ys), rows)]
        return torch.cat(out, dim=2)

    def _render_rows(self, table: torch.Tensor, w_coord_t: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                     n: int, h: int, w: int) -> torch.Tensor:
        shifts = (-1, 1) if self.local_ensemble else (0,)
        eps = 1e-6 if self.local_ensemble else 0.0
        ny, nx = len(ys), len(xs)
        base = (torch.arange(n, device=table.device) * (h * w)).view(n, 1, 1)
        preds, areas = [], []
        for vy in shifts:
            iy = torch.floor(ys + vy / 2 + eps).clamp_(0, h - 1).long()
            ry = (2 * (ys - (iy + 0.5))).to(table.dtype)  # upstream's rel_coord: 2 x LR pixels
            for vx in shifts:
                ix = torch.floor(xs + vx / 2 + eps).clamp_(0, w - 1).long()
                rx = (2 * (xs - (ix + 0.5))).to(table.dtype)
                idx = (base + (iy * w).view(1, ny, 1) + ix.view(1, 1, nx)).reshape(-1)
                x = table.index_select(0, idx)  # (n * ny * nx, hidden)
                rel = torch.stack([ry.view(ny, 1).expand(ny, nx), rx.view(1, nx).expand(ny, nx)], -1)
                rel = rel.reshape(1, ny * nx, 2).expand(n, -1, -1).reshape(-1, 2)
                x.addmm_(rel, w_coord_t).relu_()
                layers = list(self.imnet.layers[2:])
                for layer in layers:
                    if isinstance(layer, nn.ReLU):
                        x.relu_()
                    else:
                        x = layer(x)
                preds.append(x)
                areas.append((rel[:, 0] * rel[:, 1]).abs_() + 1e-9)
        total = torch.stack(areas).sum(0)
        if self.local_ensemble:  # each member weighted by the area opposite to it
            areas = areas[::-1]
        ret = sum(p * (a / total)[:, None] for p, a in zip(preds, areas))
        assert isinstance(ret, torch.Tensor)
        return (ret * 0.5 + 0.5).reshape(n, ny, nx, -1).permute(0, 3, 1, 2)

    # ---- whole images ----------------------------------------------------------------------------------
    def upscale_to(self, x: torch.Tensor, out_h: int, out_w: int, chunk: int = QUERY_CHUNK) -> torch.Tensor:
        """The whole image at any output size (upstream's ``batched_predict`` on a full grid)."""
        h, w = x.shape[-2:]
        ys, xs = pixel_centres(h, out_h, x.device), pixel_centres(w, out_w, x.device)
        return self.render(self.encode(x), ys, xs, (h / out_h, w / out_w), chunk)

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
