"""FSRCNN (Dong et al., 2016): feature extraction, shrinking, ``m`` mapping layers, expanding, upsampling.

``FSRCNN(d, s, m)``: conv 5x5 c->d, conv 1x1 d->s, ``m`` x conv 3x3 s->s, conv 1x1 s->d, each followed by a
per-channel PReLU; the keys are flat, ``conv{i}`` / ``prelu{i}`` for ``i = 1 .. m + 3``. Two upsamplers:

* ``upsampler="deconv"``: the paper's 9x9 transposed conv with stride ``scale`` (key ``deconv``).
  Its weights do not record the scale (the stride is not stored), so :func:`_detect` reports
  :data:`DEFAULT_SCALE` for them.
* ``upsampler="subpixel"``: the OpenCV dnn_superres models (``FSRCNN_x{2,3,4}`` = (56, 12, 4),
  ``FSRCNN-small_x{2,3,4}`` = (32, 5, 1)): conv 1x1 d->c*s^2 without bias (key ``conv{m+4}``), pixel
  shuffle, then one learned bias per output channel (key ``output_bias``). They load with
  ``strict=True``.

The paper's "12K" for FSRCNN(56, 12, 4) counts conv/deconv weights only (12,464 for one channel); with
biases and PReLU slopes the deconv network has 12,809 parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import ArchSpec, SRNet, StateDict, register, shuffle_scale

DEFAULT_SCALE = 3  # the paper's main setting; a deconv checkpoint does not record its stride
DECONV_KERNEL = 9
_UPSAMPLERS = ("deconv", "subpixel")


def _plan(channels: int, d: int, s: int, m: int) -> list[tuple[int, int, int]]:
    """(in, out, kernel) of the PReLU-activated convs ``conv1 .. conv{m+3}``."""
    return [(channels, d, 5), (d, s, 1)] + [(s, s, 3)] * m + [(s, d, 1)]


class FSRCNN(SRNet):
    arch_name = "fsrcnn"

    def __init__(
        self,
        channels: int = 1,
        scale: int = DEFAULT_SCALE,
        d: int = 56,
        s: int = 12,
        m: int = 4,
        upsampler: str = "deconv",
    ) -> None:
        super().__init__(channels=channels, scale=scale, d=d, s=s, m=m, upsampler=upsampler)
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f"unknown upsampler {upsampler!r}; expected one of {_UPSAMPLERS}")
        if scale < 1 or m < 0:
            raise ValueError(f"need scale >= 1 and m >= 0, got scale={scale}, m={m}")
        plan = _plan(channels, d, s, m)  # numbered from 1 like the OpenCV checkpoints
        self.num_body = len(plan)
        for i, (cin, cout, k) in enumerate(plan, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, k, 1, k // 2))
            self.add_module(f"prelu{i}", nn.PReLU(cout))
        if upsampler == "subpixel":
            self.add_module(f"conv{self.num_body + 1}", nn.Conv2d(d, channels * scale * scale, 1, bias=False))
            self.output_bias = nn.Parameter(torch.zeros(channels))
        else:
            pad = DECONV_KERNEL // 2
            # output_padding makes the output exactly scale x the input size.
            self.deconv = nn.ConvTranspose2d(d, channels, DECONV_KERNEL, stride=scale, padding=pad,
                                             output_padding=scale - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_body + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
        if self.hyperparams["upsampler"] == "deconv":
            return self.deconv(x)
        x = F.pixel_shuffle(getattr(self, f"conv{self.num_body + 1}")(x), self.scale)
        return x + self.output_bias.view(1, -1, 1, 1)


def _detect(sd: StateDict) -> dict[str, Any] | None:
    if "conv1.weight" not in sd or "prelu1.weight" not in sd or "conv2.weight" not in sd:
        return None
    n = 0
    while f"prelu{n + 1}.weight" in sd:
        n += 1
    if n < 3:
        return None
    first = sd["conv1.weight"]
    if first.ndim != 4 or sd["conv2.weight"].ndim != 4:
        return None
    channels, d, s, m = int(first.shape[1]), int(first.shape[0]), int(sd["conv2.weight"].shape[0]), n - 3
    body = {f"prelu{i}.weight" for i in range(1, n + 1)}
    for i, (cin, cout, k) in enumerate(_plan(channels, d, s, m), start=1):
        w, b = sd.get(f"conv{i}.weight"), sd.get(f"conv{i}.bias")
        if w is None or b is None or tuple(w.shape) != (cout, cin, k, k) or tuple(b.shape) != (cout,):
            return None
        if tuple(sd[f"prelu{i}.weight"].shape) != (cout,):
            return None
        body |= {f"conv{i}.weight", f"conv{i}.bias"}
    last_name = f"conv{n + 1}.weight"
    if set(sd) == body | {last_name, "output_bias"}:
        last = sd[last_name]
        if last.ndim != 4 or last.shape[1] != d or last.shape[2:] != (1, 1):
            return None
        if tuple(sd["output_bias"].shape) != (channels,):
            return None
        scale = shuffle_scale(int(last.shape[0]), channels)
        if scale is None:
            return None
        upsampler = "subpixel"
    elif set(sd) == body | {"deconv.weight", "deconv.bias"}:
        if tuple(sd["deconv.weight"].shape) != (d, channels, DECONV_KERNEL, DECONV_KERNEL):
            return None
        scale, upsampler = DEFAULT_SCALE, "deconv"
    else:
        return None
    return dict(channels=channels, scale=scale, d=d, s=s, m=m, upsampler=upsampler)


def _rf(hp: dict[str, Any]) -> int:
    # 5x5 conv (2) + m 3x3 convs (1 each) at LR; the 9x9 deconv reaches 4 HR pixels = ceil(4/s) LR pixels.
    rf = 2 + int(hp["m"])
    if hp["upsampler"] == "deconv":
        rf += math.ceil((DECONV_KERNEL // 2) / int(hp["scale"]))
    return rf


SPEC = register(
    ArchSpec(
        name="fsrcnn",
        title="FSRCNN (Dong et al.; OpenCV dnn_superres sub-pixel variant)",
        build=FSRCNN,
        detect=_detect,
        receptive_field=_rf,
        in_channels_key="channels",
        out_channels_key="channels",
    )
)
