"""``superres zssr``: a thin wrapper over :func:`superres.zssr.image.zssr_image` (imported inside the
command so ``superres --help`` stays fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import typer

from ..seeds import SEED_HELP, check_seed

__all__ = ["register", "zssr_command"]


def default_checkpoint_dir(output: Path) -> Path:
    """Where a run's checkpoints live unless told: next to the output, named after it."""
    return output.parent / f"{output.name}.zssr"


def kernel_paths(output: Path) -> tuple[Path, Path]:
    """``OUT.kernel.npy`` and ``OUT.kernel.png`` (named after the output's stem, never the output itself)."""
    return output.parent / f"{output.stem}.kernel.npy", output.parent / f"{output.stem}.kernel.png"


def zssr_command(
    image: Path = typer.Argument(..., help="The image to super-resolve."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image file."),
    scale: int = typer.Option(2, "-s", "--scale", help="2, 3 or 4 (x4 runs as two x2 steps)."),
    kernel: str | None = typer.Option(
        None, "--kernel", help="The image's blur kernel: a .npy/.txt file, or 'estimate'. Default: bicubic."),
    max_time: float | None = typer.Option(None, "--max-time", help="Seconds of training (all steps together)."),
    max_steps: int = typer.Option(3000, "--max-steps", help="Training steps per x2/x3 step at most."),
    width: int = typer.Option(32, "--width", help="Network channels (64 = the paper's, ~4x slower on a CPU)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Checkpoint folder (default: OUTPUT.zssr next to the output); a rerun resumes."),
    no_ensemble: bool = typer.Option(False, "--no-ensemble", help="Skip the 8-way self-ensemble (8x faster end)."),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Zero-shot SR: train a small network on the image itself (no pretrained weights), then upscale it."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..errors import SuperresError
    from ..io.image import WRITABLE_SUFFIXES, read_image, write_image
    from .image import check_zssr_input, zssr_image
    from .kernel import load_kernel, save_kernel
    from .trainer import ZSSRConfig

    check_seed(seed)
    console = Console(stderr=True, highlight=False)
    if output.suffix.lower() not in WRITABLE_SUFFIXES:
        raise SuperresError(f"cannot write '{output}': unknown image format {output.suffix or '(no suffix)'}")
    if output.exists() and not overwrite:
        raise SuperresError(f"'{output}' exists (pass --overwrite to replace it)")
    cfg = ZSSRConfig(scale=scale, width=width, max_time=max_time, max_steps=max_steps,
                     ensemble=not no_ensemble, seed=seed)
    img = read_image(image)
    check_zssr_input(img, scale)
    kern: Any = None
    if kernel == "estimate":
        kern = "estimate"
    elif kernel:
        kern = load_kernel(kernel)
    run_dir = checkpoint or default_checkpoint_dir(output)
    stop = _StopAtStep()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        total = float(max_time) if max_time else float(max_steps * len(cfg.stages))
        task = bar.add_task("zssr: estimating kernel" if kern == "estimate" else "zssr", total=total, info="")

        def on_step(p: Any) -> None:
            stop.check()  # a Ctrl-C stops here, between steps, where the checkpoint written is consistent
            done = p.elapsed if max_time else p.stage * p.max_steps + p.step
            err = f"  err {p.error:.4f}" if p.error is not None else ""
            bar.update(task, completed=min(done, total), description=f"zssr x{scale} step {p.stage + 1}/{p.stages}",
                       info=f"iter {p.step}  lr {p.lr:.0e}{err}")

        with stop:
            result = zssr_image(img, cfg, kern, checkpoint_dir=run_dir, progress=on_step)
    if result.estimate is not None or (kern is not None and kernel != "estimate"):
        npy, png = kernel_paths(output)
        save_kernel(result.kernel, npy, png)  # type: ignore[arg-type]
        if result.estimate is not None:
            e = result.estimate
            narrowed = (f" (search found {e.raw_sigma_x:.2f} x {e.raw_sigma_y:.2f}, narrowed x{e.shrink:g} for ZSSR)"
                        if e.shrink != 1.0 else "")
            console.print(f"estimated kernel: Gaussian sigma {e.sigma_x:.2f} x {e.sigma_y:.2f} px{narrowed}, "
                          f"angle {e.theta * 57.29578:.0f} deg -> {npy} (view: {png})")
        else:
            console.print(f"kernel used -> {npy} (view: {png})")
    write_image(result.image, output, overwrite=overwrite)
    r = result.run
    resumed = f", resumed from step {r.resumed_from}" if r.resumed_from is not None else ""
    console.print(f"{output}: {result.image.size[0]}x{result.image.size[1]}, {sum(r.steps)} steps, "
                  f"{r.train_seconds:.1f} s training, {r.total_seconds:.1f} s in all{resumed}; "
                  f"image's net: {r.checkpoint or run_dir}")


class _StopAtStep:
    """While active, the first Ctrl-C only asks training to stop at the end of the current step (where the
    trainer saves a checkpoint); a second one interrupts at once, as usual."""

    def __init__(self) -> None:
        self.asked = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True

    def check(self) -> None:
        if self.asked:
            raise KeyboardInterrupt

    def __enter__(self) -> Self:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def register(app: typer.Typer, friendly: Any) -> None:
    app.command("zssr")(friendly(zssr_command))
