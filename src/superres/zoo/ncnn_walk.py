"""Graph walking with data-flow checks, and the layer checks every ncnn converter shares.

A converter walks a graph's compute layers in file order; each helper here takes the next layer, checks
it is exactly what our architecture computes (type, inputs, kernel/stride/pad, fused activation,
constants) and returns its weights, so a graph that differs anywhere is refused with the layer named.
Public names, one direction of imports: :mod:`superres.zoo.ncnn_format` below, the family converters
(:mod:`superres.zoo.ncnn_families`, ``ncnn_cugan``, ``ncnn_cunet``) and :mod:`superres.zoo.ncnn` above.
"""

from __future__ import annotations

import math
from typing import NoReturn

import numpy as np
import torch

from .ncnn_format import RESIZE_NAMES, NcnnError, NcnnGraph, NcnnLayer

ACT_NONE, ACT_RELU, ACT_LEAKY = 0, 1, 2
OP_ADD, OP_SUB, OP_MUL = 0, 1, 2


class Walk:
    """Sequential walk over the compute layers with data-flow checks.

    ``Split`` only fans a blob out, so blobs are compared by their root (the blob before any Splits).
    """

    def __init__(self, graph: NcnnGraph, weights: dict[str, list[np.ndarray]], arch: str) -> None:
        self.graph, self.weights, self.arch = graph, weights, arch
        self._prod = graph.producer()
        self.layers = [layer for layer in graph.layers if layer.type not in ("Input", "Split")]
        self.i = 0
        self.channels: dict[str, int] = {}
        inputs = graph.input_names
        if len(inputs) != 1:
            self.fail(f"expected one Input blob, found {len(inputs)}")
        self.input = inputs[0]

    def fail(self, msg: str) -> NoReturn:
        raise NcnnError(f"{self.graph.source}: not a {self.arch} graph: {msg}")

    def root(self, blob: str) -> str:
        while blob in self._prod and self.graph.layers[self._prod[blob]].type == "Split":
            blob = self.graph.layers[self._prod[blob]].inputs[0]
        return blob

    def peek(self) -> NcnnLayer | None:
        return self.layers[self.i] if self.i < len(self.layers) else None

    def next(self, layer_type: str, *inputs: str) -> NcnnLayer:
        """Take the next layer, check its type and that it reads exactly ``inputs`` (root blobs, in order)."""
        layer = self.peek()
        if layer is None or layer.type != layer_type:
            self.fail(f"expected {layer_type} next, found {layer!r}")
        got = tuple(self.root(b) for b in layer.inputs)
        if got != inputs or len(layer.outputs) != 1:
            self.fail(f"{layer!r} reads {got}, expected {inputs}")
        self.i += 1
        return layer

    def next_of(self, layer_type: str, inputs: set[str], what: str) -> NcnnLayer:
        """Like :meth:`next` for commutative layers: the inputs may come in any order."""
        layer = self.peek()
        if layer is None or layer.type != layer_type or {self.root(b) for b in layer.inputs} != inputs \
                or len(layer.inputs) != len(inputs):
            self.fail(f"expected {what} ({layer_type} of {sorted(inputs)}), found {layer!r}")
        return self.next(layer_type, *(self.root(b) for b in layer.inputs))

    def out(self, layer: NcnnLayer) -> str:
        return layer.outputs[0]

    def conv(self, x: str, act: str | None, slope: float = 0.0) -> tuple[NcnnLayer, torch.Tensor, torch.Tensor]:
        """Next layer must be a 3x3 stride-1 pad-1 biased Convolution of ``x`` with the given fused activation."""
        layer = self.next("Convolution", x)
        k = int(layer.get(1, 0))
        geometry = (int(layer.get(11, k)), k, int(layer.get(2, 1)), int(layer.get(12, layer.get(2, 1))),
                    int(layer.get(3, 1)), int(layer.get(13, layer.get(3, 1))))
        pad = int(layer.get(4, 0))
        pads = (pad, int(layer.get(14, pad)), int(layer.get(15, pad)), int(layer.get(16, layer.get(14, pad))))
        if geometry != (3, 3, 1, 1, 1, 1) or pads != (1, 1, 1, 1) or layer.get(19, 0):
            self.fail(f"{layer!r} is not a plain 3x3 stride-1 pad-1 convolution ({layer.params})")
        if not layer.get(5, 0):
            self.fail(f"{layer!r} has no bias")
        act_type = int(layer.get(9, 0))
        if act is None and act_type != 0:
            self.fail(f"{layer!r} has fused activation type {act_type}, expected none")
        if act == "leakyrelu":
            got = layer.get(10, [0.0])
            if act_type != 2 or not isinstance(got, list) or not math.isclose(got[0], slope, abs_tol=1e-6):
                self.fail(f"{layer!r} must fuse LeakyReLU({slope}) (9=2, -23310=1,{slope}), has 9={act_type} {got}")
        cin = self.channels.get(x)
        cout = int(layer.get(0, 0))
        if cout <= 0:
            self.fail(f"{layer!r} has num_output {cout}")
        w, b = self.weights[layer.name]
        if cin is None:  # the network input: infer its channels from the first conv
            cin = w.size // (cout * 9)
            self.channels[x] = cin
        if w.size != cout * cin * 9 or b.size != cout:
            self.fail(f"{layer!r} holds {w.size} weights for {cin}->{cout} channels 3x3")
        self.channels[self.out(layer)] = cout
        return layer, torch.from_numpy(w.reshape(cout, cin, 3, 3).copy()), torch.from_numpy(b.copy())

    def interp(self, x: str, mode: int, scale: float) -> NcnnLayer:
        layer = self.next("Interp", x)
        self.check_interp(layer, mode, scale)
        self.channels[self.out(layer)] = self.channels.get(x, 0)
        return layer

    def check_interp(self, layer: NcnnLayer, mode: int, scale: float) -> None:
        got = (int(layer.get(0, 0)), float(layer.get(1, 1.0)), float(layer.get(2, 1.0)))
        fixed_size = int(layer.get(3, 0)) or int(layer.get(4, 0)) or int(layer.get(5, 0))
        if got != (mode, scale, scale) or fixed_size or int(layer.get(6, 0)):
            self.fail(f"{layer!r} is {got} (resize type, h/w scale), expected {RESIZE_NAMES[mode]} x{scale}")

    def is_final(self, blob: str) -> bool:
        return blob not in self.graph.consumers()

    def done(self) -> None:
        if self.peek() is not None:
            self.fail(f"unexpected layers from {self.peek()!r} on")


def check_eltwise_residual(walk: Walk, layer: NcnnLayer, branch: str, skip: str) -> None:
    """``layer`` must compute ``0.2 * branch + 1.0 * skip`` (Eltwise SUM with coefficients)."""
    coeffs = layer.get(1, [])
    if int(layer.get(0, 1)) != 1 or not isinstance(coeffs, list) or len(coeffs) != 2:
        walk.fail(f"{layer!r} is not a weighted sum of two blobs ({layer.params})")
    by_blob = {walk.root(b): float(c) for b, c in zip(layer.inputs, coeffs)}
    if not (math.isclose(by_blob.get(branch, 0), 0.2, abs_tol=1e-6) and math.isclose(by_blob.get(skip, 0), 1.0)):
        walk.fail(f"{layer!r} must compute 0.2*{branch} + 1*{skip}, has coefficients {by_blob}")


def check_add(walk: Walk, layer: NcnnLayer) -> None:
    if int(layer.get(0, 0)) != 0 or int(layer.get(1, 0)):
        walk.fail(f"{layer!r} is not an addition of two blobs ({layer.params})")


def fused_conv(walk: Walk, x: str, kernel: int, act_type: int, *, pad: int | None = None, slope: float = 0.0,
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
    if act_type == ACT_LEAKY:
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


def scalar_op(walk: Walk, x: str, op: int, value: float, what: str) -> str:
    layer = walk.next("BinaryOp", x)
    if int(layer.get(0, 0)) != op or int(layer.get(1, 0)) != 1 or \
            not math.isclose(float(layer.get(2, 0.0)), value, rel_tol=1e-6):
        walk.fail(f"{layer!r} must compute {what} ({layer.params})")
    walk.channels[walk.out(layer)] = walk.channels.get(x, 0)
    return walk.out(layer)


def binary(walk: Walk, a: str, b: str, op: int, what: str) -> str:
    layer = walk.next_of("BinaryOp", {a, b}, what) if op in (OP_ADD, OP_MUL) else walk.next("BinaryOp", a, b)
    if int(layer.get(0, 0)) != op or int(layer.get(1, 0)):
        walk.fail(f"{layer!r} must compute {what} ({layer.params})")
    walk.channels[walk.out(layer)] = walk.channels.get(a, 0)
    return walk.out(layer)


def unary(walk: Walk, layer_type: str, x: str) -> str:
    layer = walk.next(layer_type, x)
    walk.channels[walk.out(layer)] = walk.channels.get(x, 0)
    return walk.out(layer)


def shuffle(walk: Walk, x: str) -> tuple[str, int]:
    layer = walk.next("PixelShuffle", x)
    s = int(layer.get(0, 1))
    if int(layer.get(1, 0)) != 0:
        walk.fail(f"{layer!r} uses depth-to-space mode {layer.get(1, 0)}, expected 0 (PyTorch PixelShuffle)")
    if s < 1 or walk.channels[x] % (s * s):
        walk.fail(f"{layer!r} factor {s} does not divide {walk.channels[x]} channels")
    return walk.out(layer), s


def finish(walk: Walk, y: str) -> None:
    walk.done()
    if not walk.is_final(y):
        walk.fail(f"output blob {y!r} is consumed by another layer")


def cugan_conv(walk: Walk, x: str, sd: dict[str, torch.Tensor], key: str, kernel: int = 3, stride: int = 1,
                act: bool = True, deconv: bool = False, pad: int = 0) -> str:
    act_type = ACT_LEAKY if act else ACT_NONE
    layer, w, sd[f"{key}.bias"] = fused_conv(walk, x, kernel, act_type, pad=pad, slope=0.1, stride=stride,
                                        layer_type="Deconvolution" if deconv else "Convolution")
    sd[f"{key}.weight"] = w.transpose(0, 1).contiguous() if deconv else w
    return walk.out(layer)


def cugan_se(walk: Walk, x: str, sd: dict[str, torch.Tensor], key: str) -> str:
    out = binary(walk, x, se_gate(walk, x, sd, key), OP_MUL, f"{key}: features * gate")
    walk.channels[out] = walk.channels[x]
    return out


def se_gate(walk: Walk, x: str, sd: dict[str, torch.Tensor], key: str) -> str:
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
