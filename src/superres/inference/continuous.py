"""Tiled rendering for continuous-scale networks (LIIF): any output size, equal to the whole-image run.

Why not :mod:`superres.inference.tiling`: that tiler cuts the LR image and multiplies tile boxes by an
integer scale. Here the *output grid* is cut instead: the LR image is split into bands, each output pixel
belongs to the band holding its centre (``(j + 1/2) * lr / out``, exact integer arithmetic, so every pixel
belongs to exactly one tile and nothing is blended), and each tile is decoded from an LR crop that reaches
``margin + context`` pixels beyond its band: the decoder reads the nearest feature up to one pixel out
plus its 3x3 unfolded neighbours (``margin`` = 2) and the encoder's receptive field (``context``). With
``context`` at least the receptive field every tile equals the whole-image output within float rounding.

Memory: one LR crop's features and one strip of output rows (the tile height times the output width) at a
time; the decoder itself works through queries in bounded blocks (:data:`superres.archs.liif.CPU_QUERY_CHUNK`
on CPU workers, :data:`superres.archs.liif.QUERY_CHUNK` on a GPU).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

# (LR crop 1 x C x h x w, row coordinates, column coordinates (LR pixels relative to the crop, float64),
#  cell (height, width) in LR pixels) -> C x rows x cols float32 numpy
RenderTile = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, tuple[float, float]], np.ndarray]
Sink = Callable[[int, int, np.ndarray], None]
MARGIN = 2  # LR pixels the decoder reads beyond a band: nearest feature (+1) and its unfolded neighbour (+1)
MAX_TILE_OUTPUT = 1024  # output pixels per tile side when the tile is chosen automatically


def bands(length: int, tile: int) -> list[tuple[int, int]]:
    """``[0, length)`` cut into near-equal bands of at most ``tile`` LR pixels (one band if tile <= 0)."""
    if tile <= 0 or length <= tile:
        return [(0, length)]
    n = math.ceil(length / tile)
    edges = [round(k * length / n) for k in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def first_output(lr_edge: int, lr: int, out: int) -> int:
    """The first output index whose centre ``(j + 1/2) * lr / out`` is at or past ``lr_edge``."""
    # j >= lr_edge * out / lr - 1/2  <=>  j >= (2 * lr_edge * out - lr) / (2 * lr)
    return min(out, max(0, -((lr - 2 * lr_edge * out) // (2 * lr))))


def auto_tile(lr_tile: int, factor: float) -> int:
    """An automatic LR tile shrunk so its output stays within :data:`MAX_TILE_OUTPUT` pixels a side (the
    strip of output rows held at once is that tall), at least 16."""
    return max(16, min(lr_tile, int(MAX_TILE_OUTPUT / max(factor, 1.0))))


def render_tiled(render: RenderTile, image: torch.Tensor, size: tuple[int, int], tile: int, context: int,
                 sink: Sink) -> None:
    """Render ``image`` (1 x C x h x w float32) at ``size`` = (width, height); rows go to ``sink``."""
    _, _, h, w = image.shape
    out_w, out_h = size
    cell = (h / out_h, w / out_w)
    reach = MARGIN + max(0, context)
    col_tiles = [(x0, x1, first_output(x0, w, out_w), first_output(x1, w, out_w)) for x0, x1 in bands(w, tile)]
    for y0, y1 in bands(h, tile):
        j0, j1 = first_output(y0, h, out_h), first_output(y1, h, out_h)
        if j1 <= j0:
            continue
        cy0, cy1 = max(0, y0 - reach), min(h, y1 + reach)
        ys = (torch.arange(j0, j1, dtype=torch.float64) + 0.5) * (h / out_h) - cy0
        strip: np.ndarray | None = None
        for x0, x1, i0, i1 in col_tiles:
            if i1 <= i0:
                continue
            cx0, cx1 = max(0, x0 - reach), min(w, x1 + reach)
            xs = (torch.arange(i0, i1, dtype=torch.float64) + 0.5) * (w / out_w) - cx0
            block = render(image[:, :, cy0:cy1, cx0:cx1], ys, xs, cell)
            if strip is None:
                strip = np.empty((block.shape[0], j1 - j0, out_w), np.float32)
            strip[:, :, i0:i1] = block
        assert strip is not None
        sink(j0, j1, strip)
