"""The first thing a new user runs: a real photograph, made small, then upscaled, with a comparison.

The photograph is Grace Hopper's official US Navy portrait (public domain), which matplotlib ships as
sample data — so the demo needs no download and copies nothing into this repository.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import SuperresError, install_hint


def demo_photo() -> np.ndarray:
    """The demo photograph as RGB uint8 (600 x 512)."""
    try:
        from matplotlib import cbook
    except ImportError:
        raise SuperresError(f"the demo photo ships with matplotlib: {install_hint('plot')}") from None
    from .io.image import read_image

    img = read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return np.floor(img.color * 255 + 0.5).astype(np.uint8)


def run_demo(out_dir: str | Path, *, model: str, device: str = "auto", scale_down: int = 4) -> dict[str, Path]:
    """Shrink the photo by ``scale_down`` (MATLAB bicubic), upscale it back, write LR, SR and a sheet
    comparing nearest / bicubic / model / original side by side."""
    from .loading import load_model
    from .io.image import from_array, write_image
    from .resize import imresize, modcrop

    out = Path(out_dir)
    hr = modcrop(demo_photo(), scale_down)
    lr = imresize(hr, 1 / scale_down)
    up = load_model(model, device=device)
    sr = up.upscale(lr, outscale=hr.shape[0] / lr.shape[0])
    bicubic = np.clip(np.floor(imresize(lr.astype(np.float64), scale_down) + 0.5), 0, 255).astype(np.uint8)
    nearest = lr.repeat(scale_down, 0).repeat(scale_down, 1)

    paths = {
        "low-resolution input": out / "input_lr.png",
        f"{up.name} result": out / f"output_{up.name}.png",
        "comparison": out / "comparison.png",
    }
    write_image(from_array(lr), paths["low-resolution input"])
    write_image(from_array(sr), paths[f"{up.name} result"])
    sheet = side_by_side(
        [nearest, bicubic, sr, hr],
        [f"input {lr.shape[1]}x{lr.shape[0]} (nearest)", "bicubic x4", f"{up.name} x{up.scale}", "original"],
    )
    write_image(from_array(sheet), paths["comparison"])
    return paths


def side_by_side(images: list[np.ndarray], labels: list[str], gap: int = 8, band: int = 28) -> np.ndarray:
    """Same-size RGB uint8 images in a row with a caption band above each."""
    from PIL import Image, ImageDraw

    h, w = images[0].shape[:2]
    sheet = Image.new("RGB", (len(images) * w + (len(images) - 1) * gap, h + band), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, label) in enumerate(zip(images, labels)):
        x = i * (w + gap)
        sheet.paste(Image.fromarray(np.ascontiguousarray(img[:h, :w])), (x, band))
        draw.text((x + 6, 7), label, fill=(0, 0, 0), font_size=16)
    return np.asarray(sheet)
