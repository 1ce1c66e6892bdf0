"""Comparison sheets of the 2x anime / line-art models on line art: a seeded synthetic drawing plus Set14
``comic`` and ``ppt3`` (a slide: text and flat colours), through ``superres eval`` (MATLAB-bicubic LR made
from each HR image, PSNR/SSIM on Y, one sheet per image with the most detailed quarter-size crop).

Run: ``python benchmarks/lineart_sheets.py --out lineart_eval`` (``--scale 3`` / ``--scale 4``: the Real-CUGAN
x3 / x4 models; ``--pro``: the x2 pro and no-SE Real-CUGAN models beside the models-se ones) -> ``lineart_eval/HR/*.png`` (the inputs),
``lineart_eval/report.md`` and ``lineart_eval/figures/*.png`` (open them and judge: ringing around lines,
broken thin strokes, jagged diagonals, noise in flat fills).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))
MODELS = ("bicubic-rgb,waifu2x-anime-x2,waifu2x-anime-x2-n1,waifu2x-photo-x2,realcugan-x2,realcugan-x2-cons,"
          "span-x2,srmd-x2,waifu2x-cunet-x2,waifu2x-cunet-x2-n1")
# --scale 3 / 4 (and --scale 2 --pro): the other Real-CUGAN models beside a classical and an anime reference.
MODELS_BY_SCALE = {
    2: MODELS,
    3: "bicubic-rgb,realcugan-x3,realcugan-x3-cons,realcugan-x3-denoise3,realcugan-pro-x3,realcugan-pro-x3-cons,srmd-x3",
    4: ("bicubic-rgb,realcugan-x4,realcugan-x4-cons,realcugan-x4-denoise3,realesrgan-x4plus-anime,"
        "realesr-animevideov3,span-x4"),
}
PRO_X2 = ("bicubic-rgb,realcugan-x2,realcugan-x2-cons,realcugan-pro-x2,realcugan-pro-x2-cons,"
          "realcugan-pro-x2-denoise3,realcugan-nose-x2")


def line_art(size: int = 384, seed: int = 16) -> "object":
    """A seeded drawing with what anime upscalers must keep: thin and thick ink lines at every angle,
    curves, hatching, flat colour fills and small text-like strokes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (250, 246, 236))
    d = ImageDraw.Draw(img)
    palette = [(236, 120, 130), (120, 170, 230), (250, 210, 110), (150, 210, 150), (200, 160, 220)]
    for _ in range(7):  # flat fills with ink outlines
        x0, y0 = rng.integers(0, size - 80, 2)
        w, h = rng.integers(40, 140, 2)
        colour = palette[int(rng.integers(len(palette)))]
        if rng.random() < 0.5:
            d.ellipse([x0, y0, x0 + w, y0 + h], fill=colour, outline=(20, 20, 30), width=int(rng.integers(1, 4)))
        else:
            d.polygon([(x0, y0 + h), (x0 + w // 2, y0), (x0 + w, y0 + h)], fill=colour, outline=(20, 20, 30))
    for _ in range(25):  # ink strokes at random angles and widths
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, 4))
        d.line([x0, y0, x1, y1], fill=(15, 15, 25), width=int(rng.integers(1, 4)))
    for k in range(12):  # hatching
        d.line([20 + 6 * k, size - 20, 60 + 6 * k, size - 90], fill=(40, 40, 60), width=1)
    for k in range(6):  # arcs
        r = 20 + 9 * k
        d.arc([size - 40 - r, 40 - r // 2, size - 40 + r, 40 + r + r // 2], 200, 340, fill=(30, 30, 40), width=1 + k % 2)
    for i, ch in enumerate("SUPERRES x2"):  # text-like strokes with the default bitmap font
        d.text((24 + 11 * i, 24), ch, fill=(10, 10, 10))
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("lineart_eval"))
    ap.add_argument("--scale", type=int, choices=sorted(MODELS_BY_SCALE), default=2)
    ap.add_argument("--pro", action="store_true", help="x2: the pro and no-SE Real-CUGAN models")
    ap.add_argument("--models", default=None, help=f"comma-separated, default {MODELS} (per --scale / --pro)")
    args = ap.parse_args()
    models = args.models or (PRO_X2 if args.pro else MODELS_BY_SCALE[args.scale])
    hr = args.out / "HR"
    hr.mkdir(parents=True, exist_ok=True)
    line_art().save(hr / "lineart_seed16.png")
    for name in ("comic", "ppt3"):
        src = SHARED / "data" / "Set14" / "HR" / f"{name}.png"
        if src.is_file():
            shutil.copyfile(src, hr / src.name)
    cmd = [sys.executable, "-m", "superres.cli", "eval", "-m", models, "-s", str(args.scale), "-d", str(hr),
           "--figures", str(args.out / "figures"), "--figure-count", "3", "-o", str(args.out / "report.md")]
    print(" ".join(cmd), flush=True)
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
