"""How close is the distilled student to its teacher, and how much faster is it, on this CPU?

On Set14 and BSD100 (all of it, or the first ``--bsd100 N`` images in name order), the LR input is made from
the HR image (cropped to a multiple of 4) with the Real-ESRGAN degradation, one fixed seed per image
(``--seed`` + 1000 * dataset + index). Teacher (``realesrgan-x4plus``) outputs are cached as PNG in
``--cache`` because they cost seconds per image. For each image:

* LPIPS v0.1 (alex, superres.metrics.lpips) between the student's and the teacher's uint8 outputs;
* NIQE (MATLAB pristine model, superres.metrics.niqe, Y channel, 4-pixel border crop) of each output;
* Y-PSNR of the student against the teacher, and of both against the HR (for context only: blind-degraded
  inputs are not meant to reproduce the HR).

Speed: both models through the same engine (``superres.load_model(...).forward``: the fast fp32 CPU path,
whole input, no tiling) on the same LR crop, interleaved, one warm-up each, median of ``--repeats``; the
ratio is what to read on a shared machine. The load average is printed with the result.

Run: ``python benchmarks/distill_eval.py [--student superres-compact-x4] [--bsd100 30] [--json out.json]``
(``--teacher-only`` just fills the teacher cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from superres import load_model
from superres.data.degradations import build_degradation
from superres.metrics.lpips import LPIPS, lpips_distance
from superres.metrics.niqe import load_niqe_model, niqe
from superres.metrics.psnr_ssim import psnr

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SETS = ("Set14", "BSD100")


def read_rgb(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        return np.array(im.convert("RGB"), dtype=np.uint8)


def to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255.0)


def to_u8(t: torch.Tensor) -> np.ndarray:
    return t.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


def images(bsd100: int | None) -> list[tuple[str, int, Path]]:
    out = []
    for si, name in enumerate(SETS):
        files = sorted((DATA / name / "HR").glob("*.png"))
        if name == "BSD100" and bsd100:
            files = files[:bsd100]
        out += [(name, si, f) for f in files]
    return out


def make_lr(hr: np.ndarray, seed: int) -> np.ndarray:
    h, w = hr.shape[0] // 4 * 4, hr.shape[1] // 4 * 4
    deg = build_degradation("realesrgan", 4)
    return to_u8(deg(to_t(hr[:h, :w])[None], torch.Generator().manual_seed(seed))[0])


def timed(fn: Any, x: torch.Tensor) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="superres-compact-x4")
    ap.add_argument("--teacher", default="realesrgan-x4plus")
    ap.add_argument("--bsd100", type=int, default=30, help="first N BSD100 images (0 = all 100)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/superres-distill-eval"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--speed-size", type=int, default=128, help="LR side of the timing input")
    ap.add_argument("--teacher-only", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    teacher = load_model(args.teacher, device="cpu", precision="fp32")
    student = None if args.teacher_only else load_model(args.student, device="cpu", precision="fp32")
    lp = None if args.teacher_only else LPIPS("alex", weights_dir=DATA.parent / "weights" / "lpips")
    nq = None if args.teacher_only else load_niqe_model(DATA.parent / "weights" / "niqe" / "niqe_pris_params.npz")
    args.cache.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    speed_lr = None
    for name, si, path in images(args.bsd100 or None):
        idx = len([r for r in rows if r["set"] == name])
        seed = args.seed + 1000 * si + idx
        hr = read_rgb(path)
        stem = f"{name}_{path.stem}_s{seed}"
        lr_p, t_p = args.cache / f"{stem}_lr.png", args.cache / f"{stem}_teacher.png"
        if lr_p.is_file() and t_p.is_file():
            lr, t_out = read_rgb(lr_p), read_rgb(t_p)
        else:
            lr = make_lr(hr, seed)
            t_out = to_u8(teacher.upscale(to_t(lr)))
            Image.fromarray(lr).save(lr_p)
            Image.fromarray(t_out).save(t_p)
        if speed_lr is None and lr.shape[0] >= args.speed_size and lr.shape[1] >= args.speed_size:
            speed_lr = lr[: args.speed_size, : args.speed_size]
        if args.teacher_only:
            rows.append({"set": name})
            print(f"{stem}: teacher cached", flush=True)
            continue
        s_out = to_u8(student.upscale(to_t(lr)))
        hr_c = hr[: t_out.shape[0], : t_out.shape[1]]
        row = {
            "set": name, "image": path.stem, "lr": f"{lr.shape[1]}x{lr.shape[0]}",
            "lpips_student_teacher": lpips_distance(s_out, t_out, model=lp),
            "niqe_student": niqe(s_out, crop_border=4, model=nq),
            "niqe_teacher": niqe(t_out, crop_border=4, model=nq),
            "psnr_student_teacher": psnr(s_out, t_out, crop=4),
            "psnr_student_hr": psnr(s_out, hr_c, crop=4),
            "psnr_teacher_hr": psnr(t_out, hr_c, crop=4),
        }
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if args.teacher_only:
        return

    summary: dict[str, Any] = {}
    keys = [k for k in rows[0] if k not in ("set", "image", "lr")]
    for name in SETS + ("all",):
        sel = [r for r in rows if name == "all" or r["set"] == name]
        summary[name] = {"images": len(sel), **{k: float(np.mean([r[k] for r in sel])) for k in keys}}
        summary[name]["niqe_gap"] = summary[name]["niqe_student"] - summary[name]["niqe_teacher"]

    # speed: same engine, same input, interleaved, median of repeats
    x = to_t(speed_lr)[None]
    ts, tt = [], []
    timed(student.forward, x), timed(teacher.forward, x)  # warm-up
    for i in range(args.repeats):
        order = [(student, ts), (teacher, tt)] if i % 2 == 0 else [(teacher, tt), (student, ts)]
        for m, acc in order:
            acc.append(timed(m.forward, x))
    speed = {
        "input": f"1x3x{args.speed_size}x{args.speed_size} (crop of the first eval LR)",
        "student_s": statistics.median(ts), "teacher_s": statistics.median(tt),
        "ratio": statistics.median(tt) / statistics.median(ts), "repeats": args.repeats,
        "threads": torch.get_num_threads(), "loadavg_after": os.getloadavg(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    result = {"student": args.student, "teacher": args.teacher, "seed": args.seed,
              "bsd100_subset": args.bsd100 or 100, "summary": summary, "speed": speed,
              "lpips": "v0.1 alex (superres.metrics.lpips)", "niqe": "MATLAB pristine model, Y, crop 4",
              "rows": rows}
    print("\n| set | images | LPIPS(student, teacher) | NIQE student | NIQE teacher | gap | "
          "PSNR-Y s-vs-t | PSNR-Y s-vs-HR | PSNR-Y t-vs-HR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['images']} | {s['lpips_student_teacher']:.4f} | {s['niqe_student']:.3f} | "
              f"{s['niqe_teacher']:.3f} | {s['niqe_gap']:+.3f} | {s['psnr_student_teacher']:.2f} | "
              f"{s['psnr_student_hr']:.2f} | {s['psnr_teacher_hr']:.2f} |")
    print(f"\nspeed on {speed['input']}: student {speed['student_s'] * 1000:.1f} ms, teacher "
          f"{speed['teacher_s'] * 1000:.0f} ms, ratio {speed['ratio']:.1f}x "
          f"({speed['threads']} threads, load {speed['loadavg_after']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
