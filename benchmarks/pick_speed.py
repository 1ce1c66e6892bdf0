"""CPU speed of the models ``-m fast`` chooses among: per scale, every zoo model whose measured Y-PSNR (mean
of Set5, Set14, BSD100 from its card) is within 0.3 dB of the ``-m fidelity`` pick, timed side by side.

Each model runs through the path a user gets (``superres.load_model(name, device="cpu")`` then
``upscale`` of one RGB uint8 image, no tiling), one thread, interleaved: the order rotates every repeat,
medians of ``--repeats`` after one warm-up call each. Multiply-accumulates per LR pixel are counted from the
architecture (load-independent). The machine is shared: read the ratios within one scale, and the load
average printed beside them.

Run: ``python benchmarks/pick_speed.py [--size 128] [--repeats 7] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def candidates() -> dict[int, list[tuple[str, float]]]:
    """Per scale: (model, mean Y-PSNR) of the cards within the window of the fidelity pick."""
    from superres.zoo.guide import FAST_WINDOW_DB, PICKS, mean_psnr
    from superres.zoo.registry import all_cards, get_card

    out: dict[int, list[tuple[str, float]]] = {}
    for scale, best in PICKS["fidelity"].items():
        top = mean_psnr(get_card(best))
        assert top is not None
        out[scale] = [(c.name, m) for c in all_cards()
                      if c.scale == scale and (m := mean_psnr(c)) is not None and m >= top - FAST_WINDOW_DB]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="LR input side (default 128)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from superres import load_model
    from superres.archs import build
    from superres.archs.cost import count_macs
    from superres.inference.upscaler import UpscaleOptions
    from superres.zoo.registry import get_card

    rng = np.random.default_rng(0)
    img = (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)
    load_before = os.getloadavg()
    rows = []
    for scale, models in candidates().items():
        ups = {name: load_model(name, device="cpu", options=UpscaleOptions(tile=0)) for name, _ in models}
        times: dict[str, list[float]] = {name: [] for name in ups}
        for up in ups.values():
            up.upscale(img)  # warm-up (plans, caches)
        names = list(ups)
        for r in range(args.repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                ups[name].upscale(img)
                times[name].append(time.perf_counter() - t0)
        for name, psnr in models:
            card = get_card(name)
            macs = count_macs(build(card.arch, **card.hyperparams), 32, 32) / (32 * 32)
            rows.append(dict(scale=scale, model=name, mean_psnr_y=round(psnr, 3),
                             ms=round(statistics.median(times[name]) * 1000, 1),
                             spread_ms=[round(min(times[name]) * 1000, 1), round(max(times[name]) * 1000, 1)],
                             kmac_per_px=round(macs / 1000, 1)))
    load_after = os.getloadavg()
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    print(f"{cpu}, {os.cpu_count()} CPUs, {args.threads} thread(s), {args.size}x{args.size} input, torch "
          f"{torch.__version__}, medians of {args.repeats}; "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print("| scale | model | mean Y-PSNR (Set5/14/B100) | ms / image (min-max) | kMAC / LR px |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| x{r['scale']} | {r['model']} | {r['mean_psnr_y']:.3f} | {r['ms']:.0f} "
              f"({r['spread_ms'][0]:.0f}-{r['spread_ms'][1]:.0f}) | {r['kmac_per_px']:.1f} |")
    if args.json:
        meta = dict(cpu=cpu, threads=args.threads, size=args.size, repeats=args.repeats)
        args.json.write_text(json.dumps(dict(meta, load=[load_before, load_after], rows=rows), indent=1))


if __name__ == "__main__":
    main()
