"""LIIF speed of two source trees (e.g. before/after a decoder change) on the same input, alternating fresh
processes so that both see the same load: ``superres.load_model("liif")(image, outscale=s)``, fp32, whole image,
one warm-up call per process; prints every run, the fastest of each, and how far their uint8 outputs differ.

    git archive <commit> src | tar -x -C /tmp/old      # the other tree
    python benchmarks/liif_ab.py --old /tmp/old/src [--new src --size 128 --scale 4 --repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))

CHILD = r"""
import sys, time
import numpy as np
from PIL import Image
from superres import load_model
from superres.inference.upscaler import UpscaleOptions
size, scale, src, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
if src:
    img = np.asarray(Image.open(src).convert("RGB"))[:size, :size]
else:
    img = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
up = load_model("liif", device="cpu", precision="fp32", options=UpscaleOptions(tile=0))
up(img[:32, :32], outscale=scale)
t0 = time.perf_counter()
y = up(img, outscale=scale)
print(time.perf_counter() - t0)
np.save(out, y)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="the other tree's src folder")
    ap.add_argument("--new", type=Path, default=REPO / "src")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--scale", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    photos = sorted((SHARED / "data" / "BSD100" / "HR").glob("*.png"))
    src = str(photos[0]) if photos else ""
    times: dict[str, list[float]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, tree in (("old", args.old), ("new", args.new)):
                env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
                out = str(Path(tmp) / f"{name}.npy")
                cmd = [sys.executable, "-c", CHILD, str(args.size), str(args.scale), src, out]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if proc.returncode:
                    sys.exit(f"{name} failed: {proc.stderr.strip().splitlines()[-1]}")
                times[name].append(float(proc.stdout.split()[-1]))
                print(f"{name} {times[name][-1]:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        a = np.load(Path(tmp) / "old.npy").astype(int)
        b = np.load(Path(tmp) / "new.npy").astype(int)
    print(f"fastest: old {min(times['old']):.2f} s, new {min(times['new']):.2f} s "
          f"({min(times['old']) / min(times['new']):.2f}x); outputs: max |old - new| {np.abs(a - b).max()}, "
          f"{int((a != b).sum())} of {a.size} values differ")


if __name__ == "__main__":
    main()
