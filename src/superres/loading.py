"""Model loading behind :func:`superres.load_model`: a zoo name, weights file or exported model, on a backend.

Why a module of its own: the backends are one table here. Each entry says what runs the tiles (PyTorch,
ONNX Runtime, OpenVINO, TensorRT through ONNX Runtime), what to install, and how to load; the CLI's
``--backend`` help and its checks are generated from the table, and a plugin adds a row with
:func:`register_backend`. Every backend returns the same :class:`~superres.inference.upscaler.Upscaler`,
so tiling, colour, alpha and bit depth are one code path whatever runs the network.

Layering: this module sits above ``zoo`` (networks from names and files), ``inference`` (the pipeline)
and ``deploy`` (runtime sessions), so none of those needs to import another upwards; nothing here is
imported until a model is loaded, and the deployment runtimes only when their backend is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelLoadError
from .plugins import Registry

if TYPE_CHECKING:  # pragma: no cover
    from .inference.upscaler import UpscaleOptions, Upscaler

__all__ = ["Backend", "backend_help", "backend_names", "get_backend", "load_model", "register_backend"]

# (name_or_path, *, device, precision, allow_download, options) -> Upscaler
Loader = Callable[..., "Upscaler"]


@dataclass(frozen=True)
class Backend:
    """One way to run a network's tiles."""

    name: str
    summary: str  # a few words for --backend help
    load: Loader
    extra: str | None = None  # the superres extra that installs its runtime
    runs_exported: tuple[str, ...] = ()  # exported-model suffixes it can run directly (-m model.onnx)


_BACKENDS: Registry[Backend] = Registry("backend", lambda b: b.name)


def register_backend(backend: Backend) -> Backend:
    """Add a backend; a second one with the same name is an error."""
    return _BACKENDS.register(backend)


def backend_names() -> tuple[str, ...]:
    return _BACKENDS.names()


def get_backend(name: str) -> Backend:
    return _BACKENDS.get(name, option="--backend")


def backend_help() -> str:
    """``--backend`` help text, from the table (plugins included)."""
    parts = []
    for b in _BACKENDS.table().values():
        extra = f"; extra: {b.extra}" if b.extra else ""
        parts.append(f"{b.name} ({b.summary}{extra})")
    return "One of: " + ", ".join(parts) + ". Non-torch backends export the model once to a cache (ncnn runs the " \
        "model wheels' own .param/.bin); -m may be an exported .onnx/.xml (ncnn: a .param)."


def load_model(
    name_or_path: str | Path,
    *,
    device: str = "auto",
    precision: str = "auto",
    allow_download: bool = False,
    options: "UpscaleOptions | None" = None,
    backend: str = "torch",
    hyperparams: dict[str, Any] | None = None,
) -> "Upscaler":
    """Load a zoo model by name, a weights file (architecture and hyper-parameters detected from it) or an
    exported model, ready to upscale on ``backend`` (see :func:`backend_names`). ``hyperparams`` override
    ones the weights do not hold (SRMD's noise level; torch and ncnn backends)."""
    entry = get_backend(backend)
    extra: dict[str, Any] = {}
    if hyperparams:
        if entry.name not in ("torch", "ncnn", "auto"):  # the backends that build the network from its weights
            raise ModelLoadError(f"hyper-parameters {sorted(hyperparams)} (e.g. a --denoise level) need "
                                 "--backend torch or ncnn")
        extra["hyperparams"] = hyperparams
    suffix = Path(str(name_or_path)).suffix.lower()
    exported = {s for b in _BACKENDS.table().values() for s in b.runs_exported}
    if suffix in exported and suffix not in entry.runs_exported:
        able = [b.name for b in _BACKENDS.table().values() if suffix in b.runs_exported]
        raise ModelLoadError(f"'{name_or_path}' is an exported model: run it with --backend {' or '.join(able)}")
    return entry.load(name_or_path, device=device, precision=precision, allow_download=allow_download,
                      options=options, **extra)


# ---- the built-in backends ---------------------------------------------------------------------------------


def _torch(name_or_path: str | Path, *, device: str, precision: str, allow_download: bool,
           options: "UpscaleOptions | None", hyperparams: dict[str, Any] | None = None) -> "Upscaler":
    from .inference.upscaler import Upscaler
    from .zoo.loader import load_network

    net, card = load_network(name_or_path, allow_download=allow_download, hyperparams=hyperparams)
    name = card.name if card else Path(str(name_or_path)).stem
    return Upscaler(net, name=name, card=card, device=device, precision=precision, options=options)


def _runtime(kind: str) -> Loader:
    def load(name_or_path: str | Path, *, device: str, precision: str, allow_download: bool,
             options: "UpscaleOptions | None") -> "Upscaler":
        from .deploy.runtime import load_backend_model

        return load_backend_model(name_or_path, kind, precision=precision, allow_download=allow_download,
                                  options=options)

    return load


def _ncnn(name_or_path: str | Path, *, device: str, precision: str, allow_download: bool,
          options: "UpscaleOptions | None", hyperparams: dict[str, Any] | None = None) -> "Upscaler":
    from .deploy.ncnn_runtime import load_ncnn_model

    return load_ncnn_model(name_or_path, device=device, precision=precision, allow_download=allow_download,
                           options=options, hyperparams=hyperparams)


def _auto(name_or_path: str | Path, *, device: str, precision: str, allow_download: bool,
          options: "UpscaleOptions | None", hyperparams: dict[str, Any] | None = None) -> "Upscaler":
    from .backend_auto import load_auto

    return load_auto(name_or_path, get_backend=get_backend, device=device, precision=precision,
                     allow_download=allow_download, options=options, hyperparams=hyperparams)


def _builtins() -> None:
    register_backend(Backend("auto", "the fastest of torch, onnxruntime, openvino here, measured once", _auto,
                             runs_exported=(".onnx", ".xml")))  # .param: a weights file too (torch, ncnn)
    register_backend(Backend("torch", "PyTorch on CPU/CUDA/MPS", _torch))
    register_backend(Backend("onnxruntime", "ONNX Runtime, CPU", _runtime("onnxruntime"), extra="onnx",
                             runs_exported=(".onnx",)))
    register_backend(Backend("openvino", "OpenVINO, Intel CPU", _runtime("openvino"), extra="openvino",
                             runs_exported=(".onnx", ".xml")))
    register_backend(Backend("tensorrt", "NVIDIA TensorRT via ONNX Runtime's TensorRT provider, GPU only",
                             _runtime("tensorrt"), runs_exported=(".onnx",)))
    register_backend(Backend("ncnn", "ncnn on a Vulkan GPU of any vendor (--device vulkan[:N]) or its CPU path "
                             "(--device cpu)", _ncnn, extra="ncnn"))  # .param: ours (with .json) or any ncnn model the zoo reads


_builtins()
