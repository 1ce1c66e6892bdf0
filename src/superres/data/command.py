"""``superres degrade``: write degraded LR images to disk, so users can see what a training recipe feeds
the model.

Registered in ``superres/cli.py`` through :func:`register`. Only typer, the standard library and
:mod:`superres.errors` are imported at module level (``superres --help`` stays instant); torch and the
pipelines are imported when the command runs.
"""

from __future__ import annotations

import ast
import zlib
from pathlib import Path
from typing import Any

import typer

from ..errors import SuperresError
from ..seeds import SEED_HELP, check_seed, derive_seed

__all__ = ["degrade_command", "parse_params", "register"]


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["noise_range=[1, 10]", "final_sinc_prob=0"]`` -> keyword arguments (values as Python literals;
    a value that is not a literal is taken as a string)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise SuperresError(f"--param takes name=value, like noise_range=[1,10], not {item!r}")
        try:
            out[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            out[key] = text.strip()
    return out


def _image_seed(seed: int, rel: str) -> int:
    """Each image's generator depends on the seed and its own relative path, not on which other files are
    in the folder, so one image's LR is reproducible on its own."""
    return derive_seed(int(seed) * 1_000_003 + zlib.crc32(rel.encode("utf-8")))


def degrade_command(
    src: Path = typer.Argument(..., help="An HR image or a folder of them (searched recursively)."),
    dst: Path = typer.Argument(..., help="Output folder (same relative paths, .png)."),
    pipeline: str = typer.Option(
        "realesrgan", "-p", "--pipeline", help="bicubic, classical, realesrgan or bsrgan."
    ),
    scale: int = typer.Option(4, "-s", "--scale", help="Downscaling factor (HR is cropped to a multiple)."),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    param: list[str] = typer.Option(
        [],
        "--param",
        help="Override a pipeline parameter: name=value (repeatable), e.g. --param 'noise_range=[1,10]'.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that already exist."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
) -> None:
    """Degrade HR images with a training pipeline and write the LR images (for inspection)."""
    check_seed(seed)
    import torch

    from ..io.image import from_array, read_image, to_uint, write_image
    from ..resize import modcrop
    from .datasets import IMAGE_SUFFIXES
    from .degradations import build_degradation

    deg = build_degradation(pipeline, scale, **parse_params(param))
    if not src.exists():
        raise SuperresError(f"input not found: '{src}'")
    if src.is_file():
        files, base = [src], src.parent
    else:
        files = sorted(
            p
            for p in src.rglob("*")
            if p.is_file()
            and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(src).parts)
        )
        base = src
        if not files:
            raise SuperresError(f"no images in '{src}' ({', '.join(IMAGE_SUFFIXES)})")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SuperresError(f"unknown device {device!r} (cpu, cuda, cuda:N, mps)") from None
    written = skipped = 0
    for f in files:
        rel = f.relative_to(base)
        out = dst / rel.with_suffix(".png")
        if out.exists() and not overwrite:
            skipped += 1
            continue
        img = read_image(f)
        color = modcrop(to_uint(img.color, 8), scale)
        if color.shape[0] < scale or color.shape[1] < scale:
            raise SuperresError(f"image '{f}' is smaller than the scale {scale}")
        x = torch.from_numpy(color.transpose(2, 0, 1).astype("float32") / 255.0)[None].to(dev)
        gen = torch.Generator(device=dev).manual_seed(_image_seed(seed, rel.as_posix()))
        lr = deg(x, gen)[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        write_image(from_array(to_uint(lr, 8)), out, overwrite=True)
        written += 1
    skip = f", {skipped} skipped (exist; --overwrite to redo)" if skipped else ""  # the hint only when it applies
    typer.echo(f"{written} written{skip} -> {dst} ({pipeline} x{scale}, seed {seed})")


def register(app: typer.Typer, friendly: Any) -> None:
    """Add ``superres degrade`` to the command line."""
    app.command(
        "degrade", help="Write degraded LR images (bicubic, classical, realesrgan, bsrgan) for inspection."
    )(friendly(degrade_command))
