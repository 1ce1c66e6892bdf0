"""Peak memory of upscaling a large photo: 4000 x 3000 at x4 with realesr-animevideov3 on CPU.

Builds a 4000 x 3000 photograph-like PNG from real images (Set14/BSD100 tiles when ../shared/data is
present, else a seeded synthetic texture), runs ``superres upscale`` in a child process, and reports
the child's peak resident memory (``ru_maxrss``), wall time and output size. Target: < 3 GB.

    python benchmarks/memory_large.py [--width 4000 --height 3000 --model realesr-animevideov3]
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
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))


def make_photo(width: int, height: int) -> Image.Image:
    """A mosaic of real photographs, so the network sees natural content (not flat colour)."""
    sources = sorted((SHARED / "data" / "BSD100" / "HR").glob("*.png"))[:40]
    canvas = Image.new("RGB", (width, height))
    if not sources:
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        return Image.fromarray(noise).resize((width, height), Image.BICUBIC)
    x = y = 0
    i = 0
    while y < height:
        tile = Image.open(sources[i % len(sources)]).convert("RGB")
        canvas.paste(tile, (x, y))
        x += tile.width
        if x >= width:
            x, y = 0, y + 321
        i += 1
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--model", default="realesr-animevideov3")
    ap.add_argument("--tile", type=int, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.png"
        make_photo(args.width, args.height).save(src)
        dst = Path(tmp) / "big_x4.png"
        cmd = [sys.executable, "-m", "superres.cli", "upscale", str(src), "-o", str(dst), "-m", args.model,
               "--device", "cpu"]
        if args.tile:
            cmd += ["--tile", str(args.tile)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            sys.exit(f"upscale failed ({proc.returncode}): {proc.stderr.strip()}")
        Image.MAX_IMAGE_PIXELS = None  # our own 192 MP output, not an untrusted file
        out = Image.open(dst)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
        print(f"| input | model | output | peak RSS | wall time |")
        print(f"|---|---|---|---|---|")
        print(f"| {args.width}x{args.height} | {args.model} | {out.width}x{out.height} | "
              f"{peak_kb / 1024**2:.2f} GB | {wall:.0f} s |")
        print(f"target < 3 GB: {'met' if peak_kb < 3 * 1024**2 else 'NOT met'}")


if __name__ == "__main__":
    main()
