"""ESPCN (Shi et al., 2016): convolutions at LR and one sub-pixel (pixel-shuffle) layer.

Layout: conv ``f1`` c->n1, act, conv ``f2`` n1->n2, act, conv ``f3`` n2->c*s^2, pixel shuffle, optional
final tanh. Keys ``conv{1,2,3}.{weight,bias}`` match the OpenCV dnn_superres ``ESPCN_x{2,3,4}`` models
(converted in ``shared/weights/opencv_superres``), which load with ``strict=True``.

Activations are not stored in the weights, so they are hyper-parameters:

* ``activation="relu", final="tanh"`` (the default): the OpenCV / TF-ESPCN models. Their graph is
  conv-ReLU-conv-ReLU-conv-DepthToSpace-tanh; tanh is elementwise, so applying it after the shuffle is
  the same as before it.
* ``activation="tanh", final="none"``: the paper's network (tanh hidden layers, linear output).

:func:`_detect` cannot tell the two apart and returns the default (the only public weights we know).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, register, shuffle_scale

_KEYS = frozenset(f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))
_ACTS = ("relu", "tanh")
_FINALS = ("tanh", "none")


class ESPCN(SRNet):
    arch_name = "espcn"

    def __init__(
        self,
        channels: int = 1,
        scale: int = 3,
        n1: int = 64,
        n2: int = 32,
        f1: int = 5,
        f2: int = 3,
        f3: int = 3,
        activation: str = "relu",
        final: str = "tanh",
    ) -> None:
        super().__init__(channels=channels, scale=scale, n1=n1, n2=n2, f1=f1, f2=f2, f3=f3,
                         activation=activation, final=final)
        if activation not in _ACTS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {_ACTS}")
        if final not in _FINALS:
            raise ValueError(f"unknown final {final!r}; expected one of {_FINALS}")
        if scale < 2:
            raise ValueError(f"ESPCN needs scale >= 2, not {scale}")
        self.conv1 = nn.Conv2d(channels, n1, f1, 1, f1 // 2)
        self.conv2 = nn.Conv2d(n1, n2, f2, 1, f2 // 2)
        self.conv3 = nn.Conv2d(n2, channels * scale * scale, f3, 1, f3 // 2)
        self._act = torch.relu if activation == "relu" else torch.tanh
        self._final_tanh = final == "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act(self.conv1(x))
        x = self._act(self.conv2(x))
        x = F.pixel_shuffle(self.conv3(x), self.scale)
        return torch.tanh(x) if self._final_tanh else x


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if set(sd) != _KEYS:
        return None
    w1, w2, w3 = sd["conv1.weight"], sd["conv2.weight"], sd["conv3.weight"]
    if w1.ndim != 4 or w2.ndim != 4 or w3.ndim != 4:
        return None
    if w2.shape[1] != w1.shape[0] or w3.shape[1] != w2.shape[0]:
        return None
    channels = int(w1.shape[1])
    scale = shuffle_scale(int(w3.shape[0]), channels)
    if scale is None or scale < 2:  # scale 1 (c -> c) is SRCNN's layout
        return None
    return dict(channels=channels, scale=scale, n1=int(w1.shape[0]), n2=int(w2.shape[0]),
                f1=int(w1.shape[2]), f2=int(w2.shape[2]), f3=int(w3.shape[2]),
                activation="relu", final="tanh")


SPEC = register(
    ArchSpec(
        name="espcn",
        title="ESPCN (Shi et al.; OpenCV dnn_superres)",
        build=ESPCN,
        detect=_detect,
        receptive_field=lambda hp: int(hp["f1"]) // 2 + int(hp["f2"]) // 2 + int(hp["f3"]) // 2,
        in_channels_key="channels",
        out_channels_key="channels",
    )
)
