"""Our own writer of ncnn ``.param``/``.bin`` files, so any convolutional zoo model or user weights run on the
ncnn (Vulkan) backend without a new heavy dependency (pnnx).

How: the network is traced once on a small real input with ``make_fx`` (ATen ops, Python control flow
resolved), every node is evaluated on that input, nodes that do not depend on the image are folded into
constants, and the remaining ops are mapped one by one onto ncnn layers (the format that
:mod:`superres.zoo.ncnn` reads). Because the trace saw one input size, the written file is then run by the
ncnn runtime (CPU, fp32) on a second, non-square size and compared with PyTorch: a network whose graph
depends on the size (SRMD's degradation maps, Real-CUGAN's size-dependent crops) is refused instead of
being exported wrong.

Supported ops: convolution (plain, grouped, transposed), ReLU / LeakyReLU / PReLU / SiLU / sigmoid / tanh,
pixel shuffle, nearest / bilinear / bicubic upsampling, padding, concatenation along channels, and
element-wise add / sub / mul / div between images, constants of shape (C, 1, 1) and scalars. That covers
ESPCN, EDSR, SRVGG (Real-ESRGAN compact), FSRCNN, RRDBNet, SPAN, SRCNN and waifu2x
UpConv7; attention (SwinIR), global pooling (Real-CUGAN, CUNet, RCAN) and size-dependent inputs (SRMD)
are refused with the op named.

Files: ``<stem>.param``, ``<stem>.bin`` and ``<stem>.json``, the same ``superres`` metadata the ONNX exports
carry (model, architecture, hyper-parameters, weights sha256) plus the sha256 of the .param and .bin, so a
cached or user-given file is checked against the weights asked for and against truncation.
"""

from __future__ import annotations

import json
import logging
import operator
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..files import sha256_file
from .common import DeployError

if TYPE_CHECKING:  # pragma: no cover
    from ..archs.base import SRNet

log = logging.getLogger(__name__)
NCNN_INPUT, NCNN_OUTPUT = "in0", "out0"
_MAGIC = 7767517
_BINARY = {"add": 0, "sub": 1, "mul": 2, "div": 3}
_REVERSED = {"add": 0, "sub": 7, "mul": 2, "div": 8}  # scalar on the left: rsub, rdiv
_UNARY_LAYERS = {
    "relu": ("ReLU", {}), "relu_": ("ReLU", {}), "sigmoid": ("Sigmoid", {}), "silu": ("Swish", {}),
    "tanh": ("TanH", {}), "alias": None, "clone": None, "detach": None, "contiguous": None,
}
_PADS = {"replication_pad2d": 1, "reflection_pad2d": 2}
_INTERP = {"upsample_nearest2d": 1, "upsample_bilinear2d": 2, "upsample_bicubic2d": 3}


@dataclass
class _Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, Any] = field(default_factory=dict)
    blobs: list[tuple[bool, np.ndarray]] = field(default_factory=list)  # (typed, float32 data)


class _Unsupported(DeployError):
    pass


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(float(np.float32(v))) if np.isfinite(v) else str(v)
    return str(int(v))


def _param_line(layer: _Layer) -> str:
    parts = [f"{layer.type:<24}", f"{layer.name:<24}", str(len(layer.inputs)), str(len(layer.outputs)),
             *layer.inputs, *layer.outputs]
    for k, v in layer.params.items():
        if isinstance(v, (list, tuple)):
            parts.append(f"{-23300 - k}={len(v)}," + ",".join(_fmt(x) for x in v))
        else:
            parts.append(f"{k}={_fmt(v)}")
    return " ".join(parts)


class _Builder:
    """Turns an evaluated ATen graph into ncnn layers; ``dyn`` maps fx nodes to blob names."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.layers: list[_Layer] = []
        self.dyn: dict[Any, str] = {}
        self.value: dict[Any, Any] = {}
        self.count = 0

    def fail(self, msg: str) -> None:
        raise _Unsupported(f"cannot export {self.what} to ncnn: {msg}; run it with --backend torch "
                           "(or onnxruntime)")

    def blob(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def add(self, type_: str, inputs: list[str], params: dict[int, Any] | None = None,
            blobs: list[tuple[bool, np.ndarray]] | None = None) -> str:
        out = self.blob(type_.lower())
        name = f"{type_.lower()}_{self.count}"
        self.layers.append(_Layer(type_, name, inputs, [out], params or {}, blobs or []))
        return out

    def const_blob(self, t: torch.Tensor) -> str:
        """A constant image-shaped operand: (C, 1, 1) or (1, 1, 1) after dropping the batch axis."""
        a = t.detach().float().cpu()
        while a.ndim > 3 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 3 or a.shape[1] != 1 or a.shape[2] != 1:
            self.fail(f"a constant of shape {tuple(t.shape)} meets the image (only per-channel constants are "
                      "supported; the graph depends on the image size)")
        c = int(a.shape[0])
        return self.add("MemoryData", [], {0: 1, 1: 1, 2: c}, [(False, a.reshape(-1).numpy())])

    # ---- ops ------------------------------------------------------------------------------------------
    def conv(self, x: str, w: torch.Tensor, b: torch.Tensor | None, stride: list[int], pad: list[int],
             dil: list[int], transposed: bool, out_pad: list[int], groups: int) -> str:
        if w.ndim != 4:
            self.fail(f"a {w.ndim - 2}-d convolution")
        w = w.detach().float().cpu()
        kh, kw = int(w.shape[2]), int(w.shape[3])
        if transposed:
            if groups != 1:
                self.fail("a grouped transposed convolution")
            cout = int(w.shape[1])
            w = w.transpose(0, 1).contiguous()  # (in, out, kh, kw) -> ncnn's (out, in, kh, kw)
        else:
            cout = int(w.shape[0])
        params: dict[int, Any] = {0: cout, 1: kw, 11: kh, 2: dil[1], 12: dil[0], 3: stride[1], 13: stride[0],
                                  4: pad[1], 15: pad[1], 14: pad[0], 16: pad[0], 5: int(b is not None),
                                  6: int(w.numel())}
        if transposed and any(out_pad):
            params.update({18: out_pad[1], 19: out_pad[0]})
        kind = "Deconvolution" if transposed else "Convolution"
        if groups != 1:
            kind = "ConvolutionDepthWise"
            params[7] = groups
        blobs = [(True, w.reshape(-1).numpy())]
        if b is not None:
            blobs.append((False, b.detach().float().cpu().reshape(-1).numpy()))
        return self.add(kind, [x], params, blobs)

    def binary(self, op: str, a: Any, b: Any) -> str:
        da, db = isinstance(a, str), isinstance(b, str)
        if da and db:
            return self.add("BinaryOp", [a, b], {0: _BINARY[op]})
        dynamic, other, left = (a, b, True) if da else (b, a, False)
        if isinstance(other, torch.Tensor) and other.numel() == 1:
            other = float(other.reshape(()).item())
        if isinstance(other, (int, float)):
            code = _BINARY[op] if left else _REVERSED[op]
            return self.add("BinaryOp", [dynamic], {0: code, 1: 1, 2: float(other)})
        const = self.const_blob(other)
        return self.add("BinaryOp", [dynamic, const] if left else [const, dynamic], {0: _BINARY[op]})


def _is_dyn(b: _Builder, arg: Any) -> bool:
    if isinstance(arg, torch.fx.Node):
        return arg in b.dyn
    if isinstance(arg, (list, tuple)):
        return any(_is_dyn(b, a) for a in arg)
    return False


def _val(b: _Builder, arg: Any) -> Any:
    """A node's blob name when it depends on the image, else its concrete value."""
    if isinstance(arg, torch.fx.Node):
        return b.dyn.get(arg, b.value.get(arg))
    if isinstance(arg, (list, tuple)):
        return type(arg)(_val(b, a) for a in arg)
    return arg


def _emit(b: _Builder, node: torch.fx.Node, out: torch.Tensor) -> str | None:
    """The ncnn layer(s) for one image-dependent ATen node; returns its output blob."""
    name = node.target._opname if hasattr(node.target, "_opname") else str(node.target)
    args = [_val(b, a) for a in node.args]
    kw = {k: _val(b, v) for k, v in node.kwargs.items()}
    src = node.args[0] if node.args else None
    in_shape = tuple(b.value[src].shape) if isinstance(src, torch.fx.Node) else ()
    if name == "convolution":
        x, w, bias, stride, pad, dil, transposed, out_pad, groups = args
        if isinstance(w, str) or isinstance(bias, str):
            b.fail("a convolution whose weights depend on the image")
        return b.conv(x, w, bias, list(stride), list(pad), list(dil), bool(transposed), list(out_pad),
                      int(groups))
    if name in _UNARY_LAYERS:
        layer = _UNARY_LAYERS[name]
        if layer is None:
            return args[0]
        return b.add(layer[0], [args[0]], dict(layer[1]))
    if name in ("leaky_relu", "leaky_relu_"):
        slope = float(args[1]) if len(args) > 1 else float(kw.get("negative_slope", 0.01))
        return b.add("ReLU", [args[0]], {0: slope})
    if name in ("_prelu_kernel", "prelu"):
        slopes = args[1].detach().float().reshape(-1).cpu()
        return b.add("PReLU", [args[0]], {0: int(slopes.numel())}, [(False, slopes.numpy())])
    if name == "hardtanh":
        lo, hi = (float(args[1]), float(args[2])) if len(args) > 2 else (-1.0, 1.0)
        return b.add("Clip", [args[0]], {0: lo, 1: hi})
    if name == "clamp":
        lo, hi = (args + [None, None])[1:3]
        lo, hi = float(-3.4e38 if lo is None else lo), float(3.4e38 if hi is None else hi)
        return b.add("Clip", [args[0]], {0: lo, 1: hi})
    if name == "pixel_shuffle":
        return b.add("PixelShuffle", [args[0]], {0: int(args[1])})
    if name in _INTERP:
        sh, sw = out.shape[2] / in_shape[2], out.shape[3] / in_shape[3]
        if sh != int(sh) or sw != int(sw):
            b.fail(f"{name} to a fixed size (scales {sh:g} x {sw:g}); only integer scale factors are "
                   "supported")
        align = bool(args[2]) if name != "upsample_nearest2d" and len(args) > 2 else False
        return b.add("Interp", [args[0]], {0: _INTERP[name], 1: float(sh), 2: float(sw), 6: int(align)})
    if name in _PADS or name == "constant_pad_nd":
        pad = list(args[1])
        if len(pad) != 4:
            b.fail(f"{name} over {len(pad) // 2} axes")
        left, right, top, bottom = pad
        kind = _PADS.get(name, 0)
        value = float(args[2]) if name == "constant_pad_nd" and len(args) > 2 else 0.0
        return b.add("Padding", [args[0]], {0: top, 1: bottom, 2: left, 3: right, 4: kind, 5: value})
    if name == "cat":
        dim = int(args[1]) if len(args) > 1 else 0
        parts = args[0]
        if dim < 0:
            dim += len(in_shape) if in_shape else 4
        first = node.args[0][0] if isinstance(node.args[0], (list, tuple)) else None
        ndim = b.value[first].ndim if isinstance(first, torch.fx.Node) else 4
        if dim < 0:
            dim += ndim
        if dim != 1 or any(not isinstance(p, str) for p in parts):
            b.fail("a concatenation that is not of images along channels")
        return b.add("Concat", list(parts), {0: 0})
    if name in ("add", "sub", "mul", "div"):
        alpha = kw.get("alpha", 1)
        if name in ("add", "sub") and alpha != 1:
            other = b.binary("mul", args[1], float(alpha)) if isinstance(args[1], str) else args[1] * alpha
            return b.binary(name, args[0], other)
        return b.binary(name, args[0], args[1])
    if name in ("view", "reshape", "expand", "_unsafe_view") and tuple(out.shape) == in_shape:
        return args[0]
    b.fail(f"the op aten.{name} on the image")
    return None


def _trace(net: torch.nn.Module, x: torch.Tensor) -> torch.fx.GraphModule:
    from torch.fx.experimental.proxy_tensor import make_fx

    with torch.no_grad():
        return make_fx(net)(x)


def build_layers(net: "SRNet", what: str, side: int = 16) -> list[_Layer]:
    """The ncnn layers computing ``net`` (float32 NCHW in [0, 1] -> output), batch axis dropped."""
    d = net.descriptor
    m = max(1, d.size_multiple)
    side = -(-side // m) * m
    x = torch.rand(1, d.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    try:
        gm = _trace(net.eval().float(), x)
    except Exception as e:  # noqa: BLE001 - tracing errors come in many types
        raise DeployError(f"cannot export {what} to ncnn: tracing failed ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    b = _Builder(what)
    b.layers.append(_Layer("Input", "input", [], [NCNN_INPUT]))
    output: Any = None
    with torch.no_grad():
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                b.value[node] = x
                b.dyn[node] = NCNN_INPUT
            elif node.op == "get_attr":
                target: Any = gm
                for part in str(node.target).split("."):
                    target = getattr(target, part)
                b.value[node] = target
            elif node.op == "call_function":
                args = [b.value.get(a, a) if isinstance(a, torch.fx.Node) else
                        [b.value.get(i, i) if isinstance(i, torch.fx.Node) else i for i in a]
                        if isinstance(a, (list, tuple)) else a for a in node.args]
                kwargs = {k: b.value.get(v, v) if isinstance(v, torch.fx.Node) else v
                          for k, v in node.kwargs.items()}
                out = node.target(*args, **kwargs)
                b.value[node] = out
                if _is_dyn(b, list(node.args)) or _is_dyn(b, list(node.kwargs.values())):
                    if node.target is operator.getitem:
                        b.fail("an op with several outputs on the image")
                    if not isinstance(out, torch.Tensor):
                        b.fail(f"the op {node.target} returns {type(out).__name__}")
                    blob = _emit(b, node, out)
                    if blob is not None:
                        b.dyn[node] = blob
            elif node.op == "output":
                outs = node.args[0]
                output = outs[0] if isinstance(outs, (list, tuple)) else outs
    if output not in b.dyn:
        b.fail("its output does not depend on its input")
    _rename_output(b, b.dyn[output])
    return _insert_splits(b.layers)


def _rename_output(b: _Builder, blob: str) -> None:
    if blob == NCNN_INPUT:
        b.fail("the network is the identity")
    for layer in b.layers:
        layer.outputs = [NCNN_OUTPUT if o == blob else o for o in layer.outputs]
        layer.inputs = [NCNN_OUTPUT if i == blob else i for i in layer.inputs]


def _insert_splits(layers: list[_Layer]) -> list[_Layer]:
    """ncnn wants one consumer per blob: a blob read by several layers goes through a Split."""
    readers: dict[str, list[tuple[int, int]]] = {}
    for i, layer in enumerate(layers):
        for j, blob in enumerate(layer.inputs):
            readers.setdefault(blob, []).append((i, j))
    out: list[_Layer] = []
    pending: dict[int, list[_Layer]] = {}
    producer = {o: i for i, layer in enumerate(layers) for o in layer.outputs}
    for blob, uses in readers.items():
        if len(uses) < 2:
            continue
        names = [f"{blob}_split{k}" for k in range(len(uses))]
        for (i, j), new in zip(uses, names):
            layers[i].inputs[j] = new
        pending.setdefault(producer[blob], []).append(_Layer("Split", f"split_{blob}", [blob], names))
    for i, layer in enumerate(layers):
        out.append(layer)
        out.extend(pending.get(i, []))
    return out


def write_files(layers: list[_Layer], param: Path, bin_path: Path) -> None:
    blobs = {o for layer in layers for o in layer.outputs}
    lines = [str(_MAGIC), f"{len(layers)} {len(blobs)}", *(_param_line(layer) for layer in layers)]
    param.write_text("\n".join(lines) + "\n", encoding="ascii")
    with open(bin_path, "wb") as f:
        for layer in layers:
            for typed, data in layer.blobs:
                if typed:
                    f.write(struct.pack("<I", 0))  # fp32 tag
                f.write(np.ascontiguousarray(data, dtype="<f4").tobytes())


def _verify(net: "SRNet", param: Path, bin_path: Path, what: str) -> float:
    """Run the written files on the ncnn CPU runtime at a size the trace did not see; returns the max
    difference from PyTorch (relative to the output's range) and refuses the export when it is large."""
    from .ncnn_runtime import NcnnSession

    d = net.descriptor
    m = max(1, d.size_multiple)
    h, w = -(-20 // m) * m, -(-28 // m) * m
    x = torch.rand(1, d.in_channels, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x).float().numpy()
    got = NcnnSession(param, bin_path, device="cpu", precision="fp32", threads=1).run(x.numpy())
    if got.shape != ref.shape:
        raise DeployError(f"cannot export {what} to ncnn: the written graph gives {got.shape[1:]} for "
                          f"{ref.shape[1:]} at another input size (a size-dependent graph); "
                          "use --backend torch")
    err = float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))
    if err > 1e-3:
        raise DeployError(f"cannot export {what} to ncnn: the written graph differs from PyTorch by "
                          f"{err:.2g} at another input size (a size-dependent graph); use --backend torch")
    return err


def export_ncnn(net: "SRNet", param: str | Path, meta: dict[str, str], *, verify: bool = True) -> Path:
    """Write ``net`` as ``param`` (.param) with its ``.bin`` and ``.json`` beside it, atomically: a failed
    or refused export leaves no file. ``meta``: the superres metadata (model, arch, weights_sha256, ...)."""
    dst = Path(param)
    if dst.suffix.lower() != ".param":
        raise DeployError(f"an ncnn model file name ends in .param, not '{dst.name}'")
    what = f"{meta.get('model', '?')!r} ({net.descriptor.arch})"
    layers = build_layers(net, what)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".superres-ncnn-", dir=dst.parent) as tmp:
        p, bn = Path(tmp) / "model.param", Path(tmp) / "model.bin"
        write_files(layers, p, bn)
        if verify:
            _verify(net, p, bn, what)
        info = dict(meta, param_sha256=sha256_file(p), bin_sha256=sha256_file(bn), format="ncnn")
        js = Path(tmp) / "model.json"
        js.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        # .bin and .param first, the .json (what marks a complete export) last
        bn.replace(dst.with_suffix(".bin"))
        p.replace(dst)
        js.replace(dst.with_suffix(".json"))
    log.info("exported %s to %s", what, dst)
    return dst


def read_ncnn_metadata(param: str | Path, *, check_files: bool = True) -> dict[str, str]:
    """The ``.json`` metadata beside an exported ``.param`` (empty when there is none); with
    ``check_files``, refuses a .param/.bin whose sha256 differs from the one recorded (truncated or edited)
    or which is not shaped like this writer's output."""
    p = Path(param)
    js = p.with_suffix(".json")
    if not js.is_file():
        return {}
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DeployError(f"'{js}' is not readable superres ncnn metadata") from None
    if not isinstance(meta, dict):
        raise DeployError(f"'{js}' is not readable superres ncnn metadata")
    meta = {str(k): str(v) for k, v in meta.items()}
    if check_files:
        for suffix, key in ((".param", "param_sha256"), (".bin", "bin_sha256")):
            f = p.with_suffix(suffix)
            if not f.is_file() or sha256_file(f) != meta.get(key):
                raise DeployError(f"'{f}' does not match its metadata '{js.name}' (changed or truncated); "
                                  "export it again")
        check_export_files(p, p.with_suffix(".bin"))  # the .json is the file's word, not proof
    return meta


# Layer types this writer emits, and what each stores in the .bin. A file claiming to be one of our exports is
# checked against this before the ncnn runtime reads it: its .bin must be exactly what the .param declares (so
# ncnn never allocates for weights that are not there) and no layer may grow the image without bound.
_WRITTEN_WEIGHTLESS = frozenset({"Input", "Split", "ReLU", "Sigmoid", "Swish", "TanH", "Clip", "PixelShuffle",
                                 "Interp", "Padding", "Concat", "BinaryOp"})
_MAX_GROWTH = 16  # the largest up-scale one Interp or PixelShuffle may apply
_MAX_PAD = 1024


def check_export_files(param: str | Path, bin_path: str | Path) -> None:
    """Refuse a .param/.bin pair that is not shaped like this writer's output (see the comment above)."""
    from ..zoo.ncnn import NcnnError, read_param

    try:
        graph = read_param(param)
    except NcnnError as e:
        raise DeployError(str(e)) from None
    want = 0
    for layer in graph.layers:
        t, g = layer.type, layer.get
        bad = f"'{param}': {layer!r} is not what superres's ncnn writer makes"
        if t in ("Convolution", "ConvolutionDepthWise", "Deconvolution"):
            n, cout = int(g(6, 0)), int(g(0, 0))
            if n <= 0 or cout <= 0 or g(8, 0):
                raise DeployError(bad)
            want += 4 + 4 * n + (4 * cout if g(5, 0) else 0)
        elif t == "PReLU":
            want += 4 * max(0, int(g(0, 0)))
        elif t == "MemoryData":
            dims = [int(g(k, 0)) for k in (0, 1, 2)]
            if dims[0] != 1 or dims[1] != 1 or dims[2] <= 0:
                raise DeployError(bad)
            want += 4 * dims[2]
        elif t in _WRITTEN_WEIGHTLESS:
            growth = {"Interp": max(float(g(1, 1.0)), float(g(2, 1.0))) if not (g(3, 0) or g(4, 0)) else 1e9,
                      "PixelShuffle": float(g(0, 1))}.get(t, 1.0)
            pads = [int(g(k, 0)) for k in (0, 1, 2, 3)] if t == "Padding" else [0]
            if not 0 < growth <= _MAX_GROWTH or max(pads) > _MAX_PAD or min(pads) < 0 or \
                    (t == "Padding" and g(6, 0)):
                raise DeployError(bad)
        else:
            raise DeployError(f"'{param}': layer type {t!r} is not one superres's ncnn writer makes")
    size = Path(bin_path).stat().st_size if Path(bin_path).is_file() else -1
    if size != want:
        raise DeployError(f"'{bin_path}' holds {size} bytes where '{Path(param).name}' declares {want}")
