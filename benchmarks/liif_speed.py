"""CPU speed of LIIF (any scale) beside SPAN on the same input, in one run: ``superres.load_model(...)(image)``,
the public API, whole image, fp32; median of --repeats after one warm-up call.

LIIF's work is dominated by its decoder: per output pixel, 4 (local ensemble) x an MLP of 3 x 256x256 + 256x3
MACs after the first layer (which runs once per LR pixel here as a 3x3 convolution), about 0.79 MMAC, plus the
EDSR-baseline encoder's 1.2 MMAC per LR pixel; SPAN x4 is about 0.03 MMAC per *output* pixel, so LIIF x4 is
expected to be tens of times slower. The ratio is what to compare across machines.

    python benchmarks/liif_speed.py [--size 128 --scale 4 --repeats 3 --peer span-x4]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--scale", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer", default="span-x4")
    args = ap.parse_args()

    import torch

    from superres import load_model
    from superres.inference.upscaler import UpscaleOptions

    src = sorted((SHARED / "data" / "BSD100" / "HR").glob("*.png"))
    if src:
        img = np.asarray(Image.open(src[0]).convert("RGB"))[: args.size, : args.size]
    else:
        img = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    opts = UpscaleOptions(tile=0)
    times: dict[str, float] = {}
    for name in ("liif", args.peer):
        up = load_model(name, device="cpu", precision="fp32", options=opts)
        outscale = args.scale if name == "liif" else None
        up(img[:32, :32], outscale=outscale)  # warm-up
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = up(img, outscale=outscale)
            runs.append(time.perf_counter() - t0)
        times[name] = statistics.median(runs)
        print(f"{name:10s} {args.size}x{args.size} -> {out.shape[1]}x{out.shape[0]}: median {times[name]:.2f} s "
              f"of {args.repeats} ({', '.join(f'{t:.2f}' for t in runs)})", flush=True)
    print(f"liif / {args.peer}: {times['liif'] / times[args.peer]:.1f}x the time; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
