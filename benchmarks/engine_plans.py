"""The fast engine's whole-network plans vs PyTorch eager and channels-last, per zoo model, in one run.

For the families whose weights have no ncnn reference in the wheels (ESPCN, EDSR: ``cpu_speed.py`` needs the
ncnn files), and as a quick check of every planned family: ``accelerate(net)`` (mode ``auto``), channels-last
oneDNN and NCHW eager, same threads, timed interleaved (the order rotates every repeat), medians after one
warm-up call each, the max abs difference to eager, and effective GFLOP/s (2 x conv MACs per LR pixel,
``superres.archs.cost``) against a square fp32 matmul measured in the same run. Winograd does fewer
multiplies than counted, so the engine can pass 100% of that peak.

Run: ``python benchmarks/engine_plans.py [--size 128] [--repeats 5] [--threads 2] [--models espcn-r-x4 ...]``.
Machines here are shared: read the ratios (side by side), not the absolute times; the load is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from superres.archs.cost import count_macs
from superres.inference import fast
from superres.zoo.loader import load_network

MODELS = ["span-x2", "span-x4", "span-ch48-x4", "srmd-x2", "srmdnf-x4", "waifu2x-anime-x2", "espcn-r-x4",
          "espcn-m-x4", "edsr-baseline-x4"]


def _cpu() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                platform.processor())
    flags = next((set(ln.split(":", 1)[1].split()) for ln in text.splitlines() if ln.startswith("flags")),
                 set())
    return f"{name} ({' '.join(f for f in ('avx2', 'fma', 'avx512f', 'avx512_bf16') if f in flags)})"


def _peak() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t0)
    return 2 * 2048 ** 3 / statistics.median(ts) / 1e9


def _image(size: int) -> torch.Tensor:
    """A size x size crop of Set14 baboon when ../shared is present (as cpu_speed.py), else seeded noise."""
    shared = Path(os.environ.get("SUPERRES_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    path = shared / "data" / "Set14" / "HR" / "baboon.png"
    if path.is_file():
        import numpy as np
        from PIL import Image

        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        if min(img.shape[:2]) >= size:
            return torch.from_numpy(img[:size, :size].transpose(2, 0, 1).copy())[None]
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=MODELS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {_cpu()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
          f"threads {args.threads}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    peak = _peak()
    print(f"fp32 matmul 2048^3: {peak:.0f} GFLOP/s\n")
    rows = []
    for name in args.models:
        net, _ = load_network(name)
        net.eval().requires_grad_(False)
        c = net.descriptor.in_channels
        macs = count_macs(net, 16, 16, channels=c) / 256
        x = _image(args.size)[:, :c]
        fns = {"engine": fast.accelerate(net, "cpu"),
               "channels_last": fast.accelerate(net, "cpu", mode="channels_last"), "eager": net}
        with torch.inference_mode():
            ref = net(x)
            diffs = {k: float((f(x) - ref).abs().max()) for k, f in fns.items()}
            names = list(fns)
            times: dict[str, list[float]] = {k: [] for k in names}
            for r in range(args.repeats):
                for k in names[r % 3:] + names[:r % 3]:
                    t0 = time.perf_counter()
                    fns[k](x)
                    times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        method = fast.method_of(net, "cpu")
        for k in names:
            gf = 2 * macs * args.size ** 2 / med[k] / 1e9
            speed = ""
            if k == "engine":
                speed = (f"{med['eager'] / med[k]:.2f}x eager, "
                         f"{med['channels_last'] / med[k]:.2f}x channels-last")
            label = f"engine ({method})" if k == "engine" else k
            rows.append(f"| {name} | {label} | {med[k] * 1e3:.0f} | {gf:.1f} | {100 * gf / peak:.0f}% "
                        f"| {diffs[k]:.1e} | {speed} |")
        print(f"{name}: {macs / 1e6:.3f} M MAC per LR pixel; samples (ms): "
              + "; ".join(f"{k} {[round(t * 1e3) for t in v]}" for k, v in times.items()), flush=True)
    print(f"\n{args.size}x{args.size} input (Set14 baboon crop when ../shared is present)\n")
    print("| model | method | ms | eff. GFLOP/s | % of matmul peak | max abs diff vs eager | speed-up |")
    print("|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
