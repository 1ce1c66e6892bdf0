"""Seamless tiled inference with bounded memory.

The LR image is cut into overlapping tiles. Each tile is run with ``context`` extra LR pixels on every
side (clamped at the image border), and only the tile's own area of the output is kept, so for a
convolutional network whose receptive field is within ``context`` every tile output is exactly what the
whole-image run gives there. Overlapping tile areas are blended with linear feathering weights
(normalised by their sum), which hides the small differences left when ``context`` is shorter than the
receptive field (deep GAN models).

Tiles are processed row by row; finished output rows are handed to a ``sink`` and dropped, so memory
holds one row of tiles at output resolution, not the whole float output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]  # float32 NCHW (CPU) -> float32 NCHW (CPU)
Sink = Callable[[int, int, np.ndarray], None]  # (row0, row1, float32 C x rows x W_out) -> None


@dataclass(frozen=True)
class TilePlan:
    tile: int  # LR tile side (0 = whole image in one piece)
    overlap: int  # LR pixels shared by neighbouring tiles (blended)
    context: int  # extra LR pixels each side fed to the network and cropped away


def spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Evenly spread tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap`` shared."""
    if tile <= 0 or length <= tile:
        return [(0, length)]
    overlap = min(overlap, tile // 2)
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    step = (length - tile) / (n - 1)
    starts = sorted({int(round(i * step)) for i in range(n)})
    return [(s, s + tile) for s in starts]


def _ramp(n: int, lo_overlap: int, hi_overlap: int) -> np.ndarray:
    """Weights along one axis of a tile: linear ramps over the parts shared with neighbours."""
    w = np.ones(n, dtype=np.float32)
    idx = np.arange(n, dtype=np.float32) + 0.5
    if lo_overlap > 0:
        w = np.minimum(w, idx / lo_overlap)
    if hi_overlap > 0:
        w = np.minimum(w, (n - idx) / hi_overlap)
    return np.maximum(w, 1e-3)


def _overlaps(sp: list[tuple[int, int]], i: int) -> tuple[int, int]:
    lo = sp[i - 1][1] - sp[i][0] if i > 0 else 0
    hi = sp[i][1] - sp[i + 1][0] if i + 1 < len(sp) else 0
    return max(lo, 0), max(hi, 0)


def run_tiled(
    forward: Forward,
    image: torch.Tensor,
    scale: int,
    plan: TilePlan,
    sink: Sink,
    *,
    size_multiple: int = 1,
) -> None:
    """Run ``forward`` over ``image`` (1 x C x H x W float32) in tiles; deliver output rows to ``sink``."""
    _, _, h, w = image.shape
    ys, xs = spans(h, plan.tile, plan.overlap), spans(w, plan.tile, plan.overlap)
    out_w = w * scale
    acc: np.ndarray | None = None  # C x rows x out_w for output rows [row0, row0 + rows)
    wsum: np.ndarray | None = None
    row0 = 0
    for iy, (y0, y1) in enumerate(ys):
        oy0, oy1 = y0 * scale, y1 * scale
        need = oy1 - row0  # the strip must reach this tile row's last output row
        if acc is not None and wsum is not None and acc.shape[1] < need:
            extra = need - acc.shape[1]
            acc = np.concatenate([acc, np.zeros((acc.shape[0], extra, out_w), np.float32)], axis=1)
            wsum = np.concatenate([wsum, np.zeros((extra, out_w), np.float32)], axis=0)
        lo_y, hi_y = _overlaps(ys, iy)
        wy = _ramp((y1 - y0) * scale, lo_y * scale, hi_y * scale)
        for ix, (x0, x1) in enumerate(xs):
            out = _run_tile(forward, image, (y0, y1, x0, x1), plan.context, scale, size_multiple)
            if acc is None or wsum is None:
                acc = np.zeros((out.shape[0], need, out_w), np.float32)
                wsum = np.zeros((need, out_w), np.float32)
            lo_x, hi_x = _overlaps(xs, ix)
            wx = _ramp((x1 - x0) * scale, lo_x * scale, hi_x * scale)
            wt = wy[:, None] * wx[None, :]
            r0, r1 = oy0 - row0, oy1 - row0
            acc[:, r0:r1, x0 * scale : x1 * scale] += out * wt
            wsum[r0:r1, x0 * scale : x1 * scale] += wt
        # rows above the next tile row's start are final
        done_until = ys[iy + 1][0] * scale if iy + 1 < len(ys) else h * scale
        k = done_until - row0
        if k > 0:
            assert acc is not None and wsum is not None
            sink(row0, done_until, acc[:, :k] / wsum[None, :k])
            acc, wsum = acc[:, k:].copy(), wsum[k:].copy()
            row0 = done_until


def _run_tile(
    forward: Forward,
    image: torch.Tensor,
    box: tuple[int, int, int, int],
    context: int,
    scale: int,
    multiple: int,
) -> np.ndarray:
    _, _, h, w = image.shape
    y0, y1, x0, x1 = box
    cy0, cy1 = max(0, y0 - context), min(h, y1 + context)
    cx0, cx1 = max(0, x0 - context), min(w, x1 + context)
    # Start the piece on the network's own grid (windows, pooling cells), as the whole image does: a
    # window or pooling network then sees the same cells in a tile as in the whole image (SAFMN: exact)
    cy0, cx0 = cy0 - cy0 % multiple, cx0 - cx0 % multiple
    piece = image[:, :, cy0:cy1, cx0:cx1]
    ph, pw = piece.shape[2:]
    pad_h, pad_w = (-ph) % multiple, (-pw) % multiple
    if pad_h or pad_w:
        mode = "reflect" if ph > pad_h and pw > pad_w else "replicate"
        piece = F.pad(piece, (0, pad_w, 0, pad_h), mode=mode)
    out = forward(piece)
    oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
    out = out[0, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale]
    return out.numpy()
