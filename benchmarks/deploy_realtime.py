"""Real-time 320x180 -> 1280x720 (x4): achieved FPS and latency through each backend, in one run.

Usage: python benchmarks/deploy_realtime.py [--frames 90] [--models fsrcnn-s-x4,ESPCN_x4,FSRCNN-small_x4]
(--models: zoo names, weights files, or names of OpenCV's models in shared/weights/opencv_superres)
Frames are 320x180 crops panned across a Set14 photo, held in memory (no decode cost), fed two ways:
live (paced at 30 FPS, bounded queue of 2, oldest frames dropped when behind) and throughput (unpaced,
no dropping: the best sustained rate). Each frame goes through superres.deploy.realtime.upscaler_infer:
luma network on Y, bicubic chroma, uint8 RGB 1280x720 out.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from superres.deploy.realtime import retain_freed_memory, run_realtime, upscaler_infer
from superres.loading import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared"


def frames(n: int) -> list[np.ndarray]:
    img = np.asarray(Image.open(SHARED / "data" / "Set14" / "HR" / "baboon.png").convert("RGB"))
    img = np.asarray(Image.fromarray(img).resize((640, 360)))
    return [np.ascontiguousarray(img[(i * 2) % 180:(i * 2) % 180 + 180, (i * 3) % 320:(i * 3) % 320 + 320])
            for i in range(n)]


def resolve(name: str) -> str | Path:
    opencv = SHARED / "weights" / "opencv_superres" / f"{name}.pth"
    return opencv if opencv.exists() else name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--models", default="ESPCN_x4,FSRCNN-small_x4")
    ap.add_argument("--backends", default="torch,onnxruntime,openvino")
    ap.add_argument("--malloc", choices=("retain", "default"), default="retain",
                    help="retain: keep freed memory for the next frame (as superres realtime does)")
    args = ap.parse_args()
    if args.malloc == "retain":
        print(f"retain_freed_memory: {retain_freed_memory()}")
    logging.disable(logging.WARNING)
    clip = frames(args.frames)
    print(f"load average before: {os.getloadavg()}")
    print("| model | backend | mode | FPS | dropped | latency p50 ms | p95 ms | inference p50 ms |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        for backend in args.backends.split(","):
            up = load_model(resolve(name), device="cpu", backend=backend)
            infer = upscaler_infer(up)
            for f in clip[:5]:
                infer(f)  # warm-up
            for mode, kw in (("live 30 FPS", dict(pace_fps=30.0, drop=True)),
                             ("throughput", dict(pace_fps=None, drop=False))):
                s = run_realtime(iter(clip), infer, queue_size=2, **kw)
                print(f"| {name} | {backend} | {mode} | {s.fps:.1f} | {s.dropped}/{s.frames_in} | "
                      f"{s.latency_ms_p50:.1f} | {s.latency_ms_p95:.1f} | {s.infer_ms_p50:.1f} |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
