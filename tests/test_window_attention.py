"""``superres.archs.attention.window_attention``: the one entry point of every window network's attention. It
must give softmax(q k^T * scale + bias) v for every layout the networks pass (5-D batch x windows, 4-D, biases
with and without window and head axes), and must reach torch's fused CPU kernel, not its unfused fallback."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from superres.archs.attention import window_attention


def _plain(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
           scale: float | None) -> torch.Tensor:
    s = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * s
    return torch.softmax(scores if bias is None else scores + bias, dim=-1) @ v


BIASES = {
    "none": None,
    "heads": (3, 16, 16),  # (heads, N, N): SwinIR/CRAFT position bias
    "one-heads": (1, 3, 16, 16),
    "windows-heads": (4, 3, 16, 16),  # bias + shift mask, per window
    "windows-one": (4, 1, 16, 16),  # a mask without heads
    "batch-windows-heads": (2, 4, 3, 16, 16),
}


@pytest.mark.parametrize("scale", [None, 1.0])
@pytest.mark.parametrize("bias_kind", list(BIASES))
def test_every_layout_equals_the_plain_formula(bias_kind: str, scale: float | None) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 3, 16, 8, generator=g) for _ in range(3))  # (batch, windows, heads, N, d)
    shape = BIASES[bias_kind]
    bias = None if shape is None else torch.randn(*shape, generator=g)
    got = window_attention(q, k, v, bias, scale=scale)
    assert got.shape == q.shape
    assert (got - _plain(q, k, v, bias, scale)).abs().max() < 1e-5
    # the same on 4-D input (DAT and OmniSR pass (batch*windows, heads, N, d))
    if shape is None or len(shape) <= 4 and shape[0] in (1, 3):
        flat = window_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), bias, scale=scale)
        assert (flat - got.flatten(0, 1)).abs().max() < 1e-6


def test_the_layout_reaches_the_fused_cpu_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """What window_attention hands torch: 4-D q/k/v and a 4-D mask, the inputs its fused CPU kernel takes
    (backend 1); the 5-D or 3-D-bias calls the networks used to make fall back to the math path (0)."""
    if not hasattr(torch, "_fused_sdp_choice"):
        pytest.skip("this torch has no torch._fused_sdp_choice to ask which kernel it would run")
    q = torch.randn(2, 4, 3, 16, 8)
    bias = torch.randn(3, 16, 16)
    assert int(torch._fused_sdp_choice(q, q, q, bias, 0.0, False)) == 0  # what SwinIR & co. used to pass
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q4, k4, v4, attn_mask=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(int(torch._fused_sdp_choice(q4, k4, v4, attn_mask, 0.0, False)))
        return real(q4, k4, v4, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    window_attention(q, q, q, bias)
    window_attention(q, q, q, torch.randn(4, 1, 16, 16))
    assert seen == [1, 1]
