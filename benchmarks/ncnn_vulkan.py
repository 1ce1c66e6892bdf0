"""ncnn on Vulkan against the torch backend, same weights, one run: parity always, speed only on a real GPU.

On Mesa's lavapipe (a CPU Vulkan driver: what CI and this workplace have) speed means nothing, so each ncnn
row says "functional" instead of a time, with its largest difference from torch fp32. On a real GPU it
times ncnn-Vulkan (auto = fp16 storage, fp16 = fp16 storage and arithmetic, and fp32) against torch on
CUDA (fp16) or the CPU, at the --size given (the issue's comparison: 720p, ``--size 1280x720``), median
of --repeats after a warm-up.

    python benchmarks/ncnn_vulkan.py                          # lavapipe: functional check, 32x32
    python benchmarks/ncnn_vulkan.py --size 1280x720 --repeats 5   # a GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from superres.deploy.ncnn_runtime import gpu_count, list_devices
from superres.inference.upscaler import UpscaleOptions
from superres.loading import load_model


def timed(fn, x: torch.Tensor, repeats: int, sync=lambda: None) -> tuple[float, torch.Tensor]:
    y = fn(x)  # warm-up: pipelines, shaders, allocators
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        y = fn(x)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="realesr-animevideov3,realesrgan-x4plus")
    ap.add_argument("--size", default="32x32", help="LR WIDTHxHEIGHT (720p: 1280x720)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    if gpu_count() == 0:
        raise SystemExit("no Vulkan device: install your GPU's Vulkan driver (mesa-vulkan-drivers: lavapipe)")
    dev = list_devices()[0]
    lavapipe = dev.kind == "cpu"
    cuda = torch.cuda.is_available()
    torch_dev = "cuda" if cuda else "cpu"
    print(f"Vulkan device: {dev.describe()}")
    print(f"torch: {torch.__version__} on {torch.cuda.get_device_name(0) if cuda else 'CPU'}; LR {w}x{h}")
    if lavapipe:
        print("lavapipe is Mesa's CPU Vulkan driver: ncnn rows are a functional check only, not a speed.")
    print()
    print("| model | backend | precision | time | LR MP/s | max diff vs torch fp32 |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    whole = UpscaleOptions(tile=0)
    for name in args.models.split(","):
        ref_up = load_model(name, device=torch_dev, precision="fp32", options=whole)
        x = torch.rand(1, ref_up.descriptor.in_channels, h, w, generator=torch.Generator().manual_seed(0))
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        rows = []
        sec, ref = timed(ref_up.forward, x, args.repeats, sync)
        rows.append(("torch", f"fp32 ({torch_dev})", sec, ref))
        if cuda:
            up16 = load_model(name, device="cuda", precision="fp16", options=whole)
            sec, y = timed(up16.forward, x, args.repeats, sync)
            rows.append(("torch", "fp16 (cuda)", sec, y))
        for prec in ("auto", "fp16", "fp32"):
            up = load_model(name, backend="ncnn", device="vulkan", precision=prec, options=whole)
            sec, y = timed(up.forward, x, 1 if lavapipe else args.repeats)
            label = {"auto": "fp16 storage", "fp16": "fp16 storage+arithmetic"}.get(prec, "fp32")
            rows.append((f"ncnn vulkan:{dev.index}", label, None if lavapipe else sec, y))
        for backend, prec, sec, y in rows:
            diff = float(np.abs(y.float().cpu().numpy() - ref.float().cpu().numpy()).max())
            t = "functional" if sec is None else f"{sec * 1e3:.1f} ms"
            mps = "-" if sec is None else f"{w * h / sec / 1e6:.3f}"
            print(f"| {name} | {backend} | {prec} | {t} | {mps} | {diff:.2g} |")


if __name__ == "__main__":
    main()
