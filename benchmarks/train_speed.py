"""Training speed: iterations/s of EDSR-baseline x4 (batch 16, 48x48 LR patches) on this CPU and on CUDA.

One iteration = what the trainer does per step: forward, L1 loss, backward, Adam step, EMA update (the
trainer's own code path, ``superres.train.trainer._Run.step``, on random patches so the data pipeline is
measured separately). Also reports how many training patches per second the data pipeline makes (T91,
MATLAB-bicubic LR per patch, one process), to show whether ``data.workers`` must be raised.

Run:  python benchmarks/train_speed.py [--iters 5] [--threads N] [--device cpu|cuda|all] [--amp bf16]
Shared machines are noisy: the median of ``--iters`` timed steps after ``--warmup`` untimed ones is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def _config(device: str, amp: str, data: Path) -> object:
    from superres.train.config import config_from_dict

    return config_from_dict({
        "name": "bench_edsr_baseline_x4",
        "model": {"arch": "edsr", "hyperparams": {"num_blocks": 16, "num_feat": 64, "res_scale": 1.0}},
        "data": {"scale": 4, "train": [{"hr": str(data)}], "patch_size": 48, "small_images": "skip"},
        "train": {"iterations": 10, "batch_size": 16, "ema_decay": 0.999, "amp": amp, "device": device},
        "val": {"dataset": None},
    })


def bench_steps(device: str, amp: str, iters: int, warmup: int, data: Path) -> list[float]:
    from superres.train.distributed import DistInfo
    from superres.train.trainer import _Run

    run = _Run(_config(device, amp, data), torch.device(device), DistInfo(), None)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(16, 3, 48, 48, generator=g).to(device)
    hr = torch.rand(16, 3, 192, 192, generator=g).to(device)
    times = []
    for i in range(warmup + iters):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run.step(lr, hr)
            end.record()
            torch.cuda.synchronize()
            dt = start.elapsed_time(end) / 1000.0
        else:
            t0 = time.perf_counter()
            run.step(lr, hr)
            dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    return times


def bench_data(data: Path, n: int) -> float:
    import tempfile

    from superres.data.datasets import HRFolderDataset
    from superres.train.trainer import _fitting_images

    with tempfile.TemporaryDirectory() as tmp:
        ds = HRFolderDataset(_fitting_images([str(data)], 192, Path(tmp)), 4, 48, seed=0)
    t0 = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cpu, plus cuda when present)")
    ap.add_argument("--amp", default="none", help="CUDA mixed precision: none, bf16 or fp16")
    ap.add_argument("--data", type=Path, default=None, help="HR folder (default: ../shared/data/T91/HR)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or Path(os.environ.get("SUPERRES_DATA", Path.cwd().parent / "shared" / "data")) / "T91" / "HR"
    if not data.is_dir():
        sys.exit(f"no training images at {data}; pass --data FOLDER")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(f"EDSR-baseline x4 (16 blocks, 64 feat), batch 16, 48x48 LR / 192x192 HR; torch {torch.__version__}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"torch threads {torch.get_num_threads()}")
    for dev in devices:
        name = torch.cuda.get_device_name(0) if dev == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        amp = args.amp if dev == "cuda" else "none"
        times = bench_steps(dev, amp, args.iters, args.warmup, data)
        med = statistics.median(times)
        print(f"{dev:5s} {name:40s} amp={amp:5s} median {med * 1000:9.1f} ms/it  {1.0 / med:8.3f} it/s  "
              f"(min {min(times) * 1000:.1f} ms, {len(times)} timed)")
    rate = bench_data(data, 64)
    print(f"data: {rate:.0f} patches/s from T91 (one process, bicubic LR per patch) = "
          f"{rate / 16:.1f} batches of 16 per second per worker")


if __name__ == "__main__":
    main()
