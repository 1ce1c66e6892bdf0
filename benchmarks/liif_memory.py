"""Peak memory of LIIF at a large scale: ``superres upscale -m liif -s 12`` on a 512 x 512 photograph (6144 x 6144
out) in a child process; reports the child's peak resident memory (``ru_maxrss``), wall time and output size.

Why bounded: the continuous tiler (``superres.inference.continuous``) holds one LR crop's features and one strip
of output rows (automatic tiles are shrunk so a strip is at most 1024 output rows), and the decoder works through
queries in blocks of 256 (16,384 on a GPU); the uint8 output (113 MB at 6144 x 6144) is the only part that grows
with the image.
Run smaller inputs (--size 64, 128) to see the peak stay flat apart from the output.

    python benchmarks/liif_memory.py [--size 512 --scale 12]
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


def make_input(size: int) -> Image.Image:
    """A size x size crop of a real photograph (BSD100 when ../shared/data is present, else seeded noise)."""
    sources = sorted((SHARED / "data" / "BSD100" / "HR").glob("*.png"))
    if not sources:
        rng = np.random.default_rng(0)
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    img = Image.open(sources[0]).convert("RGB")
    if min(img.size) < size:
        img = img.resize((max(size, img.size[0]), max(size, img.size[1])), Image.BICUBIC)
    return img.crop((0, 0, size, size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--scale", type=float, default=12.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.png", Path(tmp) / "out.png"
        make_input(args.size).save(src)
        cmd = [sys.executable, "-m", "superres.cli", "upscale", str(src), "-o", str(dst), "-m", "liif",
               "-s", f"{args.scale:g}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            sys.exit(f"upscale failed: {proc.stderr.strip() or proc.stdout.strip()}")
        out = Image.open(dst).size
    print(f"liif x{args.scale:g} {args.size}x{args.size} -> {out[0]}x{out[1]}: peak RSS {peak_kib / 1024:.0f} MiB, "
          f"{wall:.0f} s ({platform.machine()}, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
