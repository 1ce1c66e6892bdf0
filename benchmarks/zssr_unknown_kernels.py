"""ZSSR on non-bicubic blur: known kernel, estimated kernel, vs bicubic and a bicubic-trained network.

For each HR image (modcropped to the scale) a blur kernel is drawn from a seeded set of anisotropic
Gaussians (sigmas uniform in [0.35 s, 1.25 s] HR pixels, angle uniform in [0, pi), 4s+5 square), and the
LR image is ``round(blur_downscale(HR, k, s))`` (uint8; samples on the MATLAB-bicubic grid). Methods:

* ``bicubic``: MATLAB bicubic upscaling of the LR;
* ``edsr-baseline-x4``: our own bicubic-trained model. At x2 and x3 it runs at x4 and is MATLAB-bicubic
  resized down to the target size (said in the table);
* ``fidelity``: the zoo's best fidelity model at that scale (``-m fidelity``: ``superres.zoo.choose``;
  SPAN at x2 and x4, SRMDNF at x3), native scale, bicubic-trained;
* ``zssr-known``: ZSSR with the true kernel; ``zssr-est``: kernel estimated from the LR alone first
  (its time is reported separately and included in the per-image seconds).

Y-PSNR / Y-SSIM with ``scale`` pixels cropped at each border (superres.metrics.psnr_ssim), seconds per image
on this CPU: CPU seconds of this process (``time.process_time``, one thread) and wall seconds. By default
``--max-time`` is counted in CPU seconds too (``--clock cpu``): on a shared, loaded machine a wall-clock
budget would give ZSSR a fraction of the training the same option gives on an idle core. ``--curve 5,10,20,40`` instead runs known-kernel ZSSR at several --max-time values on the first
``--limit`` images and writes the quality-vs-time curve (JSON, and a PNG when matplotlib is installed).

    OMP_NUM_THREADS=1 python benchmarks/zssr_unknown_kernels.py --dataset Set14 --scale 2 --max-time 10
    OMP_NUM_THREADS=1 python benchmarks/zssr_unknown_kernels.py --dataset BSD100 --limit 5 --max-time 10
    OMP_NUM_THREADS=1 python benchmarks/zssr_unknown_kernels.py --dataset Set14 --limit 3 --curve 2.5,5,10,20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from superres.data.degradations import anisotropic_gaussian_kernel
from superres.metrics.psnr_ssim import psnr, ssim
from superres.resize import imresize, modcrop
from superres.zoo.choose import FIDELITY
from superres.zssr import ZSSRConfig, blur_downscale, estimate_kernel, zssr
from superres.zssr.kernel import kernel_size_for

REPO = Path(__file__).resolve().parents[1]


def draw_kernels(n: int, scale: int, seed: int) -> list[tuple[float, float, float]]:
    gen = torch.Generator().manual_seed(seed)
    lo, hi = 0.35 * scale, 1.25 * scale
    out = []
    for _ in range(n):
        u = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
        sx, sy = lo + (hi - lo) * u[0], lo + (hi - lo) * u[1]
        out.append((max(sx, sy), min(sx, sy), (u[2] * math.pi + (0.0 if sx >= sy else math.pi / 2)) % math.pi))
    return out


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def to_uint8(t: torch.Tensor) -> np.ndarray:
    return np.floor(t[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def kernel_error(est: torch.Tensor, true: torch.Tensor) -> float:
    """Relative L2 distance between two kernels (padded to one size)."""
    n = max(est.shape[-1], true.shape[-1])
    pad = lambda k: torch.nn.functional.pad(k, [(n - k.shape[-1]) // 2] * 4)
    a, b = pad(est.double()), pad(true.double())
    return float((a - b).norm() / b.norm())


def score(sr: np.ndarray, hr: np.ndarray, s: int) -> tuple[float, float]:
    return psnr(sr, hr, crop=s), ssim(sr, hr, crop=s)


class Clock:
    """Wall and CPU seconds since construction."""

    def __init__(self) -> None:
        self.w, self.c = time.perf_counter(), time.process_time()

    def __call__(self) -> tuple[float, float]:
        return time.perf_counter() - self.w, time.process_time() - self.c


def images(dataset: str, data_dir: Path, limit: int | None, start: int = 0) -> list[Path]:
    files = sorted((data_dir / dataset / "HR").glob("*.png"))
    return files[start : start + limit] if limit else files[start:]


def run_table(args: argparse.Namespace, save: Path) -> dict:
    """One row per image; the JSON is rewritten after each image, so a run cut short keeps its rows."""
    from superres.loading import load_model

    s = args.scale
    every = images(args.dataset, args.data_dir, None)
    files = images(args.dataset, args.data_dir, args.limit, args.start)
    kernels = draw_kernels(len(every), s, args.seed)[args.start : args.start + len(files)]  # image i: kernel i
    edsr = load_model("edsr-baseline-x4", device="cpu")
    best_name = FIDELITY.get(s, FIDELITY[4])
    best = load_model(best_name, device="cpu")
    cfg = ZSSRConfig(scale=s, max_time=args.max_time, width=args.width, seed=args.seed, clock=args.clock)
    rows = []
    for f, (sx, sy, th) in zip(files, kernels):
        hr = modcrop(np.asarray(Image.open(f).convert("RGB")), s)
        k = anisotropic_gaussian_kernel(kernel_size_for(s), sx, sy, th)
        lr_t = to_tensor(hr)
        lr = to_uint8(blur_downscale(lr_t, k, s))
        lr_t = to_tensor(lr)
        row: dict = {"image": f.stem, "kernel": [round(sx, 3), round(sy, 3), round(th, 3)]}
        t = Clock()
        bic = np.asarray(imresize(lr, float(s)))
        row["bicubic"] = (*score(bic, hr, s), *t())
        t = Clock()
        x4 = edsr.upscale(lr)
        sr = x4 if s == 4 else np.asarray(imresize(x4, size=hr.shape[:2]))
        row["edsr"] = (*score(sr, hr, s), *t())
        t = Clock()
        sr = best.upscale(lr)
        if sr.shape[:2] != hr.shape[:2]:
            sr = np.asarray(imresize(sr, size=hr.shape[:2]))
        row["fidelity"] = (*score(sr, hr, s), *t())
        row["fidelity_model"] = best_name
        t = Clock()
        run = zssr(lr_t, cfg, k)
        row["zssr_known"] = (*score(to_uint8(run.image), hr, s), *t())
        row["steps_known"] = run.steps
        t = Clock()
        est = estimate_kernel(lr_t, s, seed=args.seed)
        t_est = t()
        run = zssr(lr_t, cfg, est.kernel)
        row["zssr_est"] = (*score(to_uint8(run.image), hr, s), *t())
        row["steps_est"] = run.steps
        row["estimate"] = {"sigma_x": round(est.sigma_x, 3), "sigma_y": round(est.sigma_y, 3),
                           "theta": round(est.theta, 3), "seconds": round(t_est[1], 1),
                           "raw_sigma_x": round(est.raw_sigma_x, 3), "raw_sigma_y": round(est.raw_sigma_y, 3),
                           "rel_l2": round(kernel_error(est.kernel, k), 3)}
        rows.append(row)
        save.write_text(json.dumps({"rows": rows}, indent=1))
        print(f"{f.stem:>12} k=({sx:.2f},{sy:.2f},{th:.2f}) est=({est.sigma_x:.2f},{est.sigma_y:.2f},"
              f"{est.theta:.2f}) bic {row['bicubic'][0]:.2f}  edsr {row['edsr'][0]:.2f}  {best_name} {row['fidelity'][0]:.2f}  "
              f"zssr-known {row['zssr_known'][0]:.2f}  zssr-est {row['zssr_est'][0]:.2f}  "
              f"(cpu {row['zssr_known'][3]:.0f}s / {row['zssr_est'][3]:.0f}s, steps {run.steps})", flush=True)
    return {"rows": rows}


def summarise(result: dict, args: argparse.Namespace) -> str:
    rows = result["rows"]
    s = args.scale
    edsr_name = "edsr-baseline-x4" + ("" if s == 4 else f" (x4, then bicubic to x{s})")
    has_best = all("fidelity" in r for r in rows)
    best_name = f"{rows[0]['fidelity_model']} (zoo fidelity pick)" if has_best else ""
    lines = [(f"{args.dataset} x{s}, {len(rows)} images, anisotropic Gaussian kernels (seed {args.seed}), "
              f"ZSSR --max-time {args.max_time} {args.clock} s, width {args.width}, "
              f"{torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores shared"
              + ("" if args.summary else f" (load average at the end {os.getloadavg()[0]:.1f})")),
             f"{'method':<44} {'Y-PSNR':>7} {'Y-SSIM':>7} {'cpu s':>6} {'wall s':>6}  (median per image)"]
    methods = [("bicubic", "bicubic"), ("edsr", edsr_name), ("zssr_known", "zssr, true kernel"),
               ("zssr_est", "zssr, estimated kernel (incl. estimate)")]
    if has_best:
        methods.insert(2, ("fidelity", best_name))
    for key, name in methods:
        p = statistics.mean(r[key][0] for r in rows)
        q = statistics.mean(r[key][1] for r in rows)
        w = statistics.median(r[key][2] for r in rows)
        c = statistics.median(r[key][3] for r in rows)
        lines.append(f"{name:<44} {p:7.2f} {q:7.4f} {c:6.1f} {w:6.1f}")
    gain_k = statistics.mean(r["zssr_known"][0] - r["edsr"][0] for r in rows)
    gain_e = statistics.mean(r["zssr_est"][0] - r["edsr"][0] for r in rows)
    over_b = statistics.mean(r["zssr_known"][0] - r["bicubic"][0] for r in rows)
    over_be = statistics.mean(r["zssr_est"][0] - r["bicubic"][0] for r in rows)
    lines.append(f"zssr - edsr: true kernel {gain_k:+.2f} dB, estimated {gain_e:+.2f} dB; zssr - bicubic: "
                 f"true {over_b:+.2f} dB, estimated {over_be:+.2f} dB (estimated keeps "
                 f"{100 * over_be / over_b if over_b else float('nan'):.0f}% of the gain over bicubic)")
    wins = sum(r["zssr_known"][0] > r["edsr"][0] for r in rows)
    wins_e = sum(r["zssr_est"][0] > r["edsr"][0] for r in rows)
    lines.append(f"images where zssr beats edsr: true kernel {wins}/{len(rows)}, estimated {wins_e}/{len(rows)}")
    if has_best:
        gb = statistics.mean(r["zssr_known"][0] - r["fidelity"][0] for r in rows)
        ge = statistics.mean(r["zssr_est"][0] - r["fidelity"][0] for r in rows)
        wb = sum(r["zssr_known"][0] > r["fidelity"][0] for r in rows)
        we = sum(r["zssr_est"][0] > r["fidelity"][0] for r in rows)
        lines.append(f"zssr - {rows[0]['fidelity_model']}: true kernel {gb:+.2f} dB ({wb}/{len(rows)} images), "
                     f"estimated {ge:+.2f} dB ({we}/{len(rows)})")
    errs = [r["estimate"] for r in rows]
    ds = statistics.mean(abs(e["sigma_x"] - r["kernel"][0]) + abs(e["sigma_y"] - r["kernel"][1])
                         for e, r in zip(errs, rows)) / 2
    lines.append(f"kernel estimate: mean |sigma error| {ds:.2f} px, mean relative L2 "
                 f"{statistics.mean(e['rel_l2'] for e in errs):.2f}, median {statistics.median(e['seconds'] for e in errs):.0f} s")
    return "\n".join(lines)


def run_curve(args: argparse.Namespace) -> dict:
    s = args.scale
    times = [float(v) for v in args.curve.split(",")]
    files = images(args.dataset, args.data_dir, args.limit)
    kernels = draw_kernels(len(files), s, args.seed)
    points: dict[str, list] = {}
    for f, (sx, sy, th) in zip(files, kernels):
        hr = modcrop(np.asarray(Image.open(f).convert("RGB")), s)
        k = anisotropic_gaussian_kernel(kernel_size_for(s), sx, sy, th)
        lr_t = to_tensor(to_uint8(blur_downscale(to_tensor(hr), k, s)))
        bic = psnr(np.asarray(imresize(to_uint8(lr_t), float(s))), hr, crop=s)
        points[f.stem] = [(0.0, bic, 0.0, 0.0, 0)]
        for mt in times:
            t = Clock()
            run = zssr(lr_t, ZSSRConfig(scale=s, max_time=mt, width=args.width, seed=args.seed, clock=args.clock), k)
            p = psnr(to_uint8(run.image), hr, crop=s)
            wall, cpu = t()
            points[f.stem].append((mt, p, wall, cpu, sum(run.steps)))
            print(f"{f.stem:>12} max-time {mt:5.1f} {args.clock} s: {p:.2f} dB ({sum(run.steps)} steps; "
                  f"{cpu:.0f} cpu s, {wall:.0f} wall s in all, ensemble included)", flush=True)
    return {"curve": points, "times": times}


def run_ablation(args: argparse.Namespace, save: Path) -> dict:
    """Where the gain comes from: back-projection with the true kernel and no network (bicubic start, the
    same iterations ZSSR ends with), and ZSSR told nothing about the kernel (bicubic sons)."""
    from superres.zssr.pairs import degrade, upsample

    s = args.scale
    every = images(args.dataset, args.data_dir, None)
    files = images(args.dataset, args.data_dir, args.limit, args.start)
    kernels = draw_kernels(len(every), s, args.seed)[args.start : args.start + len(files)]
    cfg = ZSSRConfig(scale=s, max_time=args.max_time, width=args.width, seed=args.seed, clock=args.clock)
    rows = []
    for f, (sx, sy, th) in zip(files, kernels):
        hr = modcrop(np.asarray(Image.open(f).convert("RGB")), s)
        k = anisotropic_gaussian_kernel(kernel_size_for(s), sx, sy, th)
        lr_t = to_tensor(to_uint8(blur_downscale(to_tensor(hr), k, s)))
        row: dict = {"image": f.stem, "bicubic": score(np.asarray(imresize(to_uint8(lr_t), float(s))), hr, s)}
        sr = upsample(lr_t, s).clamp(0, 1)
        for _ in range(cfg.back_projection):
            sr = (sr + upsample(lr_t - degrade(sr, s, k), s)).clamp(0, 1)
        row["bp_only"] = score(to_uint8(sr), hr, s)
        row["zssr_bicubic"] = score(to_uint8(zssr(lr_t, cfg, None).image), hr, s)
        rows.append(row)
        save.write_text(json.dumps({"rows": rows}, indent=1))
        print(f"{f.stem:>12} bicubic {row['bicubic'][0]:.2f}  back-projection only (true k) {row['bp_only'][0]:.2f}  "
              f"zssr assuming bicubic {row['zssr_bicubic'][0]:.2f}", flush=True)
    for key in ("bicubic", "bp_only", "zssr_bicubic"):
        print(f"{key:<14} {statistics.mean(r[key][0] for r in rows):.2f} dB  "
              f"{statistics.mean(r[key][1] for r in rows):.4f}")
    return {"rows": rows}


def plot_curve(result: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in result["curve"].items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("--max-time (CPU s of training, 1 thread; 0 = bicubic)")
    ax.set_ylabel("Y-PSNR (dB)")
    ax.set_title("ZSSR, true kernel: quality vs training time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="Set14")
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--start", type=int, default=0, help="skip this many images (split a set across runs)")
    ap.add_argument("--summary", nargs="+", type=Path, default=None, help="merge these JSON row files and print")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--max-time", type=float, default=20.0)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what --max-time counts")
    ap.add_argument("--ablation", action="store_true", help="back-projection only and bicubic-assumed ZSSR")
    ap.add_argument("--curve", default=None, help="comma-separated --max-time values: quality-vs-time mode")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "output")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summary:
        rows = [r for f in args.summary for r in json.loads(f.read_text())["rows"]]
        print(summarise({"rows": rows}, args))
        return
    tag = f"zssr_{args.dataset}_x{args.scale}_{args.start}+{args.limit or 'all'}"
    if args.curve:
        result = run_curve(args)
        (args.out / f"{tag}_curve.json").write_text(json.dumps(result, indent=1))
        png = plot_curve(result, args.out / f"{tag}_curve.png")
        print(f"curve -> {args.out / (tag + '_curve.json')}" + (f", plot -> {png}" if png else ""))
        return
    if args.ablation:
        run_ablation(args, args.out / f"{tag}_t{args.max_time:g}_ablation.json")
        return
    result = run_table(args, args.out / f"{tag}_t{args.max_time:g}.json")
    print(summarise(result, args))


if __name__ == "__main__":
    main()
