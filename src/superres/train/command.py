"""``superres train`` and ``superres publish``: run a recipe, continue a run, ship a run as a zoo model.

Registered in ``superres/cli.py`` through :func:`register`. Imports only typer and the standard library at
module level (``superres --help`` must not import torch); the trainer is imported inside the commands.

Multi-GPU: launch the same command under torchrun, e.g.
``torchrun --nproc_per_node 4 -m superres.cli train configs/edsr_baseline_x4.yaml`` (see
:mod:`superres.train.distributed`); ``train.batch_size`` is the global batch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from ..errors import SuperresError

__all__ = ["publish_command", "register", "split_args", "train_command"]


def split_args(args: list[str], resuming: bool) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]`` -> (config or None, overrides). With ``--resume`` the config may be
    left out; an argument with ``=`` that is not an existing file is an override."""
    if not args:
        if resuming:
            return None, []
        raise SuperresError("give a recipe, e.g. superres train configs/edsr_baseline_x4.yaml (or --resume RUN)")
    first = args[0]
    if "=" in first and not Path(first).is_file():
        if not resuming:
            raise SuperresError(f"the first argument must be a recipe file, not the override {first!r}")
        return None, list(args)
    return first, list(args[1:])


def train_command(
    args: list[str] = typer.Argument(None, metavar="CONFIG [KEY=VALUE...]",
                                     help="Recipe YAML, then dotted overrides such as train.batch_size=8."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue this run folder (or checkpoint folder)."),
    max_time: float | None = typer.Option(None, "--max-time", help="Wall-clock budget in seconds for this "
                                             "invocation; stops with a checkpoint."),
    out: Path = typer.Option(Path("runs"), "--out", help="Parent folder of new runs."),
    name: str | None = typer.Option(None, "--name", help="Run folder name (default: recipe-date-time)."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Value of ${data} in recipes (default: "
                                             "$SUPERRES_DATA, else ../shared/data)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved recipe and exit."),
) -> None:
    """Train a model from a recipe (YAML), with overrides, resumable, under torchrun for several GPUs."""
    import os

    config_path, overrides = split_args(list(args or []), resume is not None)
    from .config import dump_config, load_config

    cfg = None
    if config_path is not None:
        cfg = load_config(config_path, overrides, data_root=data_root)
    elif overrides:
        from .checkpoint import resolve_checkpoint

        assert resume is not None
        saved = resolve_checkpoint(resume).parent.parent / "config.yaml"
        if not saved.is_file():
            raise SuperresError(f"'{saved}' not found; pass the recipe file before the overrides")
        cfg = load_config(saved, overrides, data_root=data_root)
    if print_config:
        if cfg is None:
            raise SuperresError("--print-config needs a recipe")
        typer.echo(dump_config(cfg), nl=False)
        return

    import logging

    from .trainer import train

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if rank == 0 and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.description}"),
                       console=Console(stderr=True))
        task = bar.add_task("", total=None)

        def on_progress(it: int, total: int, info: dict[str, float]) -> None:
            desc = None
            if info:
                parts = [f"loss {info.get('loss/total', float('nan')):.4f}", f"lr {info.get('lr', 0):.2e}",
                         f"{info.get('it_per_s', 0):.2f} it/s"]
                if "val/psnr_y" in info:
                    parts.append(f"val {info['val/psnr_y']:.2f} dB")
                desc = "  ".join(parts)
            bar.update(task, completed=it, total=total, **({"description": desc} if desc else {}))

        with bar:
            result = train(cfg, out=out, name=name, resume=resume, max_time=max_time, progress=on_progress)
    else:
        result = train(cfg, out=out, name=name, resume=resume, max_time=max_time)
    if rank != 0:
        return
    typer.echo(f"{result.stopped} at iteration {result.iteration}/{result.total} after "
               f"{result.train_seconds:.0f}s of training; run folder {result.run_dir}")
    if result.metrics:
        at = int(result.metrics.get("iteration", result.iteration))
        when = "" if at == result.iteration else f" (last measured at iteration {at})"
        typer.echo(f"validation{when}: Y-PSNR {result.metrics['psnr_y']:.3f} dB, SSIM {result.metrics['ssim_y']:.4f}")
    if not result.finished:
        typer.echo(f"continue with: superres train --resume {result.run_dir}")
    else:
        typer.echo(f"publish with: superres publish {result.run_dir} --name NAME")
    if result.stopped == "interrupted":
        raise typer.Exit(130)


def publish_command(
    run: Path = typer.Argument(..., help="Run folder (its newest checkpoint) or a checkpoint folder."),
    name: str = typer.Option(..., "--name", help="Model name, e.g. edsr-baseline-x4-t91."),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Folder for <name>.safetensors/.json "
                                           "(default: the package's zoo/weights, so `superres models` lists it)."),
    plain: bool = typer.Option(False, "--plain", help="Publish the plain weights instead of the EMA weights."),
    datasets: str = typer.Option("Set5,Set14,BSD100", "--datasets", help="Measured for the card; '' skips."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Where the named test sets live."),
    device: str = typer.Option("cpu", "--device", help="Device for the measurement."),
    title: str | None = typer.Option(None, "--title"),
    description: str = typer.Option("", "--description"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model of that name."),
    lpips: bool | None = typer.Option(None, "--lpips/--no-lpips", help="Put LPIPS on the card too "
                                      "(default: for GAN-trained runs)."),
    lpips_dir: Path | None = typer.Option(None, "--lpips-dir", help="Folder with the LPIPS weights "
                                          "(default: $SUPERRES_LPIPS_DIR, the cache)."),
) -> None:
    """Write a run's weights as a small safetensors file plus a model card with measured metrics."""
    from .publish import DEFAULT_PUBLISH_DIR, publish

    sets = [s.strip() for s in datasets.split(",") if s.strip()]
    w, c = publish(run, name, out_dir or DEFAULT_PUBLISH_DIR, use_ema=not plain, datasets=sets,
                   data_root=data_root, device=device, title=title, description=description, overwrite=overwrite,
                   lpips=lpips, lpips_dir=lpips_dir)
    typer.echo(f"wrote {w} and {c}")
    import json

    metrics = json.loads(c.read_text()).get("metrics", {})
    for ds, m in metrics.items():
        if isinstance(m, dict) and "psnr_y" in m:
            extra = f", LPIPS {m['lpips']:.4f}" if "lpips" in m else ""
            typer.echo(f"  {ds}: Y-PSNR {m['psnr_y']:.3f} dB, SSIM {m['ssim_y']:.4f}{extra}")


def register(app: typer.Typer, friendly: Any) -> None:
    """Add ``superres train`` and ``superres publish`` to the command line."""
    app.command("train", help="Train a super-resolution model from a YAML recipe (resumable; DDP via torchrun).")(
        friendly(train_command))
    app.command("publish", help="Ship a training run as a zoo model: safetensors + model card with metrics.")(
        friendly(publish_command))
