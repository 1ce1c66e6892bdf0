"""The ncnn model files as data: ``.param`` text and ``.bin`` weights, read without the ncnn runtime.

Why a module of its own: it is the floor the converters stand on (:mod:`superres.zoo.ncnn_walk` checks
graphs, the family converters map them to our state dicts, :mod:`superres.zoo.ncnn` is their entry
point) and what the deploy runtimes read to size a model; it imports nothing else of ``superres``.

File format (ncnn "param and model file structure"):

* ``.param`` text: magic ``7767517``; ``layer_count blob_count``; then one line per layer
  ``type name n_in n_out in... out... k=v ...``. ``v`` is an int or a float; an array parameter ``k`` is
  written with key ``-23300-k`` and value ``n,v1,...,vn``.
* ``.bin``: each layer's weight blobs concatenated in layer order. A *typed* blob starts with a 4-byte
  tag: ``0x01306B47`` fp16 values follow (padded to 4 bytes), ``0x00000000`` or ``0x0002C056`` fp32
  values follow; other tags (int8 ``0x000D4B38``, 256-entry lookup tables) are not supported here.
  *Raw* blobs (convolution biases, PReLU slopes) are bare fp32 with no tag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

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

RESIZE_NAMES = {1: "nearest", 2: "bilinear", 3: "bicubic"}
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
