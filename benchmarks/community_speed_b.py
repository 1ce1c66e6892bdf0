"""CPU speed of our HAT, ATD and CRAFT beside their upstream code (spandrel's copy), on the same weights.

For each official configuration (random weights: only the work matters here), one LR input, the same
threads: our network and, when ``--spandrel`` is given, the upstream implementation loaded with the same
state dict, timed interleaved (the order alternates every repeat), medians of ``--repeats`` after a warm-up.
The ratio (upstream time / ours) is the number to read: both run side by side on the same machine, so the
load of a shared machine cancels out better than in the absolute times. The outputs are compared too
(max abs difference), so a speed-up never hides a different answer. SwinIR-light and SPAN x4, from this
repository, give the scale of "fast enough": what the zoo's existing transformer and CNN cost on the input.
ATD's difference is not zero by design: upstream orders the pixels of a category with torch's unstable sort,
ours keeps image order (see ``superres.archs.atd``); the fixture test compares with upstream made stable.

Run:
    python benchmarks/community_speed_b.py [--size 64] [--threads 2] [--repeats 3] \\
        [--spandrel /tmp/sp/sp --deps /tmp/sp/deps]    # see benchmarks/fixtures/make_archb_fixtures.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from superres.archs import build  # noqa: E402

# label -> (our arch, our hyper-parameters, spandrel folder/module/class, spandrel kwargs)
_HAT = dict(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=16, compress_ratio=3,
            squeeze_factor=30, mlp_ratio=2.0, scale=4)
_ATD = dict(embed_dim=210, depths=[6] * 6, num_heads=[6] * 6, window_size=16, category_size=256,
            num_tokens=128, reducted_dim=20, convffn_kernel_size=5, mlp_ratio=2.0, scale=4)
_ATD_LIGHT = dict(embed_dim=48, depths=[6] * 4, num_heads=[4] * 4, window_size=16, category_size=128,
                  num_tokens=64, reducted_dim=8, convffn_kernel_size=7, mlp_ratio=1.0, scale=4,
                  upsampler="pixelshuffledirect")
_CRAFT = dict(embed_dim=48, depths=[2] * 4, num_heads=[6] * 4, split_size_0=4, split_size_1=16, mlp_ratio=2.0,
              scale=4)


def _up_hat(hp: dict[str, Any]) -> dict[str, Any]:
    return dict(img_size=64, embed_dim=hp["embed_dim"], depths=hp["depths"], num_heads=hp["num_heads"],
                window_size=hp["window_size"], compress_ratio=hp["compress_ratio"],
                squeeze_factor=hp["squeeze_factor"], mlp_ratio=hp["mlp_ratio"], upscale=hp["scale"],
                upsampler="pixelshuffle", resi_connection="1conv")


def _up_atd(hp: dict[str, Any]) -> dict[str, Any]:
    return dict(img_size=64, embed_dim=hp["embed_dim"], depths=hp["depths"], num_heads=hp["num_heads"],
                window_size=hp["window_size"], category_size=hp["category_size"], num_tokens=hp["num_tokens"],
                reducted_dim=hp["reducted_dim"], convffn_kernel_size=hp["convffn_kernel_size"],
                mlp_ratio=hp["mlp_ratio"], upscale=hp["scale"],
                upsampler=hp.get("upsampler", "pixelshuffle"), resi_connection="1conv")


def _up_craft(hp: dict[str, Any]) -> dict[str, Any]:
    return dict(embed_dim=hp["embed_dim"], depths=hp["depths"], num_heads=hp["num_heads"],
                split_size_0=hp["split_size_0"], split_size_1=hp["split_size_1"], mlp_ratio=hp["mlp_ratio"],
                upscale=hp["scale"], window_size=16)


CASES: dict[str, tuple[str, dict[str, Any], tuple[str, str, str] | None, Callable[..., dict] | None]] = {
    "HAT x4": ("hat", _HAT, ("HAT", "HAT", "HAT"), _up_hat),
    "ATD x4": ("atd", _ATD, ("ATD", "atd_arch", "ATD"), _up_atd),
    "ATD-light x4": ("atd", _ATD_LIGHT, ("ATD", "atd_arch", "ATD"), _up_atd),
    "CRAFT x4": ("craft", _CRAFT, ("CRAFT", "CRAFT", "CRAFT"), _up_craft),
    "SwinIR-light x4": ("swinir", dict(embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, window_size=8,
                                       upsampler="pixelshuffledirect", img_size=64, scale=4), None, None),
    "SPAN x4": ("span", dict(scale=4), None, None),
}


def _time(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64, help="LR side (pixels)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--spandrel", type=Path, help="unpacked spandrel 0.4.2 wheel (folder holding spandrel/)")
    ap.add_argument("--deps", type=Path, help="folder with einops importable (spandrel's HAT/CRAFT need it)")
    ap.add_argument("--only", nargs="*", help="labels to run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.spandrel:
        import make_archb_fixtures as fx

        fx.import_spandrel(args.spandrel, args.deps or args.spandrel)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    print(f"CPU: {cpu}; torch {torch.__version__}; threads {args.threads}; LR {args.size}x{args.size}; "
          f"load before: {os.getloadavg()[0]:.1f}")
    print(f"{'model':<16} {'params':>8} {'ours s':>8} {'upstream s':>10} {'upstream/ours':>13} "
          f"{'max |diff|':>10}")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, args.size, args.size, generator=g)
    for label, (arch, hp, up, up_kwargs) in CASES.items():
        if args.only and label not in args.only:
            continue
        torch.manual_seed(0)
        ours = build(arch, **hp).eval()
        params = sum(p.numel() for p in ours.parameters())
        ref = None
        if args.spandrel and up is not None and up_kwargs is not None:
            import make_archb_fixtures as fx

            ref = fx.arch_class(args.spandrel, *up)(**up_kwargs(hp)).eval()
            ref.load_state_dict(ours.state_dict())
        with torch.inference_mode():
            y = ours(x)  # warm-up
            diff = float((ref(x) - y).abs().max()) if ref is not None else float("nan")
            t_ours, t_ref = [], []
            for r in range(args.repeats):
                pair = [("ours", ours), ("ref", ref)] if r % 2 == 0 else [("ref", ref), ("ours", ours)]
                for name, net in pair:
                    if net is None:
                        continue
                    (t_ours if name == "ours" else t_ref).append(_time(lambda n=net: n(x)))
        mo = statistics.median(t_ours)
        mr = statistics.median(t_ref) if t_ref else float("nan")
        print(f"{label:<16} {params / 1e6:7.2f}M {mo:8.2f} {mr:10.2f} {mr / mo:13.2f} {diff:10.2e}",
              flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
