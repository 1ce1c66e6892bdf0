"""DAT-light on a whole photograph: the whole-image pass against the same pass in row bands (``archs/dat_bands``).

For each size, two child processes (one per mode) load ``dat-light-x<scale>``, take a size x size crop of a real
photograph (BSD100 in ../shared, upsampled when smaller; seeded noise without it), run one forward pass and
report the wall time and the peak resident memory above what the process held before the pass (``ru_maxrss``,
so the model and the input are not counted). The parent then compares the first two modes' outputs.

Modes: ``whole`` and ``bands`` run the network's forward with the bands off or on; ``pipeline-<backend>`` runs
``load_model(..., backend=<backend>).upscale_planes`` with the default tile plan, which is what ``superres
upscale --backend <backend>`` does (``pipeline-openvino`` / ``pipeline-onnxruntime`` need the deploy extra).

    superres fetch dat-light-x2
    python benchmarks/dat_bands.py [--sizes 256,384,512 --scale 2 --threads 2]
    python benchmarks/dat_bands.py --sizes 768 --modes pipeline-torch,pipeline-openvino
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))


def photo(size: int) -> np.ndarray:
    """3 x size x size float32 in [0, 1]: the first BSD100 photograph, cropped (resized up when smaller)."""
    from PIL import Image

    sources = sorted((SHARED / "data" / "BSD100" / "HR").glob("*.png"))
    if not sources:
        return np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    img = Image.open(sources[0]).convert("RGB")
    if min(img.size) < size:
        f = size / min(img.size)
        img = img.resize((round(img.size[0] * f), round(img.size[1] * f)), Image.BICUBIC)
    return np.asarray(img.crop((0, 0, size, size)), np.float32).transpose(2, 0, 1) / 255.0


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    x = photo(args.size)
    name = f"dat-light-x{args.scale}"
    if args.mode.startswith("pipeline-"):  # what `superres upscale --backend B` runs: the default tile plan
        from superres.loading import load_model

        up = load_model(name, backend=args.mode.removeprefix("pipeline-"), device="cpu")
        up.upscale_planes(x[:, :64, :64])  # warm-up (export, compilation, position biases)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        y = np.moveaxis(up.upscale_planes(x), -1, 0)
        wall = time.perf_counter() - t0
    else:
        from superres.archs import dat
        from superres.zoo.loader import load_network

        net = load_network(name)[0].eval()
        dat.BANDS = args.mode == "bands"
        with torch.inference_mode():
            net(torch.from_numpy(x[:, :64, :64])[None])  # warm-up (position biases, kernels)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            y = net(torch.from_numpy(x)[None])[0].numpy()
            wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    np.save(args.out, y)
    print(f"{wall:.3f} {peak / 1024:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,384,512")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="whole,bands")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    modes = args.modes.split(",")
    print(f"dat-light-x{args.scale}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print("LR size   " + "".join(f"{m + ' s':>{len(m) + 6}s}{m + ' MiB':>{len(m) + 8}s}" for m in modes)
          + "  max |d| (of 255)")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            row, outs = f"{size}x{size}".ljust(10), []
            for mode in modes:
                out = Path(tmp) / f"{mode}.npy"
                cmd = [sys.executable, __file__, "--mode", mode, "--size", str(size), "--scale", str(args.scale),
                       "--threads", str(args.threads), "--out", str(out)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    row += f"{'failed (' + str(proc.returncode) + ')':>{2 * len(mode) + 14}s}"
                    print(proc.stderr.strip().splitlines()[-1:], file=sys.stderr)
                    continue
                wall, mib = proc.stdout.split()[-2:]
                row += f"{float(wall):{len(mode) + 6}.2f}{mib:>{len(mode) + 8}s}"
                outs.append(np.load(out))
            if len(outs) >= 2:  # on [0, 1], as the pipeline clamps (the network alone overshoots at edges)
                a, b = (np.clip(o, 0.0, 1.0) for o in outs[:2])
                row += f"  {np.abs(a - b).max() * 255:.1e}"
            print(row, flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
