"""How far DAT-light's tiled output is from the whole-image output, per context, on real Set14 images.

DAT's channel attention and the AIM's global pooling see the whole map, so tiles can only approach the
whole image; this measures how closely, to choose the default context (README "DAT-light").

    superres fetch dat-light-x4
    python benchmarks/dat_tiling.py [--scale 4] [--tile 64] [--contexts 0,8,16,32,48] [--images baboon,comic,zebra]

Prints, per image and context, the max and mean absolute difference on [0, 255] (float outputs, before
rounding) and the share of pixels whose rounded value differs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from superres.inference.upscaler import UpscaleOptions, Upscaler
from superres.zoo.loader import load_network

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Set14" / "LR_bicubic"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--contexts", default="0,8,16,32,48")
    ap.add_argument("--images", default="baboon,comic,zebra")
    a = ap.parse_args()
    net = load_network(f"dat-light-x{a.scale}")[0]
    print(f"dat-light-x{a.scale}, tile {a.tile}, overlap {a.overlap}")
    print("image      context  max|d|  mean|d|  rounded differ")
    for stem in a.images.split(","):
        lr = Image.open(DATA / f"X{a.scale}" / f"{stem}x{a.scale}.png").convert("RGB")
        rgb = np.asarray(lr, np.float32).transpose(2, 0, 1) / 255.0
        whole = Upscaler(net, options=UpscaleOptions(tile=0)).upscale_planes(rgb) * 255
        for ctx in (int(c) for c in a.contexts.split(",")):
            up = Upscaler(net, options=UpscaleOptions(tile=a.tile, overlap=a.overlap, context=ctx))
            tiled = up.upscale_planes(rgb) * 255
            d = np.abs(tiled - whole)
            differ = float(np.mean(np.round(np.clip(tiled, 0, 255)) != np.round(np.clip(whole, 0, 255))))
            print(f"{stem:10s} {ctx:7d}  {d.max():6.3f}  {d.mean():7.4f}  {differ:7.2%}  ({lr.size[0]}x{lr.size[1]} LR)",
                  flush=True)


if __name__ == "__main__":
    main()
