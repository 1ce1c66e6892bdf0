"""INT8 post-training static quantization of an exported ONNX model (ONNX Runtime ``quantize_static``).

Calibration sees what the model sees in use: LR crops made from natural photos (a folder such as T91) by
antialiased bicubic downscaling at the model's scale, in the model's colour space (RGB, or Y for 1-channel
models). Weights are quantized per output channel (signed int8), activations per tensor (unsigned int8) in
QDQ format, which both ONNX Runtime and OpenVINO run as integer convolutions.

Why the last convolution stays float by default: it maps features straight to output pixels, where an
int8 step of the activation range is visible as banding and costs most of the PSNR; keeping it in fp32
costs little time for the small classical models this is for (see benchmarks/deploy_int8.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from .common import DeployError, require

if TYPE_CHECKING:  # pragma: no cover
    from ..archs.base import ModelDescriptor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def calibration_crops(
    folder: str | os.PathLike[str],
    *,
    channels: int,
    scale: int,
    count: int = 32,
    size: int = 48,
    seed: int = 0,
) -> list[np.ndarray]:
    """``count`` float32 1 x C x size x size LR crops from the images in ``folder`` (fixed seed)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise DeployError(f"no calibration images (png, jpg, ...) found in '{root}'")
    rng = np.random.default_rng(seed)
    lrs = []
    for f in files[:count]:
        with Image.open(f) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        t = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        h, w = max(1, rgb.shape[0] // scale), max(1, rgb.shape[1] // scale)
        lr = F.interpolate(t, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)[0]
        if channels == 1:
            from ..metrics.color import rgb_to_ycbcr

            lr = torch.from_numpy(
                np.asarray(rgb_to_ycbcr(lr.permute(1, 2, 0).numpy().astype(np.float64)), np.float32)[..., :1]
            ).permute(2, 0, 1)
        lrs.append(lr.numpy())
    # One crop size for all (histogram calibrators stack them): the smallest image bounds it.
    s = min([size] + [min(a.shape[1:]) for a in lrs])
    crops: list[np.ndarray] = []
    for i in range(count):
        lr = lrs[i % len(lrs)]
        y0 = int(rng.integers(0, lr.shape[1] - s + 1))
        x0 = int(rng.integers(0, lr.shape[2] - s + 1))
        crops.append(np.ascontiguousarray(lr[None, :, y0 : y0 + s, x0 : x0 + s], np.float32))
    return crops


def _reader(crops: list[np.ndarray], input_name: str) -> Any:
    require("onnxruntime", "INT8 quantization")
    import onnxruntime.quantization as ortq

    class CropReader(ortq.CalibrationDataReader):
        """Feeds the calibration crops one at a time (the reader protocol ONNX Runtime expects)."""

        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

        def rewind(self) -> None:
            self._it = iter(crops)

    return CropReader()


def _last_conv(model_path: Path) -> list[str]:
    onnx = require("onnx", "INT8 quantization")
    convs = [n.name for n in onnx.load(str(model_path)).graph.node if n.op_type in ("Conv", "ConvTranspose")]
    return convs[-1:]


def quantize_onnx(
    fp32: str | os.PathLike[str],
    out: str | os.PathLike[str],
    calib: str | os.PathLike[str],
    desc: "ModelDescriptor",
    *,
    count: int = 32,
    size: int = 48,
    method: str = "minmax",
    keep_last_fp32: bool = True,
    reduce_range: bool = False,
) -> dict[str, str]:
    """Quantize ``fp32`` (.onnx) into ``out``; returns metadata describing the calibration.

    ``reduce_range`` (7-bit weights) avoids the int16 saturation of ONNX Runtime's u8s8 kernels on x86
    CPUs without VNNI, at the cost of weight precision; OpenVINO does not need it (measured in
    benchmarks/deploy_int8.py)."""
    ort = require("onnxruntime", "INT8 quantization")
    import onnxruntime.quantization as ortq

    methods = {
        "minmax": ortq.CalibrationMethod.MinMax,
        "entropy": ortq.CalibrationMethod.Entropy,
        "percentile": ortq.CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise DeployError(f"calibration method must be one of {', '.join(methods)}, not {method!r}")
    crops = calibration_crops(calib, channels=desc.in_channels, scale=desc.scale, count=count, size=size)
    exclude = _last_conv(Path(fp32)) if keep_last_fp32 else []
    input_name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    ortq.quantize_static(
        str(fp32),
        str(out),
        _reader(crops, input_name),
        quant_format=ortq.QuantFormat.QDQ,
        activation_type=ortq.QuantType.QUInt8,
        weight_type=ortq.QuantType.QInt8,
        per_channel=True,
        calibrate_method=methods[method],
        nodes_to_exclude=exclude,
        reduce_range=reduce_range,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    return {
        "calibration": f"{len(crops)} LR crops of {size}px from '{Path(calib).name}', {method}, "
        f"per-channel int8 weights, uint8 activations (QDQ)"
        + (f"; kept fp32: {', '.join(exclude)}" if exclude else "")
    }
