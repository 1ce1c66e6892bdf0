"""Export a network to ONNX (fp32 / fp16 / int8), OpenVINO IR or a TensorRT engine.

Every exported file follows one convention (:data:`~superres.deploy.common.IO_CONVENTION`): float32 NCHW in
[0, 1] with dynamic height and width, whatever precision runs inside, so a runtime session is a drop-in
replacement for the torch network on a tile. The file's metadata records the model name, architecture,
scale, hyper-parameters, the sha256 of the weights it came from and the superres version; runtimes use
it to refuse a file exported from other weights than the ones asked for.

The legacy TorchScript exporter is used (``dynamo=False``): it needs no extra package beyond ``onnx``,
and handles every architecture here with dynamic sizes, SwinIR's shape-dependent padding included.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import sha256_file
from .common import (
    INPUT,
    IO_CONVENTION,
    META,
    OUTPUT,
    PRECISIONS,
    DeployError,
    require,
    weights_digest,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..archs.base import SRNet

log = logging.getLogger(__name__)
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class Source:
    """A network with the identity written into the exported file."""

    net: "SRNet"
    name: str
    digest: str  # sha256 of the tensors (see weights_digest)
    source_file: str | None = None
    source_sha256: str | None = None  # of the weights file as it lies on disk


def resolve(
    model: "str | os.PathLike[str] | SRNet", *, name: str | None = None, allow_download: bool = False
) -> Source:
    """A zoo name, a weights file or an in-memory network -> :class:`Source`."""
    from torch import nn

    if isinstance(model, nn.Module):
        net = model.eval()
        return Source(net, name or net.arch_name, weights_digest(net))
    from ..zoo.loader import load_network
    from ..zoo.registry import resolve_weights

    net, card = load_network(model, allow_download=allow_download)
    path = resolve_weights(card, allow_download=allow_download) if card else Path(model)
    label = name or (card.name if card else Path(model).stem)
    return Source(net.eval(), label, weights_digest(net), str(Path(path).name), sha256_file(path))


@functools.lru_cache(maxsize=1)
def graph_code_digest() -> str:
    """sha256 of the architecture sources (``superres/archs/*.py``) that a traced graph comes from: a cached
    export made by other code (an upgrade that changed a network's forward) is not reused."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((Path(__file__).resolve().parents[1] / "archs").glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def metadata(
    src: Source, *, opset: int, precision: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The ``superres.*`` metadata_props of an exported file (all values are strings)."""
    from .._version import __version__

    d = src.net.descriptor
    hp = {k: v for k, v in d.hyperparams.items()}
    meta = {
        "model": src.name,
        "arch": d.arch,
        "scale": str(d.scale),
        "in_channels": str(d.in_channels),
        "out_channels": str(d.out_channels),
        "size_multiple": str(d.size_multiple),
        "hyperparams": json.dumps(hp, sort_keys=True, default=str),
        "weights_sha256": src.digest,
        "source_file": src.source_file or "",
        "source_sha256": src.source_sha256 or "",
        "precision": precision,
        "opset": str(opset),
        "io": IO_CONVENTION,
        "version": __version__,
        "graph_code": graph_code_digest(),
    }
    meta.update(extra or {})
    return {META + k: v for k, v in meta.items()}


def _dummy_side(net: "SRNet") -> int:
    m = max(1, net.descriptor.size_multiple)
    return -(-16 // m) * m


class _Fp16Inside:
    """fp16 weights and arithmetic inside, float32 at the boundary: the convention stays the same."""

    @staticmethod
    def wrap(net: "SRNet") -> Any:
        import copy

        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.inner(x.half()).float()

        return Wrapper(copy.deepcopy(net).half()).eval()


def _trace_to_onnx(src: Source, out: Path, opset: int, fp16: bool) -> None:
    import torch

    net = _Fp16Inside.wrap(src.net) if fp16 else src.net
    side = _dummy_side(src.net)
    x = torch.rand(1, src.net.descriptor.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    what = f"cannot export {src.name!r} ({src.net.descriptor.arch}) to ONNX opset {opset}"
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (x,),
                str(out),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT],
                output_names=[OUTPUT],
                do_constant_folding=True,
                dynamic_axes={
                    INPUT: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT: {0: "batch", 2: "out_height", 3: "out_width"},
                },
            )
    except torch.onnx.errors.UnsupportedOperatorError as e:
        first = str(e).strip().splitlines()[0]
        raise DeployError(
            f"{what}: unsupported operator ({first}); run it with --backend torch, or try another --opset"
        ) from None
    except (torch.onnx.errors.OnnxExporterError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"{what}: {first}") from None


def _write_meta(onnx_path: Path, meta: dict[str, str], dst: Path) -> None:
    onnx = require("onnx", "ONNX export")
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = IO_CONVENTION
    model.producer_name = "superres"
    model.producer_version = meta.get(META + "version", "")
    onnx.checker.check_model(model)
    _atomic_save(lambda p: onnx.save(model, str(p)), dst)


def _atomic_save(save: Any, dst: Path) -> None:
    """Write through a temporary file in the same folder so a failed export leaves nothing behind."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=dst.suffix, dir=dst.parent)
    os.close(fd)
    try:
        save(Path(tmp))
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_onnx(
    model: "str | os.PathLike[str] | SRNet",
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    calib: str | os.PathLike[str] | None = None,
    calib_count: int = 32,
    name: str | None = None,
    allow_download: bool = False,
) -> Path:
    """Export ``model`` (zoo name, weights file or network) to ``out`` (.onnx).

    ``precision``: fp32, fp16 (weights and arithmetic; I/O stays float32) or int8 (static quantization
    calibrated on LR crops of the images in ``calib``, see :mod:`superres.deploy.quantize`)."""
    require("onnx", "ONNX export")
    if precision not in PRECISIONS:
        raise DeployError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if opset < 13:
        raise DeployError(f"opset {opset} is too old; use 13 or newer (default {DEFAULT_OPSET})")
    if precision == "int8" and calib is None:
        raise DeployError(
            "INT8 export needs calibration images: --calib FOLDER (e.g. a folder of training photos)"
        )
    src = resolve(model, name=name, allow_download=allow_download)
    dst = Path(out)
    with tempfile.TemporaryDirectory(prefix="superres-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        _trace_to_onnx(src, raw, opset, fp16=precision == "fp16")
        if precision == "int8":
            from .quantize import quantize_onnx

            fp32 = Path(tmp) / "fp32.onnx"
            _write_meta(raw, metadata(src, opset=opset, precision="fp32"), fp32)
            extra = quantize_onnx(fp32, Path(tmp) / "int8.onnx", calib, src.net.descriptor, count=calib_count)
            _write_meta(
                Path(tmp) / "int8.onnx", metadata(src, opset=opset, precision="int8", extra=extra), dst
            )
        else:
            _write_meta(raw, metadata(src, opset=opset, precision=precision), dst)
    log.info("exported %s to %s", src.name, dst)
    return dst


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``superres.*`` metadata (keys without the prefix) of an exported .onnx or OpenVINO .xml file;
    empty when the file was not made by superres."""
    p = Path(path)
    if not p.is_file():
        raise DeployError(f"exported model not found: '{p}'")
    if p.suffix.lower() == ".xml":
        return _xml_metadata(p)
    onnx = require("onnx", "reading an ONNX file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - DecodeError and friends: not an ONNX file
        raise DeployError(f"'{p}' is not a readable ONNX file ({type(e).__name__})") from None
    return {e.key[len(META) :]: e.value for e in model.metadata_props if e.key.startswith(META)}


def _xml_metadata(p: Path) -> dict[str, str]:
    """OpenVINO IR keeps our metadata under ``<rt_info><superres>``; read with the standard library."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(p).getroot()
    except ET.ParseError:
        raise DeployError(f"'{p}' is not an OpenVINO IR .xml file") from None
    node = root.find("rt_info/superres")
    if node is None:
        return {}
    return {child.tag: child.get("value", "") for child in node}


def export_openvino(
    model: "str | os.PathLike[str] | SRNet",
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    calib: str | os.PathLike[str] | None = None,
    name: str | None = None,
    allow_download: bool = False,
) -> Path:
    """Export to OpenVINO IR (``out.xml`` + ``out.bin``) through ONNX and OpenVINO's own converter.

    ``model`` may also be an exported .onnx file (its metadata is carried over). fp16 stores fp16
    weights (OpenVINO's compression); int8 converts the quantized ONNX graph."""
    ov = require("openvino", "OpenVINO export")
    dst = Path(out)
    if dst.suffix.lower() != ".xml":
        raise DeployError(f"an OpenVINO IR file name ends in .xml, not '{dst.name}'")
    with tempfile.TemporaryDirectory(prefix="superres-export-") as tmp:
        if str(model).lower().endswith(".onnx") and Path(str(model)).is_file():
            onnx_path = Path(str(model))
        else:
            onnx_path = export_onnx(
                model,
                Path(tmp) / "model.onnx",
                opset=opset,
                precision="int8" if precision == "int8" else "fp32",
                calib=calib,
                name=name,
                allow_download=allow_download,
            )
        meta = read_metadata(onnx_path)
        if precision == "fp16":
            meta["precision"] = "fp16"
        ov_model = ov.convert_model(str(onnx_path))
        for k, v in meta.items():
            ov_model.set_rt_info(v, ["superres", k])
        dst.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(dst), compress_to_fp16=precision == "fp16")
    return dst


def build_tensorrt(
    onnx_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fp16: bool = True,
    min_side: int = 16,
    opt_side: int = 256,
    max_side: int = 1088,
    workspace_gb: float = 4.0,
) -> Path:
    """Build a serialized TensorRT engine (``.engine``) from an exported ONNX file, with one optimisation
    profile covering square-to-wide tiles between ``min_side`` and ``max_side`` LR pixels.

    Needs the ``tensorrt`` package and an NVIDIA GPU; elsewhere the error says so."""
    trt = require("tensorrt", "building a TensorRT engine (NVIDIA GPUs only)")
    meta = read_metadata(onnx_path)
    c = int(meta.get("in_channels", "3"))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(
        trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"
    ):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # needed before TensorRT 10
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployError(f"TensorRT cannot parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        INPUT, (1, c, min_side, min_side), (1, c, opt_side, opt_side), (1, c, max_side, max_side)
    )
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise DeployError(f"TensorRT failed to build an engine from '{onnx_path}' (see its log above)")
    dst = Path(out)
    _atomic_save(lambda p: p.write_bytes(bytes(engine)), dst)
    return dst
