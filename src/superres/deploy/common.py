"""What export, runtimes and quantization share: the I/O convention, metadata keys, hashing, errors."""

from __future__ import annotations

import hashlib
import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import SuperresError, install_hint

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

# The one convention every exported file follows, written into its metadata so a user of the bare file knows.
IO_CONVENTION = (
    "input 'input' and output 'output': float32 NCHW, values in [0, 1], dynamic height and width; "
    "C=3 is RGB, C=1 is luma Y (BT.601, [0, 1]); output = scale x input size, not clamped"
)
META = "superres."  # prefix of our metadata_props keys
INPUT, OUTPUT = "input", "output"
PRECISIONS = ("fp32", "fp16", "int8")
EXTRAS = {
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "openvino"),
    "tensorrt": ("tensorrt", None),
    "av": ("av", "video"),
}


class DeployError(SuperresError):
    """A model that cannot be exported or run by the asked-for runtime, or a file for another model."""


class MissingRuntimeError(DeployError):
    """An optional runtime package is not installed; the message names what to install."""


def require(package: str, purpose: str) -> ModuleType:
    """Import an optional package or raise a one-line error naming the pip package and superres extra."""
    module, extra = EXTRAS.get(package, (package, None))
    try:
        return importlib.import_module(module)
    except ImportError:
        how = (
            f"{install_hint(extra)}, or just pip install {module}" if extra else f"pip install {module}"
        )
        raise MissingRuntimeError(
            f"{purpose} needs the '{module}' package, which is not installed: {how}"
        ) from None


def weights_digest(net: "nn.Module") -> str:
    """sha256 of the network's tensors (names, dtypes, shapes, bytes): the identity of the weights,
    whatever file format they came from. Used to key the export cache and to refuse stale files."""
    import torch

    h = hashlib.sha256()
    for key, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def short(digest: str) -> str:
    return digest[:12]
