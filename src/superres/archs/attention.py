"""Attention inside small windows, the fast way for the device at hand.

Every window-attention network here (SwinIR, Swin2SR, HAT, ATD, CRAFT, OmniSR; DAT calls the same kernel
itself) goes through :func:`window_attention`, which hands PyTorch the one layout its fused kernels take:
4-D ``(batch, heads, tokens, width)`` and a 4-D additive mask. With 5-D inputs (batch, windows, heads, ...) or
a 3-D ``(heads, N, N)`` bias, PyTorch 2.13 falls back on the CPU to its unfused "math" attention, which also
scans the mask for fully masked rows: 3.5x slower than the fused kernel, and slower than the three plain ops
(64 windows x 6 heads x 64 tokens x 10 on one thread: fused 5.6 ms, plain ops 10.5 ms, math 19.6 ms;
256 tokens x 30: 77 / 361 / 282 ms). Outputs agree within float rounding (about 1e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float | None = None
) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v over the last two axes; ``scale`` None means 1/sqrt(head width).

    ``q``/``k``/``v``: (..., heads, tokens, width) with any leading axes (batch, windows); ``bias`` broadcasts
    against (..., heads, tokens, tokens). Leading axes are flattened into one batch axis for the fused kernel."""
    lead, (h, n, m) = q.shape[:-3], (q.shape[-3], q.shape[-2], k.shape[-2])
    q4, k4, v4 = (t.reshape(-1, h, t.shape[-2], t.shape[-1]) for t in (q, k, v))
    mask = None
    if bias is not None:
        mask = bias.to(q.dtype)
        if mask.dim() <= 3 or all(s == 1 for s in mask.shape[:-3]):  # one bias for every window: no copy
            mask = mask.reshape(1, *mask.shape[-3:]) if mask.dim() >= 3 else mask.reshape(1, 1, *mask.shape)
        else:
            mask = mask.expand(*lead, h, n, m).reshape(-1, h, n, m)
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, scale=scale)
    return out.view(*lead, h, n, v.shape[-1])
