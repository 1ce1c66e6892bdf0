"""Is the ensemble spread a useful error predictor? Calibration of superres uncertainty maps.

For each model and test set (names, or folders such as an Urban100 copy: ``-d /data/Urban100``), each
image's LR (MATLAB bicubic, as ``superres eval``) is upscaled with the ensemble
(:class:`superres.inference.ensemble.Ensemble`, x8 self-ensemble by default); the output is rounded to
uint8, and the real error is the squared error on Y (BT.601, the PSNR protocol) with ``scale`` border
pixels cropped from both the error and the uncertainty. Printed:

* per-image Spearman: rank correlation over the images of a set between mean uncertainty and MSE; beside
  it the same for the no-reference scores of the output, NIQE and BRISQUE (``rho_niqe``, ``rho_brisq``:
  does a worse score go with a larger error?), with a bootstrap 90 % interval over images for all three;
* per-pixel Spearman: within each image between uncertainty and squared error, averaged over images;
* AUSE (Ilg et al. 2018): the sparsification curve removes the fraction f of pixels with the highest
  uncertainty and records the MSE of the rest (normalised by the whole image's MSE); the oracle removes
  by true error. AUSE = area between the two curves over f in [0, 0.99] (0 = perfect ranking), mean over
  images. ``AUSE random`` is the same area for a random ranking (the flat curve at 1): the no-skill bar.

    python benchmarks/calibration.py -m edsr-baseline-x4,superres-compact-x4 -d Set14,BSD100 --limit 30
    python benchmarks/calibration.py -d /data/Urban100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

FRACTIONS = np.linspace(0.0, 0.99, 100)


def _y(img: np.ndarray) -> np.ndarray:
    """Y of BT.601 (16-235) from uint8 RGB (or grey as its own Y), float64."""
    a = img.astype(np.float64)
    if a.ndim == 2:
        return a
    return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def _rank(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _rank(np.ravel(a)), _rank(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def sparsification(err: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """MSE of the pixels left after removing the top fraction by ``order_key``, over :data:`FRACTIONS`,
    normalised by the MSE of all pixels."""
    e = np.ravel(err)
    idx = np.argsort(-np.ravel(order_key), kind="stable")
    sorted_e = e[idx]
    n = e.size
    suffix = np.cumsum(sorted_e[::-1])[::-1]  # sum of sorted_e[k:]
    total = suffix[0]
    if total <= 0:
        return np.zeros_like(FRACTIONS)
    curve = []
    for f in FRACTIONS:
        k = int(round(f * n))
        k = min(k, n - 1)
        curve.append(suffix[k] / (n - k) / (total / n))
    return np.asarray(curve)


def ause(err: np.ndarray, unc: np.ndarray) -> tuple[float, float]:
    """(AUSE of ``unc``, AUSE of a random ranking) for one image."""
    model = sparsification(err, unc)
    oracle = sparsification(err, err)
    random = np.ones_like(oracle)
    return float(np.trapezoid(model - oracle, FRACTIONS)), float(np.trapezoid(random - oracle, FRACTIONS))


def _boot_spearman(a: np.ndarray, b: np.ndarray, n: int = 500) -> list[float]:
    """[Spearman, 5th and 95th percentile of its bootstrap over images] (seeded)."""
    if len(a) <= 2:
        return [float("nan")] * 3
    rng = np.random.default_rng(0)
    boots = [spearman(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(n))]
    lo, hi = np.nanpercentile(boots, [5, 95])
    return [spearman(a, b), float(lo), float(hi)]


def run(model: str, dataset: str, scale: int, limit: int | None, mode: str, data_root: str | None) -> dict:
    from superres.data.catalogue import iter_pairs, resolve_dataset
    from superres.inference.ensemble import Ensemble
    from superres.inference.upscaler import UpscaleOptions
    from superres.loading import load_model

    up = load_model(model, device="cpu", precision="fp32", options=UpscaleOptions(tile=0))
    if up.scale != scale:
        raise SystemExit(f"{model} is x{up.scale}, not x{scale}")
    if mode == "x8":
        ens = Ensemble(up, self_ensemble=True)
    elif mode.startswith("mc"):
        ens = Ensemble(up, mc_dropout=int(mode[2:] or 8))
    else:
        raise SystemExit(f"--ensemble takes x8 or mcN, not {mode!r}")
    from superres.metrics.brisque import brisque, load_brisque_model
    from superres.metrics.niqe import load_niqe_model, niqe

    nm, bm = load_niqe_model(), load_brisque_model()
    ds = resolve_dataset(dataset, scale, data_root, limit=limit)
    per_image = []
    t0 = time.perf_counter()
    for pair in iter_pairs(ds):
        lr = pair.lr if pair.lr.ndim == 3 else pair.lr[..., None]
        mean, unc = ens.upscale_float(lr.astype(np.float32) / 255.0, up.options)
        sr = np.floor(mean * 255.0 + 0.5).astype(np.uint8)
        if pair.hr.ndim == 2:
            sr = sr[..., 0]
        c = scale
        err = ((_y(sr) - _y(pair.hr)) ** 2)[c:-c, c:-c]
        u = unc[c:-c, c:-c].astype(np.float64)
        a, a_rand = ause(err, u)
        mse = float(err.mean())
        per_image.append({"image": pair.name, "mse_y": mse, "psnr_y": 10 * np.log10(255.0**2 / mse),
                          "uncertainty_mean": float(u.mean() * 255),
                          "uncertainty_p99": float(np.percentile(u, 99) * 255),
                          "pixel_spearman": spearman(u, err), "ause": a, "ause_random": a_rand,
                          "niqe": niqe(sr, c, "y", model=nm), "brisque": brisque(sr, c, model=bm)})
    seconds = time.perf_counter() - t0
    rows = per_image
    return {
        "model": up.name, "dataset": ds.name, "scale": scale, "ensemble": ens.label, "n_images": len(rows),
        "image_spearman": spearman(np.array([r["uncertainty_mean"] for r in rows]),
                                   np.array([r["mse_y"] for r in rows])) if len(rows) > 2 else float("nan"),
        **{f"image_spearman_{k}": _boot_spearman(np.array([r[k] for r in rows]),
                                                 np.array([r["mse_y"] for r in rows]))
           for k in ("uncertainty_mean", "niqe", "brisque")},
        "pixel_spearman": float(np.nanmean([r["pixel_spearman"] for r in rows])),
        "ause": float(np.mean([r["ause"] for r in rows])),
        "ause_random": float(np.mean([r["ause_random"] for r in rows])),
        "psnr_y": float(np.mean([r["psnr_y"] for r in rows])),
        "seconds": seconds, "images": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--models", default="edsr-baseline-x4,superres-compact-x4")
    ap.add_argument("-d", "--datasets", default="Set14,BSD100", help="names or folders (Urban100 by folder)")
    ap.add_argument("-s", "--scale", type=int, default=4)
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--ensemble", default="x8", help="x8 (self-ensemble) or mcN (MC-dropout, N samples)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--json", type=Path, default=None, help="also write every number (per image too) here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = []
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} thread(s); ensemble {args.ensemble}; limit {args.limit}")
    print(f"{'model':22s} {'dataset':8s} {'n':>4s} {'PSNR-Y':>7s} {'rho_img':>8s} {'rho_pix':>8s} "
          f"{'AUSE':>7s} {'AUSE_rnd':>8s} {'sec':>6s}  rho with MSE over images [90% bootstrap]: uncertainty, "
          "NIQE, BRISQUE")
    for model in [m for m in args.models.split(",") if m]:
        for dataset in [d for d in args.datasets.split(",") if d]:
            r = run(model, dataset, args.scale, args.limit, args.ensemble, args.data_root)
            results.append(r)
            print(f"{r['model']:22s} {r['dataset']:8s} {r['n_images']:4d} {r['psnr_y']:7.3f} "
                  f"{r['image_spearman']:8.3f} "
                  f"{r['pixel_spearman']:8.3f} {r['ause']:7.3f} {r['ause_random']:8.3f} {r['seconds']:6.0f}  "
                  + "  ".join("{:.2f} [{:.2f}, {:.2f}]".format(*r[f"image_spearman_{k}"])
                              for k in ("uncertainty_mean", "niqe", "brisque")),
                  flush=True)
            if args.json is not None:  # after every row: a long run keeps what it measured
                args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
