"""Runtime sessions that act like the torch network on a tile: float32 NCHW in, float32 NCHW out.

A session wraps an ONNX Runtime ``InferenceSession`` or an OpenVINO compiled model. It is created from an
exported file, or from a model name / weights file, in which case the network is exported once to a
cache folder keyed by the weights' sha256, the opset and the precision. :func:`load_backend_model` puts a
session behind an :class:`~superres.inference.upscaler.Upscaler`, so tiling, colour handling, alpha and
bit depth are the same code whatever runs the tiles.

Sessions are safe to share between threads: ONNX Runtime's ``run`` is thread-safe, and the OpenVINO
wrapper keeps one infer request per thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import did_you_mean
from .common import PRECISIONS, DeployError, require, short, weights_digest
from .export import DEFAULT_OPSET, export_onnx, read_metadata

if TYPE_CHECKING:  # pragma: no cover
    from ..archs.base import SRNet
    from ..inference.upscaler import UpscaleOptions, Upscaler

log = logging.getLogger(__name__)
EXPORTED_SUFFIXES = (".onnx", ".xml")
SESSION_BACKENDS = ("onnxruntime", "openvino", "tensorrt")  # what open_session runs
_TRT_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


class Session:
    """Common part: metadata, numpy/torch adaptation. Subclasses implement :meth:`run`."""

    backend = ""

    def __init__(self, path: Path, meta: dict[str, str]) -> None:
        self.path = path
        self.meta = meta

    @property
    def scale(self) -> int:
        return int(self.meta.get("scale", "0"))

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        """Same call as the network: a float32 NCHW tensor (or array) in, the same kind out."""
        if isinstance(x, torch.Tensor):
            y = self.run(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32))
            return torch.from_numpy(y)
        return self.run(np.ascontiguousarray(x, dtype=np.float32))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, model={self.meta.get('model')!r})"


class OnnxRuntimeSession(Session):
    """ONNX Runtime on the CPU (or the first available of ``providers``)."""

    backend = "onnxruntime"

    def __init__(
        self, path: str | os.PathLike[str], *, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        ort = require("onnxruntime", "the onnxruntime backend")
        p = Path(path)
        if p.suffix.lower() != ".onnx":
            raise DeployError(f"the onnxruntime backend runs .onnx files, not '{p.name}'")
        super().__init__(p, read_metadata(p))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        # No busy-waiting between runs: the tiler and colour code need the same cores right after.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(str(p), opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DeployError(f"onnxruntime cannot load '{p}': {first}") from None
        self._input = self._sess.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input: x})[0]


_OV_CORE: Any = None
_OV_CORE_LOCK = threading.Lock()


def openvino_core(ov: Any) -> Any:
    """The process's one ``ov.Core``, kept until exit.

    Why one: OpenVINO's CPU plugin (2024-2026 releases) gives the creating thread a new signal stack
    (``sigaltstack``) and, when the plugin is destroyed, puts back the stack it replaced and unmaps its
    own. Two cores destroyed in the order they were made leave the thread on an unmapped stack, and the
    next signal with a handler (Ctrl-C, SIGTERM, SIGCHLD after a DataLoader) kills the process with a
    segmentation fault (``tests/test_deploy.py`` shows it in a child process). A single core never does."""
    global _OV_CORE
    with _OV_CORE_LOCK:
        if _OV_CORE is None:
            _OV_CORE = ov.Core()
        return _OV_CORE


class OpenVINOSession(Session):
    """OpenVINO on the CPU, from an .onnx or .xml file, fp32 arithmetic unless the file is quantized."""

    backend = "openvino"

    def __init__(
        self, path: str | os.PathLike[str], *, threads: int | None = None, device: str = "CPU"
    ) -> None:
        ov = require("openvino", "the openvino backend")
        p = Path(path)
        if p.suffix.lower() not in EXPORTED_SUFFIXES:
            raise DeployError(f"the openvino backend runs .xml or .onnx files, not '{p.name}'")
        super().__init__(p, read_metadata(p))
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if device.upper() == "CPU":
            # Keep fp32 arithmetic (parity with torch) on CPUs that would default to bf16.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = openvino_core(ov)
            self._compiled = core.compile_model(core.read_model(str(p)), device, config)
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DeployError(f"openvino cannot load '{p}': {first}") from None
        self._local = threading.local()

    def run(self, x: np.ndarray) -> np.ndarray:
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self._compiled.create_infer_request()
        req.infer({0: x})
        return np.array(req.get_output_tensor(0).data, dtype=np.float32, copy=True)


class TensorRTSession(OnnxRuntimeSession):
    """ONNX Runtime with its TensorRT execution provider (engines built and cached by ONNX Runtime), CUDA
    for any node TensorRT does not take. Needs onnxruntime-gpu built with TensorRT and an NVIDIA GPU."""

    backend = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        ort = require("onnxruntime", "the tensorrt backend")
        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            raise DeployError(
                "the tensorrt backend needs onnxruntime-gpu with TensorRT and an NVIDIA GPU; this onnxruntime "
                f"offers {', '.join(ort.get_available_providers())} (use --backend onnxruntime on a CPU)"
            )
        super().__init__(path, threads=threads, providers=_TRT_PROVIDERS)


def open_session(path: str | os.PathLike[str], backend: str, *, threads: int | None = None) -> Session:
    """A session for an exported file on ``backend`` (onnxruntime, openvino or tensorrt)."""
    if backend == "onnxruntime":
        return OnnxRuntimeSession(path, threads=threads)
    if backend == "openvino":
        return OpenVINOSession(path, threads=threads)
    if backend == "tensorrt":
        return TensorRTSession(path, threads=threads)
    raise DeployError(
        f"backend must be one of {', '.join(SESSION_BACKENDS)}, not {backend!r}{did_you_mean(backend, SESSION_BACKENDS)}"
    )


# ---- from a model name or weights file -------------------------------------------------------------------


def cache_folder() -> Path:
    from ..cache import cache_dir

    return cache_dir() / "exported"


def check_matches(meta: dict[str, str], name: str, digest: str, where: Path) -> None:
    """Refuse a file exported from other weights than the requested model's (a stale or misnamed file)."""
    if not meta:
        raise DeployError(
            f"'{where}' has no superres metadata, so it cannot be checked against {name!r}; "
            f"re-export it with: superres export {name} {where}"
        )
    if meta.get("weights_sha256") != digest:
        theirs = short(meta.get("weights_sha256", ""))
        raise DeployError(
            f"'{where}' was exported from {meta.get('model', '?')!r} (weights {theirs}), not the requested"
            f" {name!r} (weights {short(digest)}); re-export it with: superres export {name} {where}"
        )


def cached_export(net: "SRNet", name: str, *, precision: str = "fp32", opset: int = DEFAULT_OPSET) -> Path:
    """The cached ONNX export of ``net``, made on first use. Keyed by weights sha256, opset and precision;
    a cached file whose metadata does not match (interrupted, tampered, or traced from other architecture
    code: an upgrade that changed a forward) is exported again."""
    from .export import graph_code_digest

    if precision not in ("fp32", "fp16"):
        raise DeployError(
            f"a cached export is fp32 or fp16; for {precision} export a file with superres export"
        )
    digest = weights_digest(net)
    path = cache_folder() / f"{digest[:16]}-opset{opset}-{precision}.onnx"
    if path.is_file():
        try:
            meta = read_metadata(path)
            if (
                meta.get("weights_sha256") == digest
                and meta.get("precision") == precision
                and meta.get("opset") == str(opset)
                and meta.get("graph_code") == graph_code_digest()
            ):
                return path
        except DeployError:
            pass
        log.warning("cached export %s does not match %s; exporting again", path, name)
    return export_onnx(net, path, opset=opset, precision=precision, name=name)


def session_for(
    model: "str | os.PathLike[str] | SRNet",
    backend: str,
    *,
    file: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    threads: int | None = None,
    allow_download: bool = False,
) -> Session:
    """A session for ``model`` (zoo name, weights file or network). With ``file``, that exported file is
    used after checking that its metadata names the same weights; else the cached export."""
    from torch import nn

    if isinstance(model, nn.Module):
        net, name = model, model.arch_name
    else:
        from ..zoo.loader import load_network

        net, card = load_network(model, allow_download=allow_download)
        name = card.name if card else Path(str(model)).stem
    if file is not None:
        check_matches(read_metadata(file), name, weights_digest(net), Path(file))
        return open_session(file, backend, threads=threads)
    return open_session(cached_export(net, name, precision=precision, opset=opset), backend, threads=threads)


def network_from_metadata(meta: dict[str, str], where: Path) -> "SRNet":
    """An un-initialised (meta-device) network of the exported architecture: the Upscaler's descriptor
    (scale, channels, size multiple, receptive field) without the cost of real weights."""
    try:
        arch, hp = meta["arch"], json.loads(meta["hyperparams"])
    except (KeyError, ValueError):
        raise DeployError(
            f"'{where}' has no superres metadata (arch, hyperparams); export it with superres export"
        )
    from ..zoo.weight_limits import meta_network_within_limits

    if not isinstance(hp, dict):
        raise DeployError(f"'{where}' has malformed superres metadata (hyperparams is not an object)")
    return meta_network_within_limits(arch, hp, where)  # hostile metadata cannot make it enormous


def load_backend_model(
    name_or_path: str | os.PathLike[str],
    backend: str,
    *,
    precision: str = "auto",
    allow_download: bool = False,
    options: "UpscaleOptions | None" = None,
    threads: int | None = None,
) -> "Upscaler":
    """An :class:`Upscaler` whose tiles run on ``backend``: from an exported .onnx/.xml file, or from a zoo
    name / weights file (exported to the cache on first use)."""
    from ..inference.upscaler import Upscaler
    from ..zoo.loader import load_network

    if backend not in SESSION_BACKENDS:
        hint = did_you_mean(backend, SESSION_BACKENDS)
        raise DeployError(f"a runtime backend is one of {', '.join(SESSION_BACKENDS)}, not {backend!r}{hint}")
    prec = "fp32" if precision in ("auto", "fp32") else precision
    if prec not in PRECISIONS:
        raise DeployError(f"--precision for the {backend} backend is fp32 or fp16, not {precision!r}")
    p = Path(str(name_or_path))
    if p.suffix.lower() in EXPORTED_SUFFIXES:
        session = open_session(p, backend, threads=threads)
        net = network_from_metadata(session.meta, p)
        name = session.meta.get("model") or p.stem
        return Upscaler(net, name=name, options=options, forward=session)
    net, card = load_network(name_or_path, allow_download=allow_download)
    name = card.name if card else p.stem
    if net.descriptor.continuous:  # its tiles are rendered by net.render (torch), never by the session
        raise DeployError(f"{name} renders any scale on the torch backend only (its ONNX graph would be one "
                          f"fixed-scale forward); use --backend torch or auto, not {backend}")
    path = cached_export(net, name, precision=prec)
    session = open_session(path, backend, threads=threads)
    return Upscaler(net, name=name, card=card, options=options, forward=session)
