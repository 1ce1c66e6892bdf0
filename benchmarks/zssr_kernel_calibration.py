"""How wide the ZSSR kernel estimate should be: the estimator's error and ZSSR's loss, on BSD200.

BSD200 is a training set (``../shared/data/BSD200``), so nothing here is tuned on the benchmark sets of
``zssr_unknown_kernels.py`` (Set14, BSD100). Kernels come from the same anisotropic Gaussian family as
that benchmark, with another seed (1).

1. **Estimator error**: for the first ``--images`` images, the ratio of the uncalibrated estimate's width
   to the true width (geometric mean of the two sigmas), per scale.
2. **ZSSR's loss against kernel width**: for ``--loss-images`` images, ZSSR trained with the true kernel
   scaled by each factor in ``--factors``; the loss is the Y-PSNR drop from the true kernel.
3. **The factor**: for each candidate shrink ``c``, the expected loss over the measured estimator errors
   (loss interpolated in log-width from step 2; widths outside the measured factors take the end values'
   slope). The best ``c`` per scale is what ``superres.zssr.kernel.SHRINK`` holds. A scale named in
   ``--reuse-loss`` takes the previous scale's loss curve instead of measuring its own.

    OMP_NUM_THREADS=1 python benchmarks/zssr_kernel_calibration.py --scales 4,2,3 --reuse-loss 3 --images 40 --loss-images 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from zssr_unknown_kernels import draw_kernels, images, to_tensor, to_uint8

from superres.data.degradations import anisotropic_gaussian_kernel
from superres.metrics.psnr_ssim import psnr
from superres.resize import modcrop
from superres.zssr import ZSSRConfig, blur_downscale, estimate_kernel, zssr
from superres.zssr.kernel import kernel_size_for

REPO = Path(__file__).resolve().parents[1]


def degraded(f: Path, kernel: tuple[float, float, float], s: int) -> tuple[np.ndarray, torch.Tensor]:
    hr = modcrop(np.asarray(Image.open(f).convert("RGB")), s)
    k = anisotropic_gaussian_kernel(kernel_size_for(s), *kernel)
    return hr, to_tensor(to_uint8(blur_downscale(to_tensor(hr), k, s)))


def estimator_errors(files: list[Path], kernels: list, s: int) -> list[float]:
    out = []
    for f, (sx, sy, th) in zip(files, kernels):
        _, lr = degraded(f, (sx, sy, th), s)
        e = estimate_kernel(lr, s, calibrated=False)
        out.append(math.sqrt(e.raw_sigma_x * e.raw_sigma_y / (sx * sy)))
    return out


def loss_curve(files: list[Path], kernels: list, s: int, factors: list[float], max_time: float) -> list[list[float]]:
    """Per image: Y-PSNR drop at each factor relative to factor 1 (the true kernel)."""
    rows = []
    for f, (sx, sy, th) in zip(files, kernels):
        hr, lr = degraded(f, (sx, sy, th), s)
        got = {}
        for c in sorted(set(factors) | {1.0}):
            k = anisotropic_gaussian_kernel(kernel_size_for(s), sx * c, sy * c, th)
            run = zssr(lr, ZSSRConfig(scale=s, max_time=max_time, seed=0, clock="cpu"), k)
            got[c] = psnr(to_uint8(run.image), hr, crop=s)
        rows.append([got[c] - got[1.0] for c in factors])
        print(f"  x{s} {f.stem}: " + " ".join(f"{c:g}:{d:+.2f}" for c, d in zip(factors, rows[-1])), flush=True)
    return rows


def expected_loss(c: float, ratios: list[float], factors: list[float], mean_loss: list[float]) -> float:
    xs = [math.log(v) for v in factors]
    total = 0.0
    for r in ratios:
        x = math.log(c * r)
        if x <= xs[0]:
            y = mean_loss[0] + (x - xs[0]) * (mean_loss[1] - mean_loss[0]) / (xs[1] - xs[0])
        elif x >= xs[-1]:
            y = mean_loss[-1] + (x - xs[-1]) * (mean_loss[-1] - mean_loss[-2]) / (xs[-1] - xs[-2])
        else:
            y = float(np.interp(x, xs, mean_loss))
        total += y
    return total / len(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--scales", default="2,3,4")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--loss-images", type=int, default=3)
    ap.add_argument("--loss-start", type=int, default=3, help="first image of the loss curve (after --images' own)")
    ap.add_argument("--factors", default="0.6,0.75,0.9,1,1.15,1.3")
    ap.add_argument("--max-time", type=float, default=5.0)
    ap.add_argument("--reuse-loss", default="", help="scales that take the previous scale's loss curve")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "output")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.out.mkdir(parents=True, exist_ok=True)
    factors = [float(v) for v in args.factors.split(",")]
    every = images("BSD200", args.data_dir, None)
    result: dict = {"factors": factors, "max_time": args.max_time, "seed": args.seed, "scales": {}}
    reuse = {int(v) for v in args.reuse_loss.split(",") if v}
    last_loss = None
    for s in (int(v) for v in args.scales.split(",")):
        kernels = draw_kernels(len(every), s, args.seed)
        t = time.process_time()
        ratios = estimator_errors(every[: args.images], kernels[: args.images], s)
        est_s = (time.process_time() - t) / max(1, len(ratios))
        q = np.quantile(ratios, [0.1, 0.25, 0.5, 0.75, 0.9]).round(2).tolist()
        print(f"x{s}: estimate / true width over {len(ratios)} images: quantiles 10/25/50/75/90 {q} "
              f"({est_s:.1f} CPU s per estimate)", flush=True)
        lo, hi = args.loss_start, args.loss_start + args.loss_images
        measured = s not in reuse
        curves = loss_curve(every[lo:hi], kernels[lo:hi], s, factors, args.max_time) if measured else []
        if curves:
            mean_loss = [statistics.mean(col) for col in zip(*curves)]
        elif last_loss is not None:
            print(f"x{s}: no loss curve measured; using the previous scale's", flush=True)
            mean_loss = last_loss
        else:
            raise SystemExit("the first scale needs a measured loss curve (--loss-images > 0)")
        last_loss = mean_loss
        cands = [round(v, 2) for v in np.arange(0.6, 1.21, 0.05)]
        table = {c: expected_loss(c, ratios, factors, mean_loss) for c in cands}
        best = max(table, key=table.get)
        print(f"x{s}: mean loss by factor " + " ".join(f"{c:g}:{d:+.2f}" for c, d in zip(factors, mean_loss)))
        print(f"x{s}: expected loss by shrink " + " ".join(f"{c:g}:{v:+.2f}" for c, v in table.items())
              + f"  -> best {best:g}", flush=True)
        result["scales"][s] = {"ratios": ratios, "quantiles": q, "loss_curves": curves, "mean_loss": mean_loss,
                               "expected_loss": table, "best": best, "estimate_cpu_s": est_s}
        (args.out / "zssr_kernel_calibration.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
