"""``superres export``, ``superres bench`` and ``superres realtime``.

Registered by ``superres/cli.py`` through :func:`register`. Only typer, the standard library and
``superres.errors`` at top level, so ``superres --help`` stays instant; the runtimes load inside commands.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import SuperresError, did_you_mean
from ..loading import backend_help

__all__ = ["register"]


def export_command(
    model: str = typer.Argument(..., help="Zoo model name or weights file."),
    out: Path = typer.Argument(..., help="Output file: .onnx, .xml (OpenVINO IR), .engine (TensorRT) or .param "
                               "(ncnn, with .bin and .json beside it)."),
    fp16: bool = typer.Option(False, "--fp16", help="fp16 weights and arithmetic (I/O stays float32)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 static quantization (needs --calib)."),
    calib: Optional[Path] = typer.Option(
        None, "--calib", help="Folder of photos for INT8 calibration (e.g. T91)."
    ),
    calib_count: int = typer.Option(32, "--calib-count", help="LR crops used for calibration."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (>= 13)."),
    download: bool = typer.Option(False, "--download", help="Allow fetching official weights."),
) -> None:
    """Export a model: float32 NCHW RGB [0,1] in and out, dynamic height/width, metadata inside."""
    from ..deploy.export import build_tensorrt, export_onnx, export_openvino, read_metadata

    if fp16 and int8:
        raise SuperresError("choose one of --fp16 and --int8")
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    suffix = out.suffix.lower()
    if suffix == ".onnx":
        export_onnx(
            model,
            out,
            opset=opset,
            precision=precision,
            calib=calib,
            calib_count=calib_count,
            allow_download=download,
        )
    elif suffix == ".xml":
        export_openvino(model, out, opset=opset, precision=precision, calib=calib, allow_download=download)
    elif suffix in (".engine", ".plan", ".trt"):
        import tempfile

        from ..deploy.common import require

        require("tensorrt", "building a TensorRT engine (NVIDIA GPUs only)")  # fail before exporting
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(model, Path(tmp) / "model.onnx", opset=opset, allow_download=download)
            build_tensorrt(onnx_path, out, fp16=fp16 or not int8)
    elif suffix == ".param":
        from ..deploy.ncnn_runtime import export_ncnn_model

        if fp16 or int8:
            raise SuperresError("an ncnn export stores fp32 weights; the runtime chooses fp16 (--precision)")
        export_ncnn_model(model, out, allow_download=download)
    else:
        raise SuperresError(f"output must end in .onnx, .xml, .engine or .param, not '{out.name}'")
    if suffix == ".param":
        from ..deploy.ncnn_export import read_ncnn_metadata

        meta = read_ncnn_metadata(out)
    else:
        meta = read_metadata(out) if suffix in (".onnx", ".xml") else {}
    desc = f" ({meta.get('arch')} x{meta.get('scale')}, {meta.get('precision')})" if meta else ""
    typer.echo(f"wrote {out}{desc}")


def bench_command(
    models: str = typer.Option(
        "realesr-animevideov3", "-m", "--models", help="Comma-separated zoo names or weights files."
    ),
    backends: str = typer.Option(
        "auto,torch,onnxruntime,openvino", "-b", "--backends",
        help="Comma-separated (auto: the default path of superres upscale); " + backend_help()
    ),
    sizes: str = typer.Option("128,256", "-s", "--sizes", help="Comma-separated LR sides in pixels."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs per case (median reported)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Also write the Markdown table here."),
    devices: bool = typer.Option(False, "--devices", help="List the Vulkan devices the ncnn backend can use "
                                 "(name, kind, memory budget) and exit."),
) -> None:
    """Time backends x models x sizes: ms, LR megapixels/s, GFLOP/s against a measured matmul peak, memory."""
    from ..eval.speed import bench, to_markdown
    from ..loading import backend_names

    if devices:
        from ..deploy.ncnn_runtime import NO_VULKAN, list_devices

        found = list_devices()
        for dev in found:
            typer.echo(dev.describe())
        if not found:
            typer.echo(f"none: {NO_VULKAN}")
        return

    known = backend_names()
    from ..eval.command import parse_list

    backend_list = parse_list(backends, "--backends")
    for b in backend_list:
        if b not in known:
            raise SuperresError(f"--backends takes {', '.join(known)}, not {b!r}{did_you_mean(b, known)}")
    size_list = []
    for s in parse_list(sizes, "--sizes"):
        if not s.isdigit() or int(s) < 1:
            raise SuperresError(f"--sizes takes positive integers like 128,256, not {s!r}")
        size_list.append(int(s))
    if repeats < 1:
        raise SuperresError(f"--repeats must be at least 1, not {repeats}")
    rows, peak = bench(
        parse_list(models, "--models"),
        backend_list,
        size_list,
        repeats=repeats,
        progress=lambda label: typer.echo(f"  {label}", err=True),
    )
    text = to_markdown(rows, peak)
    typer.echo(text, nl=False)
    if output is not None:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


def realtime_command(
    source: str = typer.Argument(..., help="Video file, or a camera: /dev/videoN or N."),
    model: Optional[str] = typer.Option(
        None, "-m", "--model",
        help="Zoo model, weights or exported file (default: realesr-animevideov3 on a GPU, espcn-r-x4 on a CPU).",
    ),
    backend: str = typer.Option("torch", "--backend", help=backend_help()),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps (torch backend); "
                               "vulkan, vulkan:N or cpu (ncnn backend)."),
    queue_size: int = typer.Option(2, "--queue", help="Frames waiting at most; older ones are dropped."),
    pace: bool = typer.Option(True, "--pace/--no-pace", help="Feed a file at its frame rate, like a camera."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Pace at this rate instead of the file's."),
    drop: bool = typer.Option(
        True, "--drop/--no-drop", help="Drop frames when behind (live) or wait (throughput)."
    ),
    max_frames: Optional[int] = typer.Option(None, "--frames", help="Stop after this many input frames."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Upscale a live stream: background inference, bounded queue, frame dropping; reports FPS and latency."""
    import json

    from ..deploy.realtime import is_camera, open_frames, retain_freed_memory, run_realtime, upscaler_infer
    from ..loading import load_model

    retain_freed_memory()  # reuse the per-frame buffers instead of mapping them anew (see its docstring)
    dev = device if backend in ("torch", "ncnn") else "cpu"  # ncnn: its Vulkan device, or --device cpu
    if model is None:  # the fastest model that is still +1 dB over bicubic on a CPU; the video model on a GPU
        from ..inference.devices import pick_device

        gpu = dev.lower() != "cpu" if backend == "ncnn" else pick_device(dev).type == "cuda"
        model = "realesr-animevideov3" if gpu else "espcn-r-x4"
    up = load_model(model, device=dev, backend=backend)
    frames, rate = open_frames(source)
    pace_fps = fps or (rate if pace and not is_camera(source) else None)
    infer = upscaler_infer(up)
    first = next(frames, None)
    if first is None:
        raise SuperresError(f"'{source}' has no frames")
    infer(first)  # warm-up outside the clock: first-call set-up would otherwise show as dropped frames
    stats = run_realtime(
        itertools.chain([first], frames), infer, queue_size=queue_size, drop=drop, pace_fps=pace_fps,
        max_frames=max_frames,
    )
    if as_json:
        typer.echo(
            json.dumps({"model": up.name, "backend": backend, "pace_fps": pace_fps, **stats.as_dict()})
        )
    else:
        typer.echo(f"{up.name} via {backend}: {stats.summary()}")


def register(app: typer.Typer, friendly: Any) -> None:
    """Add the deployment commands to the command line."""
    app.command("export", help="Export a model to ONNX (fp32/fp16/int8), OpenVINO IR or TensorRT.")(
        friendly(export_command)
    )
    app.command("bench", help="Benchmark backends x models x sizes; Markdown table.")(friendly(bench_command))
    app.command("realtime", help="Real-time upscaling of a video file or camera with frame dropping.")(
        friendly(realtime_command)
    )
