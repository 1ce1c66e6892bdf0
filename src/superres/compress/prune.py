"""Structured channel pruning: drop whole filters (lowest L1 norm first) and rebuild a smaller network of the
same architecture with new hyper-parameters.

Why structured: removing channels shrinks every dense convolution, so the pruned model runs faster on any
backend (the Winograd engine, ONNX Runtime, OpenVINO) without sparse kernels, and it stays an ordinary
``srvgg`` / ``espcn`` / ``fsrcnn`` checkpoint that the zoo loaders detect from its shapes.

Architectures whose hyper-parameters tie several layers to one width (SRVGG's ``num_feat``, FSRCNN's ``d`` and
``s``) keep the same number of channels in every such layer, but each layer chooses its own channels. A
filter's score is the L1 norm of its weights plus its bias; a PReLU slope goes with its channel, and the next
layer loses the matching input channels. A filter whose weights and bias are all zero outputs act(0) = 0 for
PReLU/ReLU/tanh, so pruning it leaves the output unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..archs import SRNet, build
from ..errors import SuperresError

PRUNABLE = ("srvgg", "espcn", "fsrcnn")
StateDict = dict[str, torch.Tensor]


def kept_channels(width: int, ratio: float) -> int:
    """Channels left after removing ``ratio`` of ``width`` (at least one)."""
    check_ratio(ratio)
    return max(1, round(width * (1.0 - ratio)))


def check_ratio(ratio: float) -> None:
    if not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) < 1.0:
        raise SuperresError(f"pruning ratio must be in [0, 1), not {ratio!r}")


def filter_scores(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """L1 norm of each output filter (conv weights ``out x in x kh x kw``) plus the bias' magnitude."""
    score = weight.detach().abs().flatten(1).sum(1)
    if bias is not None:
        score = score + bias.detach().abs()
    return score


def _keep(weight: torch.Tensor, bias: torch.Tensor | None, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest-scoring filters, in their original order (ratio 0 keeps the layout)."""
    scores = filter_scores(weight, bias)
    # stable sort on the negated score: ties keep the lower index, so the choice is deterministic.
    order = torch.sort(-scores, stable=True).indices[:k]
    return torch.sort(order).values


def _conv(sd: StateDict, new: StateDict, name: str, k: int | None, inputs: torch.Tensor | None,
          prelu: str | None = None) -> torch.Tensor | None:
    """Copy conv ``name`` into ``new`` keeping ``k`` output filters (all if None) and the ``inputs``
    channels; returns the kept output indices."""
    w, b = sd[f"{name}.weight"], sd.get(f"{name}.bias")
    if inputs is not None:
        w = w[:, inputs]
    idx = None
    if k is not None:
        idx = _keep(sd[f"{name}.weight"], b, k)
        w = w[idx]
        b = b[idx] if b is not None else None
    new[f"{name}.weight"] = w.clone()
    if b is not None:
        new[f"{name}.bias"] = b.clone()
    if prelu is not None and f"{prelu}.weight" in sd:
        slope = sd[f"{prelu}.weight"]
        new[f"{prelu}.weight"] = (slope[idx] if idx is not None and slope.numel() > 1 else slope).clone()
    return idx


def _prune_srvgg(sd: StateDict, hp: dict[str, Any], ratio: float) -> tuple[StateDict, dict[str, Any]]:
    k = kept_channels(int(hp["num_feat"]), ratio)
    n = int(hp["num_conv"])
    new: StateDict = {}
    idx = None
    for j in range(n + 1):  # the first conv and the num_conv body convs all output num_feat channels
        idx = _conv(sd, new, f"body.{2 * j}", k, idx, prelu=f"body.{2 * j + 1}")
    _conv(sd, new, f"body.{2 * (n + 1)}", None, idx)
    return new, {**hp, "num_feat": k}


def _prune_espcn(sd: StateDict, hp: dict[str, Any], ratio: float) -> tuple[StateDict, dict[str, Any]]:
    k1, k2 = kept_channels(int(hp["n1"]), ratio), kept_channels(int(hp["n2"]), ratio)
    new: StateDict = {}
    i1 = _conv(sd, new, "conv1", k1, None)
    i2 = _conv(sd, new, "conv2", k2, i1)
    _conv(sd, new, "conv3", None, i2)
    return new, {**hp, "n1": k1, "n2": k2}


def _prune_fsrcnn(sd: StateDict, hp: dict[str, Any], ratio: float) -> tuple[StateDict, dict[str, Any]]:
    d, s, m = int(hp["d"]), int(hp["s"]), int(hp["m"])
    kd, ks = kept_channels(d, ratio), kept_channels(s, ratio)
    widths = [kd] + [ks] * (m + 1) + [kd]  # conv1 (extract), conv2 (shrink), m mapping, conv{m+3} (expand)
    new: StateDict = {}
    idx = None
    for i, k in enumerate(widths, start=1):
        idx = _conv(sd, new, f"conv{i}", k, idx, prelu=f"prelu{i}")
    if hp["upsampler"] == "subpixel":
        _conv(sd, new, f"conv{m + 4}", None, idx)
        new["output_bias"] = sd["output_bias"].clone()
    else:  # ConvTranspose2d stores (in, out, kh, kw): the kept expand channels index dim 0
        new["deconv.weight"] = sd["deconv.weight"][idx].clone()
        new["deconv.bias"] = sd["deconv.bias"].clone()
    return new, {**hp, "d": kd, "s": ks}


_PRUNERS: dict[str, Callable[[StateDict, dict[str, Any], float], tuple[StateDict, dict[str, Any]]]] = {
    "srvgg": _prune_srvgg,
    "espcn": _prune_espcn,
    "fsrcnn": _prune_fsrcnn,
}


def prune(net: SRNet, ratio: float) -> SRNet:
    """A new, smaller network of the same architecture without the lowest-L1 ``ratio`` of each layer's
    filters; ``net`` is left untouched. Ratio 0 returns an exact copy."""
    check_ratio(ratio)
    arch = getattr(net, "arch_name", type(net).__name__)
    pruner = _PRUNERS.get(arch)
    if pruner is None:
        raise SuperresError(f"cannot prune a {arch} network; prunable architectures: {', '.join(PRUNABLE)}")
    sd = {k: v.detach().cpu().float() for k, v in net.state_dict().items()}
    new_sd, hp = pruner(sd, dict(net.hyperparams), float(ratio))
    small = build(arch, **hp)
    small.load_state_dict(new_sd, strict=True)
    return small.eval()


# ---- cost ------------------------------------------------------------------------------------------------


