"""Does BRISQUE beside NIQE make the quality gate catch broken outputs better? (issue 26)

The gate flags an output whose no-reference score is worse than the bicubic upscale's by more than a
tolerance. For each test image (LR = MATLAB bicubic, as ``superres eval``) this scores the real output of a
model and outputs broken in the ways the gate exists for, each against the same bicubic upscale:

* ``noise-weights``: every weight replaced by seeded noise of the same scale (a corrupted download);
* ``perturbed-30``: weights + seeded noise of 30 % of each tensor's std (a half-broken conversion);
* ``blur``: the real output blurred (Gaussian, sigma 1.5 output pixels);
* ``noise-8``: the real output + Gaussian noise, sigma 8 grey levels (seeded).

Printed per score (NIQE margin, BRISQUE margin, and the combination "flag if either is flagged"): the
flag rate on real outputs (false alarms) and on each broken kind, at the gate's NIQE tolerance (1.0) and a
BRISQUE tolerance chosen to give no more false alarms than NIQE on these real outputs; and the AUC of each
margin separating real from broken (1 = perfect), with a bootstrap 90 % interval over images.

    python benchmarks/gate_brisque.py -m edsr-baseline-x4 -d Set14 [--limit N] [--json out.json]
    python benchmarks/gate_brisque.py -m superres-compact-x4 -d BSD100 --limit 20 --brisque-tolerance 0
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

KINDS = ("noise-weights", "perturbed-30", "blur", "noise-8")


def _noisy_model(model: str, rel: float | None, seed: int, folder: Path):
    """The zoo model with weights replaced by noise (``rel=None``) or perturbed by ``rel`` x std noise, saved
    as a weights file and loaded like any other (as tests/test_quality_report.py makes its broken model)."""
    import torch
    from safetensors.torch import save_file

    from superres.inference.upscaler import UpscaleOptions
    from superres.loading import load_model
    from superres.zoo.formats import read_weights_file
    from superres.zoo.registry import get_card, resolve_weights

    sd, _ = read_weights_file(resolve_weights(get_card(model)))
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if v.ndim > 1:
            noise = torch.randn(v.shape, generator=g) * v.float().std().clamp(min=1e-3)
            v = noise if rel is None else v.float() + rel * noise
        out[k] = v.clone().contiguous()
    path = folder / f"{model}-broken-{seed}.safetensors"
    save_file(out, str(path))
    return load_model(path, device="cpu", precision="fp32", options=UpscaleOptions(tile=0))


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    f = img.astype(np.float64)
    out = gaussian_filter(f, sigma=(sigma, sigma, 0) if f.ndim == 3 else sigma, mode="reflect")
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a broken output's margin < a real output's margin): margins are bicubic - output (low = bad)."""
    diff = pos[None, :] - neg[:, None]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="edsr-baseline-x4")
    ap.add_argument("-d", "--dataset", default="Set14")
    ap.add_argument("-s", "--scale", type=int, default=4)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--niqe-tolerance", type=float, default=1.0)
    ap.add_argument("--brisque-tolerance", type=float, default=None,
                    help="fixed BRISQUE tolerance (an out-of-sample check); default: chosen on these real outputs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    from superres.data.catalogue import iter_pairs, resolve_dataset
    from superres.inference.upscaler import UpscaleOptions
    from superres.loading import load_model
    from superres.metrics.brisque import brisque, load_brisque_model
    from superres.metrics.niqe import load_niqe_model, niqe
    from superres.resize import imresize

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    nm, bm = load_niqe_model(), load_brisque_model()
    real = load_model(args.model, device="cpu", precision="fp32", options=UpscaleOptions(tile=0))
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="gate-brisque-"))
    broken_models = {"noise-weights": _noisy_model(args.model, None, 0, tmp),
                     "perturbed-30": _noisy_model(args.model, 0.3, 1, tmp)}
    rng = np.random.default_rng(0)
    ds = resolve_dataset(args.dataset, args.scale, args.data_root, limit=args.limit)
    rows = []
    t0 = time.perf_counter()
    for pair in iter_pairs(ds):
        lr = pair.lr if pair.lr.ndim == 3 else np.repeat(pair.lr[..., None], 3, axis=2)
        bic = np.asarray(imresize(lr, float(args.scale)))
        c = args.scale

        def scores(img: np.ndarray, c: int = c) -> tuple[float, float]:
            return niqe(img, c, "y", model=nm), brisque(img, c, model=bm)

        b_n, b_b = scores(bic)
        out = real.upscale_float(lr.astype(np.float32) / 255.0, out_dtype=np.uint8)
        outputs = {"real": out, "blur": _blur(out, 1.5),
                   "noise-8": np.clip(out + rng.normal(0, 8, out.shape), 0, 255).astype(np.uint8)}
        for kind, m in broken_models.items():
            outputs[kind] = m.upscale_float(lr.astype(np.float32) / 255.0, out_dtype=np.uint8)
        for kind, img in outputs.items():
            s_n, s_b = scores(img)
            rows.append({"image": pair.name, "kind": kind, "niqe_margin": b_n - s_n, "brisque_margin": b_b - s_b,
                         "niqe": s_n, "brisque": s_b, "bicubic_niqe": b_n, "bicubic_brisque": b_b})
        print(f"  {pair.name}: " + ", ".join(f"{r['kind']} {r['niqe_margin']:+.2f}/{r['brisque_margin']:+.1f}"
                                            for r in rows[-len(outputs):]), flush=True)
    seconds = time.perf_counter() - t0

    def col(kind: str, key: str) -> np.ndarray:
        return np.array([r[key] for r in rows if r["kind"] == kind])

    real_n, real_b = col("real", "niqe_margin"), col("real", "brisque_margin")
    tol_n = args.niqe_tolerance
    fa_n = float(np.mean(real_n < -tol_n))
    # the smallest BRISQUE tolerance (0.5-point steps) with no more false alarms than NIQE on these outputs
    tol_b = args.brisque_tolerance
    if tol_b is None:
        tol_b = next(t for t in np.arange(0.0, 100.5, 0.5) if np.mean(real_b < -t) <= fa_n)
    print(f"\nmachine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; {args.model} {ds.name} x{args.scale}, {len(real_n)} images, {seconds:.0f} s")
    how = "fixed" if args.brisque_tolerance is not None else "no more false alarms than NIQE on real outputs"
    print(f"tolerances: NIQE {tol_n:g}, BRISQUE {tol_b:g} ({how})")
    print(f"{'flag rate':24s} {'real':>6s} " + " ".join(f"{k:>14s}" for k in KINDS))
    flags = {
        "NIQE": lambda n, b: n < -tol_n,
        "BRISQUE": lambda n, b: b < -tol_b,
        "NIQE or BRISQUE": lambda n, b: (n < -tol_n) | (b < -tol_b),
    }
    summary: dict = {"tolerances": {"niqe": tol_n, "brisque": float(tol_b)}, "flag_rate": {}, "auc": {}}
    for name, f in flags.items():
        rates = {k: float(np.mean(f(col(k, "niqe_margin"), col(k, "brisque_margin")))) for k in ("real", *KINDS)}
        summary["flag_rate"][name] = rates
        print(f"{name:24s} {rates['real']:6.2f} " + " ".join(f"{rates[k]:14.2f}" for k in KINDS))
    print(f"\n{'AUC real vs broken':24s} " + " ".join(f"{k:>20s}" for k in KINDS))
    boot = np.random.default_rng(1)
    n_img = len(real_n)
    for key, label in (("niqe_margin", "NIQE margin"), ("brisque_margin", "BRISQUE margin")):
        cells = []
        for k in KINDS:
            pos, neg = col("real", key), col(k, key)
            auc = _auc(pos, neg)
            bs = [_auc(pos[i], neg[i]) for i in (boot.integers(0, n_img, n_img) for _ in range(500))]
            lo, hi = np.percentile(bs, [5, 95])
            summary["auc"].setdefault(label, {})[k] = [auc, float(lo), float(hi)]
            cells.append(f"{auc:.2f} [{lo:.2f}, {hi:.2f}]")
        print(f"{label:24s} " + " ".join(f"{c:>20s}" for c in cells))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
