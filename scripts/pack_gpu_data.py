"""Copy the training and validation images into the repository for a device run (``run`` carries at most
64 MiB of working tree, and ``../shared`` does not travel).

Training folders (T91, BSD200) are written as lossless WebP (the same pixels, checked, in about two thirds
of the PNG bytes); the test sets (Set5, Set14) are copied as they are, because Set14 has grey images that
must stay grey for the protocol. BSD100 does not fit beside them: measure it here after the run.

    echo /.gpu_data/ >> .git/info/exclude
    python scripts/pack_gpu_data.py .gpu_data                  # then: run(carry=[".gpu_data"], ...)
    python scripts/train_zoo.py --data .gpu_data --datasets Set5,Set14 --out $OUT/work ...
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def to_webp(src: Path, dst: Path, limit: int | None = None) -> int:
    """Lossless WebP copies of the images in ``src``; returns the bytes written."""
    dst.mkdir(parents=True, exist_ok=True)
    total = 0
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg", ".tif", ".tiff"))
    for f in files[:limit]:
        out = dst / f"{f.stem}.webp"
        if not out.exists():
            with Image.open(f) as im:
                rgb = im.convert("RGB")
                tmp = out.with_suffix(".tmp.webp")
                rgb.save(tmp, format="WEBP", lossless=True, quality=100, method=4)
                with Image.open(tmp) as back:
                    if not np.array_equal(np.asarray(back.convert("RGB")), np.asarray(rgb)):
                        raise SystemExit(f"{f}: WebP copy is not lossless")
                tmp.replace(out)
        total += out.stat().st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--train", default="T91,BSD200")
    ap.add_argument("--test", default="Set5,Set14")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of each set (a quick check)")
    a = ap.parse_args()
    total = 0
    for name in filter(None, a.train.split(",")):
        total += to_webp(a.data / name / "HR", a.dest / name / "HR", a.limit)
    for name in filter(None, a.test.split(",")):
        dst = a.dest / name
        if not dst.exists():
            shutil.copytree(a.data / name, dst)
        total += sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    print(f"{a.dest}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
