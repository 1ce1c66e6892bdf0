"""Structured pruning, before and after: parameters, MACs, CPU speed and quality, in one run.

Rows: the original model; the same model pruned at ``--ratio`` without fine-tuning (pruned here, L1 filters);
and each ``--finetuned`` weights file (made by ``superres prune MODEL --ratio R --finetune-cache DIR
--max-time S``). Quality on Set5 with Real-ESRGAN-degraded LR (fixed seed per image): Y-PSNR and LPIPS
(v0.1 alex) against the teacher's outputs (``realesrgan-x4plus``, cached in ``--cache``), which is what a
distilled student is trained to match, plus Y-PSNR against the HR for context. With ``--bicubic`` the LR is
MATLAB-bicubic instead and only Y-PSNR vs HR is reported (for classical models).

Speed: each model through the same engine (``Upscaler.forward``: the fast fp32 CPU path), same 128x128 LR
input, interleaved, one warm-up, median of ``--repeats``. MACs are conv multiply-accumulates per LR pixel.

Run: ``python benchmarks/prune_eval.py --model superres-compact-x4 --ratio 0.5 --finetuned pruned.safetensors``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from superres import load_model
from superres.archs.cost import count_macs, count_params
from superres.compress.prune import prune
from superres.data.degradations import build_degradation
from superres.inference.upscaler import Upscaler
from superres.zoo.loader import load_network
from superres.metrics.lpips import LPIPS, lpips_distance
from superres.metrics.psnr_ssim import psnr

from distill_eval import DATA, read_rgb, to_t, to_u8  # noqa: E402  (same folder: run as a script)


def set5(seed: int, cache: Path, teacher_name: str, bicubic: bool) -> list[dict[str, Any]]:
    """HR, LR and (unless bicubic) cached teacher output for each Set5 image."""
    cache.mkdir(parents=True, exist_ok=True)
    kind = "bicubic" if bicubic else "realesrgan"
    deg = build_degradation(kind, 4)
    teacher = None
    out = []
    for i, p in enumerate(sorted((DATA / "Set5" / "HR").glob("*.png"))):
        hr = read_rgb(p)
        h, w = hr.shape[0] // 4 * 4, hr.shape[1] // 4 * 4
        hr = hr[:h, :w]
        lr_p, t_p = cache / f"{p.stem}_{kind}_s{seed + i}_lr.png", cache / f"{p.stem}_s{seed + i}_teacher.png"
        if lr_p.is_file():
            lr = read_rgb(lr_p)
        else:
            lr = to_u8(deg(to_t(hr)[None], torch.Generator().manual_seed(seed + i))[0])
            Image.fromarray(lr).save(lr_p)
        t_out = None
        if not bicubic:
            if t_p.is_file():
                t_out = read_rgb(t_p)
            else:
                teacher = teacher or load_model(teacher_name, device="cpu", precision="fp32")
                t_out = to_u8(teacher.upscale(to_t(lr)))
                Image.fromarray(t_out).save(t_p)
        out.append({"name": p.stem, "hr": hr, "lr": lr, "teacher": t_out})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="superres-compact-x4")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--finetuned", nargs="*", type=Path, default=[])
    ap.add_argument("--teacher", default="realesrgan-x4plus")
    ap.add_argument("--bicubic", action="store_true")
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/superres-prune-eval"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    net, _ = load_network(args.model)
    models: list[tuple[str, Upscaler]] = [(args.model, Upscaler(net, name=args.model, device="cpu"))]
    models.append((f"pruned {args.ratio:g}, no fine-tuning", Upscaler(prune(net, args.ratio), device="cpu")))
    for f in args.finetuned:
        models.append((f"{f.name} (fine-tuned)", load_model(str(f), device="cpu")))
    imgs = set5(args.seed, args.cache, args.teacher, args.bicubic)
    lp = None if args.bicubic else LPIPS("alex", weights_dir=DATA.parent / "weights" / "lpips")

    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {n: [] for n, _ in models}
    for _, m in models:
        m.forward(x)  # warm-up
    for r in range(args.repeats):
        order = models if r % 2 == 0 else models[::-1]
        for n, m in order:
            t = time.perf_counter()
            m.forward(x)
            times[n].append(time.perf_counter() - t)

    rows = []
    for n, m in models:
        body = m._net32  # the network the upscaler runs (for counting only)
        row: dict[str, Any] = {
            "model": n, "hyperparams": dict(m.descriptor.hyperparams),
            "params": count_params(body), "macs_per_lr_px": count_macs(body, 32, 32) / 1024,
            "ms_128": statistics.median(times[n]) * 1000,
        }
        outs = [to_u8(m.upscale(to_t(im["lr"]))) for im in imgs]
        row["psnr_y_vs_hr"] = float(np.mean([psnr(o, im["hr"], crop=4) for o, im in zip(outs, imgs)]))
        if not args.bicubic:
            row["psnr_y_vs_teacher"] = float(np.mean([psnr(o, im["teacher"], crop=4) for o, im in zip(outs, imgs)]))
            row["lpips_vs_teacher"] = float(np.mean([lpips_distance(o, im["teacher"], model=lp)
                                                     for o, im in zip(outs, imgs)]))
        rows.append(row)
    base = rows[0]
    print(f"\nSet5 x4, {'bicubic' if args.bicubic else 'Real-ESRGAN-degraded'} LR (seed {args.seed}); speed: "
          f"128x128 LR, {torch.get_num_threads()} threads, median of {args.repeats}, load {os.getloadavg()}")
    q = "| PSNR-Y vs HR |" if args.bicubic else "| PSNR-Y vs teacher | LPIPS vs teacher | PSNR-Y vs HR |"
    print(f"| model | width | params | MACs/LR px | ms (128x128) | speed-up {q}")
    print("|---|---|---|---|---|---|" + "---|" * (1 if args.bicubic else 3))
    for r in rows:
        hp = r["hyperparams"]
        width = hp.get("num_feat", hp.get("n1", hp.get("d")))
        qv = (f"| {r['psnr_y_vs_hr']:.2f} |" if args.bicubic else
              f"| {r['psnr_y_vs_teacher']:.2f} | {r['lpips_vs_teacher']:.4f} | {r['psnr_y_vs_hr']:.2f} |")
        print(f"| {r['model']} | {width} | {r['params']:,} | {r['macs_per_lr_px']:,.0f} | {r['ms_128']:.1f} | "
              f"{base['ms_128'] / r['ms_128']:.2f}x {qv}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "seed": args.seed, "loadavg": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
