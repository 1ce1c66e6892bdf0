"""Attention inside small windows, the fast way for the device at hand.

Why not always ``F.scaled_dot_product_attention``: on the CPU, with an additive bias (relative positions,
shifted-window masks) and the windows these networks use (16-64 tokens, head width 3-32), PyTorch 2.13
takes a general path that checks the mask and is 1.5-3x slower than the three plain ops (measured in
benchmarks/community_speed.py's setting: 64 windows x 6 heads x 64 tokens x 10, 27 ms vs 88 ms on one
thread). On CUDA the fused kernels win and avoid holding the scores, so they are used there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float | None = None
) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v over the last two axes; ``scale`` None means 1/sqrt(head width)."""
    if q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    s = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-2, -1)
    if s != 1.0:
        scores = scores * s
    if bias is not None:
        scores = scores + bias
    return torch.softmax(scores, dim=-1) @ v
