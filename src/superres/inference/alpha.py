"""Straight colour for the network: hidden pixels filled from the nearest visible ones.

Premultiplying puts a black surround into the network's input, and a network responds to a wide
neighbourhood, so visible pixels near (or, for large receptive fields, far from) a transparent area
come out darker than in the same image without alpha. Feeding straight colour instead keeps every
visible pixel exactly as in an RGB run; the colours under alpha = 0 are arbitrary (often black or
garbage), so they are replaced by a smooth continuation of the visible colours before the network
sees them. The two hidden rings next to visible pixels take their neighbours' colour exactly (what the
network sees at the edge); the rest is a push-pull pyramid: O(pixels) whatever the distance to the
nearest visible pixel, numpy only (about 3 s for a 12 MP image on one CPU core).
"""

from __future__ import annotations

import numpy as np
import torch


def straight_colour_for_network(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The colour an RGBA image's network pass gets: its own hidden colours when they carry a picture
    (a photo with a mask added: the opaque area then upscales exactly as the RGB run), else the
    visible colours bled into the hidden area (a flat black/white/garbage fill would darken or tint
    the edges)."""
    hidden = np.asarray(alpha) <= 0
    if not hidden.any() or hidden.all():
        return color
    under = np.asarray(color, np.float32)[hidden]
    if float(under.std(axis=0).max()) > _FLAT:
        return color
    return bleed_hidden(color, alpha)


_FLAT = 2.0 / 255  # hidden colours that vary less than this hold no picture (one fill colour, dithered)


def bleed_hidden(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """H x W x C float colour with every alpha = 0 pixel replaced by nearby visible colours.

    Visible pixels (alpha > 0) are returned unchanged; fainter ones weigh less in the fill, so a
    nearly transparent pixel's imprecise colour does not dominate it. All hidden -> unchanged."""
    w = np.asarray(alpha, np.float32)
    hidden = w <= 0
    if not hidden.any() or hidden.all():
        return color
    c = np.asarray(color, np.float32)
    cw, wk = _grow(c * w[..., None], np.where(hidden, 0.0, w).astype(np.float32), _RINGS)
    filled = _push_pull(cw, wk)
    return np.where(hidden[..., None], filled, c)


_RINGS = 2  # hidden rings next to visible pixels filled exactly from their 3 x 3 neighbours


def _grow(cw: np.ndarray, w: np.ndarray, rings: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill the first ``rings`` hidden rings with the weighted mean of their visible 3 x 3 neighbours."""
    for _ in range(rings):
        s_cw, s_w = _box3(cw), _box3(w)
        new = (w <= 0) & (s_w > 0)
        if not new.any():
            break
        w_new = np.minimum(s_w, 1.0)  # from faint pixels only: less confidence
        scale = np.where(new, w_new / np.maximum(s_w, 1e-12), 0.0).astype(np.float32)
        cw = np.where(new[..., None], s_cw * scale[..., None], cw)  # mean colour x its new weight
        w = np.where(new, w_new, w).astype(np.float32)
    return cw, w


def _box3(x: np.ndarray) -> np.ndarray:
    """3 x 3 sums, zero outside."""
    h, w = x.shape[:2]
    p = np.pad(x, [(1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 2))
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3))


def _push_pull(cw: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted colour sums and weights -> colour everywhere (coarser levels fill what finer lack)."""
    h, wd = w.shape
    if (w > 0).all() or min(h, wd) == 1 and max(h, wd) == 1:
        return cw / np.maximum(w, 1e-12)[..., None]
    coarse = _push_pull(_pool(cw), _pool(w))
    up = _upsample(coarse, (h, wd))
    own = cw / np.maximum(w, 1e-12)[..., None]
    k = np.minimum(w, 1.0)[..., None]  # confidence: full once a pixel's weight reaches one opaque pixel
    return own * k + up * (1 - k)


def _pool(x: np.ndarray) -> np.ndarray:
    """2 x 2 sums, odd sides padded with zero weight."""
    h, w = x.shape[:2]
    pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (x.ndim - 2)
    x = np.pad(x, pad)
    return x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, *x.shape[2:]).sum((1, 3))


def _upsample(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear x2 of an H x W x C array, cropped to ``size`` (coarse pixel i covers fine 2i, 2i + 1)."""
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0)))[None]
    y = torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)
    return np.moveaxis(y[0, :, : size[0], : size[1]].numpy(), 0, -1)
