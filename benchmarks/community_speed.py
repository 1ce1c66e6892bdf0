"""CPU time of our community architectures (part A) against spandrel 0.4.2's on the same weights and input.

Not a test: prints one table. Official-size hyper-parameters, random weights, one 3 x H x W input, fp32,
``torch.no_grad``; per model a warm-up then the median of ``--repeats`` runs, ours and spandrel's
alternating so that load drifts hit both alike. The ratio (spandrel / ours) is what to read on a shared
machine; the seconds carry its load.

    python benchmarks/community_speed.py /tmp/sp/pkg /tmp/sp/deps [--size 64] [--repeats 3] [--threads 2]

(spandrel unpacked as ``benchmarks/fixtures/community_archa.py`` describes.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from community_archa import _cls, _spandrel  # noqa: E402

# (label, our arch, our hyper-parameters, spandrel module, class, its kwargs)
MODELS = [
    (
        "OmniSR x4 (official)",
        "omnisr",
        dict(scale=4, num_feat=64, block_num=1, res_num=5, window_size=8),
        "OmniSR.__arch.OmniSR",
        "OmniSR",
        dict(num_feat=64, block_num=1, res_num=5, window_size=8, up_scale=4),
    ),
    (
        "SAFMN x4 (official)",
        "safmn",
        dict(scale=4, dim=36, n_blocks=8),
        "SAFMN.__arch.safmn",
        "SAFMN",
        dict(dim=36, n_blocks=8, upscaling_factor=4),
    ),
    (
        "PLKSR-tiny x4",
        "plksr",
        dict(scale=4, dim=64, n_blocks=12, ccm_type="DCCM", kernel_size=13),
        "PLKSR.__arch.PLKSR",
        "PLKSR",
        dict(dim=64, n_blocks=12, upscaling_factor=4, ccm_type="DCCM", kernel_size=13),
    ),
    (
        "RealPLKSR x4 (neosr default)",
        "realplksr",
        dict(scale=4),
        "PLKSR.__arch.RealPLKSR",
        "RealPLKSR",
        dict(upscaling_factor=4),
    ),
    (
        "Swin2SR-light x4",
        "swin2sr",
        dict(scale=4, embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, upsampler="pixelshuffledirect"),
        "Swin2SR.__arch.Swin2SR",
        "Swin2SR",
        dict(
            embed_dim=60,
            depths=[6] * 4,
            num_heads=[6] * 4,
            window_size=8,
            mlp_ratio=2.0,
            upscale=4,
            upsampler="pixelshuffledirect",
        ),
    ),
]


def _time(fn, x: torch.Tensor) -> float:
    t = time.perf_counter()
    with torch.no_grad():
        fn(x)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pkg")
    ap.add_argument("deps")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    _spandrel(a.pkg, a.deps)
    torch.set_num_threads(a.threads)
    from superres.archs import build

    print(
        f"torch {torch.__version__}, {a.threads} threads, input 3x{a.size}x{a.size}, load {os.getloadavg()}"
    )
    print("| model | ours (s) | spandrel (s) | spandrel / ours | max abs diff |")
    print("|---|---|---|---|---|")
    for label, arch, hp, module, cls, kw in MODELS:
        if a.only and a.only not in arch:
            continue
        torch.manual_seed(0)
        theirs = _cls(module, cls)(**kw).eval()
        ours = build(arch, **hp).eval()
        ours.load_state_dict(theirs.state_dict(), strict=True)
        x = torch.rand(1, 3, a.size, a.size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            diff = float((ours(x) - theirs(x)).abs().max())  # also the warm-up
        t_ours, t_theirs = [], []
        for _ in range(a.repeats):
            t_ours.append(_time(ours, x))
            t_theirs.append(_time(theirs, x))
        mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
        print(f"| {label} | {mo:.3f} | {mt:.3f} | {mt / mo:.2f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
