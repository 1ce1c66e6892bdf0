"""``superres serve`` (HTTP API + web page) and ``superres batch`` (folders, locally or on a Ray cluster).

Registered in ``superres/cli.py`` through :func:`register`. Only typer, the standard library,
``superres.errors`` and the defaults table ``superres.zoo.guide`` are imported here; FastAPI, uvicorn, torch
and Ray load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import SuperresError, install_hint
from ..zoo.guide import COMMAND_DEFAULTS

__all__ = ["batch_command", "register", "serve_command"]


def serve_command(
    host: Optional[str] = typer.Option(
        None, "--host", help="Address to bind (default 127.0.0.1: this machine only)."
    ),
    port: Optional[int] = typer.Option(None, "--port", help="TCP port (default 8000; 0 = any free port)."),
    models: Optional[str] = typer.Option(
        None,
        "--models",
        "-m",
        help="Comma-separated zoo names or weights files (default: the picks `superres models` marks that "
        "are available offline, except research-only weights and whole-image models; "
        f"{COMMAND_DEFAULTS['serve']} answers requests that name no model).",
    ),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps; vulkan or "
                                         "vulkan:N with --backend ncnn."),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto, fp32, fp16 or bf16."),
    backend: Optional[str] = typer.Option(None, "--backend", help="torch (default) or another row of the "
                                          "backend table, e.g. ncnn for a Vulkan GPU of any vendor."),
    tile: Optional[int] = typer.Option(
        None, "--tile", help="LR tile size (0 = none; default from free memory)."
    ),
    max_bytes: Optional[int] = typer.Option(None, "--max-bytes", help="Largest request body in bytes (413)."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", help="Largest input image for jobs (413)."
    ),
    sync_max_pixels: Optional[int] = typer.Option(
        None, "--sync-max-pixels", help="Largest input for POST /v1/upscale (413; use jobs above)."
    ),
    max_output_pixels: Optional[int] = typer.Option(
        None, "--max-output-pixels", help="Largest output (422)."
    ),
    concurrent_jobs: Optional[int] = typer.Option(None, "--concurrent-jobs", help="Inference threads."),
    queue_length: Optional[int] = typer.Option(
        None, "--queue-length", help="Work waiting beyond those (429)."
    ),
    max_jobs: Optional[int] = typer.Option(
        None, "--max-jobs", help="Job records kept until they expire (429)."
    ),
    request_timeout: Optional[float] = typer.Option(
        None, "--request-timeout", help="Seconds a synchronous upscale may take (503)."
    ),
    job_ttl: Optional[float] = typer.Option(
        None, "--job-ttl", help="Seconds a finished job's result is kept."
    ),
    tmp_dir: Optional[Path] = typer.Option(None, "--tmp-dir", help="Where the server makes its private work folder "
                                          "(uploads, job results); nothing else in it is touched."),
    log_level: Optional[str] = typer.Option(None, "--log-level", help="debug, info, warning, error."),
    study: Optional[Path] = typer.Option(
        None, "--study", help="Serve this study folder (superres study create) for blind rating at /study."
    ),
    ab: Optional[list[str]] = typer.Option(
        None, "--ab", help="NAME=MODEL:SHARE: route that share of clients (sticky) to MODEL; repeatable."
    ),
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) and the web page at /. Every option can also be set
    as SUPERRES_SERVE_<OPTION> in the environment, e.g. SUPERRES_SERVE_MAX_BYTES=10000000."""
    overrides = dict(
        host=host,
        port=port,
        models=models,
        device=device,
        precision=precision,
        backend=backend,
        tile=tile,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        sync_max_pixels=sync_max_pixels,
        max_output_pixels=max_output_pixels,
        concurrent_jobs=concurrent_jobs,
        queue_length=queue_length,
        max_jobs=max_jobs,
        request_timeout=request_timeout,
        job_ttl=job_ttl,
        tmp_dir=tmp_dir,
        log_level=log_level,
        study=study,
        ab=ab or None,
    )
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise SuperresError(
            f"superres serve needs the 'serve' extra ({e}): {install_hint('serve')}"
        ) from None
    from .app import create_app
    from .settings import load_settings

    settings = load_settings(overrides)
    if settings.tmp_dir is not None:  # checked now: a bad folder is one line, not a failed startup
        try:
            settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SuperresError(f"--tmp-dir {settings.tmp_dir}: cannot use it as a folder ({e.strerror})") from None
    app = create_app(settings)  # resolves model names now: a typo fails before the port is opened
    if settings.study is not None:
        typer.echo(
            f"study: raters open /study; the vote export (GET /v1/study/votes.csv) needs "
            f"Authorization: Bearer <the token in {Path(settings.study) / 'owner.token'}>",
            err=True,
        )
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"warning: listening on {settings.host}; anyone who can reach it can use this server", err=True
        )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )


def batch_command(
    src: Path = typer.Argument(..., help="Folder of images (recursive) or one image."),
    dst: Path = typer.Argument(..., help="Output folder (same relative paths)."),
    model: str = typer.Option(
        COMMAND_DEFAULTS["batch"], "-m", "--model", help="Zoo model name, weights file, 'fidelity' or 'fast'."
    ),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (a Ray cluster)."),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        help="Ray cluster address, e.g. ray://head:10001 or auto (default: start a local cluster).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    outscale: Optional[float] = typer.Option(
        None, "-s", "--outscale", help="Final scale (default: the model's)."
    ),
    ext: str = typer.Option("auto", "--ext", help="auto (keep format), png, jpg, webp, tif."),
    suffix: str = typer.Option("", "--suffix", help="Appended to output file names."),
    tile: Optional[int] = typer.Option(None, "-t", "--tile", help="LR tile size (0 = no tiling)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, fp16 or bf16."),
    quality: int = typer.Option(95, "--quality", help="JPEG/WebP quality."),
    max_pixels: int = typer.Option(178_956_970, "--max-pixels", help="Refuse inputs larger than this."),
    concurrency: int = typer.Option(1, "--concurrency", help="Ray: model actors (one model each)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Ray: images handed to an actor at a time."),
    num_cpus: Optional[int] = typer.Option(
        None, "--num-cpus", help="Ray: CPUs of a locally started cluster."
    ),
    cpus_per_actor: float = typer.Option(1.0, "--cpus-per-actor", help="Ray: CPUs reserved by each actor."),
    download: bool = typer.Option(
        False, "--download", help="Allow fetching official weights (sha256-pinned)."
    ),
    self_ensemble: bool = typer.Option(False, "--self-ensemble", help="Average the 8 flips/rotations (~8x slower)."),
    report_path: Optional[Path] = typer.Option(None, "--report", help="JSON quality report per image (NIQE vs "
                                               "bicubic, uncertainty mean/p99, flagged)."),
    fallback: Optional[str] = typer.Option(None, "--fallback", help="For flagged images: bicubic or a model."),
    uncertainty_dir: Optional[Path] = typer.Option(None, "--uncertainty-dir", help="Uncertainty heatmaps here."),
) -> None:
    """Upscale a folder to another folder; skips finished outputs, so an interrupted run resumes."""
    import dataclasses

    from ..inference import guarded

    choices = guarded.GuardChoices(self_ensemble=self_ensemble, report=report_path, fallback=fallback,
                                   uncertainty_dir=uncertainty_dir)
    reports: list[Any] = []
    from ..zoo.choose import choose

    choice = choose(model, outscale)  # the same pick as upscale: -m fast, a family's native member
    if choice.note:
        typer.echo(choice.note, err=True)
    model = choice.model
    if engine not in ("local", "ray"):
        raise SuperresError(f"--engine must be 'local' or 'ray', not {engine!r}")
    if engine == "local":
        if address is not None:
            raise SuperresError("--address is for --engine ray")
        from ..inference.batch import run_batch
        from ..inference.upscaler import UpscaleOptions
        from ..loading import load_model

        up = load_model(
            model,
            device=device,
            precision=precision,
            allow_download=download,
            options=UpscaleOptions(tile=tile),
        )
        from ..inference.provenance import guard_settings, settings_of

        settings = settings_of(up, outscale=outscale, quality=quality,
                               extra=guard_settings(**dataclasses.asdict(choices)))
        up, guard = guarded.build(up, choices, lambda name: load_model(
            name, device=device, precision=precision, allow_download=download, options=UpscaleOptions(tile=tile)))
        process = None if guard is None else guarded.batch_process(guard, dst, choices, outscale=outscale,
                                                                       width=None, height=None)
        report = run_batch(
            up,
            [src],
            dst,
            ext=ext,
            suffix=suffix,
            overwrite=overwrite,
            outscale=outscale,
            quality=quality,
            max_pixels=max_pixels,
            process=process,
            settings=settings,
        )
        done, skipped, failed = len(report.done), len(report.skipped), report.failed
        kept = [(job.dst, why) for job, why in report.kept]
        if guard is not None:
            reports = [r.to_dict() for r in guarded.finish_report(guard, choices, failed,
                                                                  guarded.report_meta(up, guard))]
    else:
        from ..cluster.ray_batch import run_ray_batch

        rr = run_ray_batch(
            src,
            dst,
            model,
            address=address,
            num_cpus=num_cpus,
            concurrency=concurrency,
            batch_size=batch_size,
            cpus_per_actor=cpus_per_actor,
            overwrite=overwrite,
            outscale=outscale,
            ext=ext,
            suffix=suffix,
            tile=tile,
            device=device,
            precision=precision,
            quality=quality,
            max_pixels=max_pixels,
            allow_download=download,
            guard=dataclasses.asdict(choices) if choices.wants_guard or choices.wants_ensemble else None,
        )
        done, skipped, failed = len(rr.done), len(rr.skipped), rr.failed
        kept = rr.kept
        reports = rr.quality
        if report_path is not None:
            from ..inference.report import ImageReport, write_report

            write_report(report_path, [ImageReport(**r) for r in rr.quality],
                         {"model": model, "engine": "ray", "ensemble": "x8" if self_ensemble else "none",
                          "fallback": fallback})
    skip = f", {skipped} skipped (exist; --overwrite to redo)" if skipped else ""  # the hint only when it applies
    if kept:
        skip += f", {len(kept)} kept that other or unknown settings made (--overwrite to redo them)"
        for path, why in kept[:20]:
            typer.echo(f"kept: {path}: {why}", err=True)
    typer.echo(f"{done} written{skip}, {len(failed)} failed -> {dst}")
    for r in reports:
        if r["flagged"]:
            typer.echo(f"flagged: {r['input']}: {'; '.join(r['reasons'])}"
                       + (f"; wrote the {r['written']} output instead" if r["fallback_used"] else ""), err=True)
    if report_path is not None:
        typer.echo(f"report: {report_path} ({sum(r['flagged'] for r in reports)} of {len(reports)} flagged)")
    if failed:
        for path, why in failed:
            typer.echo(f"  {path}: {why}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer, friendly: Any) -> None:
    """Add ``superres serve`` and ``superres batch`` to the command line."""
    app.command(
        "serve", help="HTTP API (upscale, jobs, models, health) and web page; binds 127.0.0.1 by default."
    )(friendly(serve_command))
    app.command(
        "batch", help="Upscale a folder into another, locally or on a Ray cluster (--engine ray); resumable."
    )(friendly(batch_command))
