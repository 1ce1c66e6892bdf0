"""Non-integer scales: LIIF (native, any scale) vs "native model + resize" (how ``--outscale`` runs a fixed-scale
network: x4, then a bicubic resize to the asked size) vs MATLAB bicubic, Y-PSNR on Set5 / Set14.

Protocol. For scale s = p/q (2.5 = 5/2, 3.7 = 37/10) each HR image is cropped (top-left) to the largest size
whose sides are multiples of p, so the LR side (HR side x q/p) is an integer and HR = LR x s exactly; the LR is
MATLAB-exact bicubic (``superres.resize.imresize`` to that size, uint8), as the benchmarks' integer LR files
are. Outputs are rounded to uint8; PSNR on Y (BT.601, 16-235) with ceil(s) pixels cropped at each border, as
the integer protocol crops s (``superres.metrics.psnr_ssim.psnr``).

    python benchmarks/liif_nonint.py [--scales 2.5,3.7] [--sets Set5,Set14] [--fixed span-x4] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))


def crop_for(hr: np.ndarray, s: float) -> tuple[np.ndarray, tuple[int, int]]:
    """HR cropped so that HR = LR x s with integer sides; returns (HR crop, LR (height, width))."""
    f = Fraction(s).limit_denominator(100)
    p, q = f.numerator, f.denominator
    h, w = (hr.shape[0] // p) * p, (hr.shape[1] // p) * p
    return hr[:h, :w], (h * q // p, w * q // p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="2.5,3.7")
    ap.add_argument("--sets", default="Set5,Set14")
    ap.add_argument("--fixed", default="span-x4", help="the fixed-scale model run at x4 then resized")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from superres.inference.upscaler import UpscaleOptions
    from superres.loading import load_model
    from superres.metrics.psnr_ssim import psnr
    from superres.resize import imresize

    whole = UpscaleOptions(tile=0)
    liif = load_model("liif", options=whole)
    fixed = load_model(args.fixed, options=whole)
    scales = [float(t) for t in args.scales.split(",")]
    results: dict[str, dict[str, float]] = {}
    print(f"# {platform.processor() or platform.machine()}, load {os.getloadavg()}", file=sys.stderr)
    for name in args.sets.split(","):
        files = sorted((SHARED / "data" / name / "HR").glob("*.png"))[: args.limit]
        if not files:
            sys.exit(f"no HR images for {name} under {SHARED / 'data'}")
        for s in scales:
            sums = {"liif": 0.0, f"{args.fixed}+resize": 0.0, "bicubic": 0.0}
            t0 = time.perf_counter()
            for f in files:
                hr, (lh, lw) = crop_for(np.asarray(Image.open(f).convert("RGB")), s)
                lr = imresize(hr, size=(lh, lw))
                x = lr.astype(np.float32) / 255
                size = (hr.shape[1], hr.shape[0])
                outs = {
                    "liif": liif._upscale_chain(x, None, whole, size=size, out_dtype=np.uint8),
                    f"{args.fixed}+resize": fixed._upscale_chain(x, None, whole, size=size, out_dtype=np.uint8),
                    "bicubic": imresize(lr, size=hr.shape[:2]),
                }
                for k, sr in outs.items():
                    assert sr.shape == hr.shape, (k, sr.shape, hr.shape)
                    sums[k] += psnr(sr, hr, crop=math.ceil(s), y_channel=True)
            means = {k: v / len(files) for k, v in sums.items()}
            results[f"{name} x{s:g}"] = means
            cells = "  ".join(f"{k} {v:.2f}" for k, v in means.items())
            print(f"{name:6s} x{s:<4g} n={len(files):3d}  {cells}   ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
