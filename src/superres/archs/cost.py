"""What a network costs: parameters and multiply-accumulates of one forward pass.

One counter for every caller (the speed benchmark's GFLOP/s, the pruner's savings, model cards): MACs of
convolutions, transposed convolutions and linear layers, measured by forward hooks on a real pass, so any
architecture is counted the same way. Activations, pixel shuffle, attention's matrix products between
activations and the residual upscale are not counted (a few % at most for the zoo's networks).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_macs", "count_params"]


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _input_channels(net: nn.Module) -> int:
    descriptor = getattr(net, "descriptor", None)
    if descriptor is not None:
        return int(descriptor.in_channels)
    hp = getattr(net, "hyperparams", {}) or {}
    return int(hp.get("in_channels", hp.get("channels", 3)))


def count_macs(net: nn.Module, height: int = 32, width: int = 32, channels: int | None = None) -> int:
    """Multiply-accumulates of one forward pass on a ``1 x C x height x width`` input (C from the network's
    descriptor unless ``channels`` is given). Divide by ``height * width`` for MACs per LR pixel."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.ConvTranspose2d):
            kh, kw = mod.kernel_size
            total += inp[0].numel() * (mod.out_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += out.numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    c = channels if channels is not None else _input_channels(net)
    was_training = net.training  # eval: BatchNorm (DAT) must neither update its statistics nor need a batch
    net.eval()
    try:
        with torch.inference_mode():
            net(torch.zeros(1, c, height, width))
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return total
