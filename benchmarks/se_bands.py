"""Real-CUGAN / CUNet on a frame too large for one pass: the whole-image pass against the bands with the whole
image's SE means (``superres.inference.se_bands``), through the pipeline (``Upscaler.upscale_planes``, engine).

Each mode runs in a child process; ``bands`` pretends that only ``--free`` GB are free, which is what makes the
pipeline choose the bands (each band may use half of it). Prints wall time, peak RSS and, when both ran, how
many output values differ (uint8). The input is a real image (Set14 ``comic`` from ../shared, else seeded noise)
resized to ``--size``.

    python benchmarks/se_bands.py [--model realcugan-x2 --size 1920x1080 --free 6 --modes whole,bands]
    python benchmarks/se_bands.py --size 3840x2160 --modes bands        # a 4K frame (the whole pass: ~35 GB)
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))


def frame(width: int, height: int) -> np.ndarray:
    from PIL import Image

    src = SHARED / "data" / "Set14" / "HR" / "comic.png"
    if not src.is_file():
        return np.random.default_rng(0).random((3, height, width), dtype=np.float32)
    img = Image.open(src).convert("RGB").resize((width, height), Image.BICUBIC)
    return np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0


def child(args: argparse.Namespace) -> None:
    import torch

    from superres.inference import upscaler
    from superres.loading import load_model

    torch.set_num_threads(args.threads)
    if args.mode == "bands":
        upscaler.available_memory = lambda device: args.free * (1 << 30)  # what the pipeline believes is free
    up = load_model(args.model, backend="torch", device="cpu")
    w, h = (int(v) for v in args.size.split("x"))
    x = frame(w, h)
    out = np.empty((h * up.scale, w * up.scale, 3), np.uint8)
    t0 = time.perf_counter()
    up.upscale_planes(x, out)
    wall = time.perf_counter() - t0
    np.save(args.out, out)
    print(f"{wall:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="realcugan-x2")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--free", type=float, default=6.0, help="GB the bands mode pretends are free")
    ap.add_argument("--modes", default="whole,bands")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    print(f"{args.model} on {args.size}, {args.threads} threads, load {os.getloadavg()[0]:.1f}")
    outs = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            out = Path(tmp) / f"{mode}.npy"
            cmd = [sys.executable, __file__, "--mode", mode, "--model", args.model, "--size", args.size,
                   "--free", str(args.free), "--threads", str(args.threads), "--out", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={
                **os.environ, "SUPERRES_AUTO_BACKEND": "torch"})
            if proc.returncode != 0:
                print(f"{mode}: failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
                continue
            wall, mib = proc.stdout.split()[-2:]
            extra = f" (pretending {args.free:g} GB free)" if mode == "bands" else ""
            print(f"{mode}: {wall} s, peak RSS {mib} MiB{extra}", flush=True)
            outs.append(np.load(out))
    if len(outs) == 2:
        d = np.abs(outs[0].astype(int) - outs[1].astype(int))
        print(f"uint8 outputs: max difference {d.max()}, {np.mean(d > 0):.4%} of values differ")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
