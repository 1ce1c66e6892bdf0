"""``superres eval``: benchmark models on the standard test sets and print or write the table.

Registered in ``superres/cli.py`` through :func:`register`; kept in its own module
so that the evaluation options live next to the evaluation code. Thin: parses the comma-separated lists,
calls :func:`superres.eval.runner.evaluate`, renders with :mod:`superres.eval.report`, and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import SuperresError
from ..loading import backend_help
from .metrics import metrics_help

__all__ = ["eval_command", "parse_list", "parse_scales", "register"]


def parse_list(text: str, what: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; an empty list is an error naming the option."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise SuperresError(f"{what} is empty")
    return items


def parse_scales(text: str) -> list[int]:
    out = []
    for t in parse_list(text, "--scales"):
        if not t.lstrip("xX").isdigit() or int(t.lstrip("xX")) < 1:
            raise SuperresError(f"--scales takes positive integers like 2,3,4, not {t!r}")
        out.append(int(t.lstrip("xX")))
    return out


def _parse_box(text: Optional[str]) -> Optional[tuple[int, int, int, int]]:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise SuperresError(f"--figure-box takes x,y,width,height in HR pixels, not {text!r}")
    x, y, w, h = (int(p) for p in parts)
    return x, y, w, h


def eval_command(
    models: str = typer.Option("bicubic-rgb", "-m", "--models", "--model",
                               help="Comma-separated: bicubic (the published protocol), bicubic-rgb, zoo names, "
                                    "fidelity (the most faithful native model per scale) or weights files; a zoo "
                                    "model runs its family's native member at each scale (span-x4 at -s 2: "
                                    "span-ch48-x2)."),
    scales: Optional[str] = typer.Option(None, "-s", "--scales", "--scale",
                                         help="Comma-separated scales, e.g. 2,3,4 (default: the models' own)."),
    datasets: str = typer.Option("Set5,Set14,BSD100", "-d", "--datasets", "--dataset",
                                 help="Comma-separated: Set5, Set14, BSD100 (B100), Urban100, Manga109, "
                                      "DIV2K-valid, or folders of HR images."),
    metrics: str = typer.Option("psnr,ssim", "--metrics", help=metrics_help()),
    self_ensemble: bool = typer.Option(False, "--self-ensemble", help="x8 flips/rotations averaged (networks only)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f",
                                      help="table, markdown, csv or json (default: from --output's suffix, else table)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the report to this file."),
    figures: Optional[Path] = typer.Option(None, "--figures", help="Folder for comparison sheets and quality plots."),
    figure_count: int = typer.Option(3, "--figure-count", help="Comparison sheets per dataset and scale."),
    figure_box: Optional[str] = typer.Option(None, "--figure-box",
                                             help="Crop for the sheets as x,y,width,height in HR pixels "
                                                  "(default: the most detailed quarter-size square)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root",
                                             help="Folder holding the named datasets (default: $SUPERRES_DATA, "
                                                  "../shared/data, ~/.cache/superres/data)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, mps or auto."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (the protocol), fp16 or bf16."),
    tile: int = typer.Option(0, "--tile", help="LR tile size; 0 = whole images (exact protocol)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images of each dataset."),
    images: Optional[str] = typer.Option(None, "--images", help="Only these images (comma-separated file stems, "
                                         "e.g. baboon,comic)."),
    grey: str = typer.Option("y", "--grey", help="How a grey test image (Set14 bridge) is scored: y = its values "
                             "are Y (MATLAB-era scripts, the published bicubic rows); rgb = repeated to RGB, then Y, "
                             "as BasicSR and LIIF do (DAT, SPAN, SwinIR, LIIF tables; +0.09 dB on a Set14 mean)."),
    per_image: bool = typer.Option(False, "--per-image", help="Per-image rows instead of means (table/markdown/csv)."),
    layout: str = typer.Option("long", "--layout", help="Markdown layout: long, or paper (a table per scale)."),
    lpips_dir: Optional[Path] = typer.Option(None, "--lpips-dir", help="LPIPS weights folder (default: $SUPERRES_LPIPS_DIR)."),
    niqe_params: Optional[Path] = typer.Option(None, "--niqe-params",
                                               help="niqe_pris_params.npz (default: $SUPERRES_NIQE_PARAMS)."),
    download: bool = typer.Option(False, "--download", help="Allow fetching official zoo weights (hash-pinned)."),
    backend: str = typer.Option("torch", "--backend", help=backend_help()),
    rows: Optional[Path] = typer.Option(None, "--rows", help="Append each image's scores to this JSON-lines "
                                        "file as they finish; rerun with the same file to resume (default with "
                                        "-o: <output>.rows.jsonl, removed once the report is written)."),
) -> None:
    """Benchmark models on Set5/Set14/BSD100/... with the literature's protocol (PSNR/SSIM on Y, crop = scale)."""
    from .report import FORMATS, format_for_path, render, rich_table, write_report
    from .runner import evaluate

    model_list = parse_list(models, "--models")
    dataset_list = parse_list(datasets, "--datasets")
    metric_list = [m.lower() for m in parse_list(metrics, "--metrics")]
    chosen = fmt or (format_for_path(output) if output is not None else "table")
    if chosen not in FORMATS:
        raise SuperresError(f"--format must be one of {', '.join(FORMATS)}, not {chosen!r}")
    if layout not in ("long", "paper"):
        raise SuperresError(f"--layout must be 'long' or 'paper', not {layout!r}")
    if limit is not None and limit < 1:
        raise SuperresError(f"--limit must be at least 1, not {limit}")
    box = _parse_box(figure_box)
    if figures is not None:
        from .figures import require_matplotlib

        require_matplotlib()  # fail now, not after the run, if matplotlib is missing
    scale_list = parse_scales(scales) if scales else None  # None: each network's own scale

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                  TimeRemainingColumn(), TextColumn("{task.description}"), transient=True,
                  console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("", total=None)

        plain = not sys.stderr.isatty()

        def on_progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)
            if plain:  # a log file or a pipe: one line per image instead of a bar
                typer.echo(f"eval {done}/{total} {label}", err=True)

        rows_path = rows if rows is not None else (
            output.with_name(output.name + ".rows.jsonl") if output is not None else None)

        result = evaluate(
            model_list, dataset_list, scale_list, metrics=metric_list, self_ensemble=self_ensemble, device=device,
            precision=precision, tile=tile, data_root=data_root, limit=limit,
            keep_samples=figure_count if figures is not None else 0,
            lpips_dir=str(lpips_dir) if lpips_dir else None, niqe_params=str(niqe_params) if niqe_params else None,
            allow_download=download, progress=on_progress, backend=backend, rows_path=rows_path,
            images=parse_list(images, "--images") if images is not None else None,
            grey=grey,
        )

    kwargs: dict[str, Any] = {"per_image": per_image, "layout": layout}
    if output is not None:
        write_report(result, output, chosen, **kwargs)
        typer.echo(f"wrote {output} ({chosen})")
        if rows is None and rows_path is not None:
            rows_path.unlink(missing_ok=True)  # the report holds every row now
    elif chosen == "table":
        # A pipe or file gets the whole table; a terminal its own width.
        Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(
            rich_table(result, per_image=per_image))
    else:
        typer.echo(render(result, chosen, **kwargs), nl=False)
    if figures is not None:
        from .figures import comparison_sheets, quality_plots

        sheets = comparison_sheets(result, figures, count=figure_count, box=box) if result.samples else []
        plots = quality_plots(result, figures) if result.summary and "psnr" in metric_list else []
        typer.echo(f"wrote {len(sheets)} comparison sheet(s) and {len(plots)} plot(s) to {figures}")


def register(app: typer.Typer, friendly: Any) -> None:
    """Add ``superres eval`` to the command line."""
    app.command("eval", help="Evaluate models on benchmark sets: PSNR/SSIM on Y, LPIPS, NIQE, tables, figures.")(
        friendly(eval_command)
    )
