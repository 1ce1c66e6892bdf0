"""INT8 static quantization: Set5 x4 Y-PSNR cost and CPU speed-up, per runtime, in one run.

Usage: python benchmarks/deploy_int8.py [--weights ../shared/weights/opencv_superres] [--calib ../shared/data/T91]
Models: the OpenCV ESPCN / FSRCNN x4 (classical, luma). PSNR: the eval protocol (superres.eval.runner,
Y channel, crop = scale) on Set5 with the shipped MATLAB LR images. Speed: median ms of the network on a
1 x 1 x 180 x 320 LR tile (a 720p output), fp32 and int8 in the same process, warm-up first.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from superres.deploy.export import export_onnx
from superres.deploy.runtime import open_session
from superres.eval.runner import evaluate
from superres.eval.speed import time_forward

SHARED = Path(__file__).resolve().parents[2] / "shared"


def ms(sess, x: np.ndarray, repeats: int = 15) -> float:
    """Median milliseconds of ``sess(x)`` after 3 untimed calls."""
    return time_forward(sess, x, repeats, warmup=3) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, default=SHARED / "weights" / "opencv_superres")
    ap.add_argument("--calib", type=Path, default=SHARED / "data" / "T91")
    ap.add_argument("--models", default="ESPCN_x4,FSRCNN_x4")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    print(f"load average before: {os.getloadavg()}")
    x = np.random.default_rng(0).random((1, 1, 180, 320), dtype=np.float32)
    print("| model | runtime | Set5 x4 Y-PSNR fp32 | int8 | drop (dB) | ms fp32 | ms int8 | speed-up |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            w = args.weights / f"{name}.pth"
            fp32 = export_onnx(w, Path(tmp) / f"{name}.onnx", name=name)
            int8 = export_onnx(w, Path(tmp) / f"{name}-int8.onnx", name=name, precision="int8", calib=args.calib)
            ref = evaluate([str(w)], ["Set5"], [4], backend="torch").summary[0].psnr_y
            for backend in ("onnxruntime", "openvino"):
                p32 = evaluate([str(fp32)], ["Set5"], [4], backend=backend).summary[0].psnr_y
                p8 = evaluate([str(int8)], ["Set5"], [4], backend=backend).summary[0].psnr_y
                s32, s8 = open_session(fp32, backend), open_session(int8, backend)
                t32, t8 = ms(s32, x), ms(s8, x)
                print(f"| {name} | {backend} | {p32:.3f} | {p8:.3f} | {p32 - p8:.3f} | {t32:.1f} | {t8:.1f} | "
                      f"{t32 / t8:.2f}x |")
            print(f"| {name} | torch (reference) | {ref:.3f} | | | | | |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
