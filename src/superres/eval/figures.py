"""Figures from an evaluation: zoomed comparison sheets and quality-versus-cost plots.

Numbers alone hide what users see (GAN textures, ringing, blur), so a sheet puts the same zoomed crop of
bicubic, every model and the ground truth side by side, each with its whole-image PSNR/SSIM (and LPIPS)
underneath. The crop is chosen where the HR image has the most high-frequency energy (the region where
methods differ) unless a box is given. The plot places each model+dataset by PSNR-Y against parameter
count and against seconds per image.

matplotlib is optional (``pip install "superres[plot]"``) and imported here only; figures are drawn on
``matplotlib.figure.Figure`` objects (no pyplot global state, safe in threads and servers) and written
atomically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SuperresError, install_hint
from ..metrics.psnr_ssim import psnr, ssim
from .runner import EvalResult, Sample, SummaryRow, bicubic_upscale

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["Box", "choose_crop", "comparison_sheet", "comparison_sheets", "quality_plots"]

Box = tuple[int, int, int, int]  # x, y, width, height in HR pixels


def require_matplotlib() -> Any:
    """matplotlib's Figure class, or a one-line error naming the extra (call early: fail before a run)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SuperresError(f"figures need matplotlib: {install_hint('plot')}") from None
    return Figure


def _save(fig: "Figure", path: Path, dpi: int = 100) -> Path:
    from ..io.atomic import atomic_write

    try:
        with atomic_write(path, tmp_suffix=".tmp.png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    except OSError as e:
        raise SuperresError(f"cannot write figure '{path}': {e.strerror or e}") from None
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "image"


# ---- crop choice -------------------------------------------------------------------------------------------


def _luma(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img.astype(np.float64)
    f = img.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def choose_crop(hr: np.ndarray, scale: int = 1, fraction: float = 0.25) -> Box:
    """The square window (side ``fraction`` of the shorter HR side, a multiple of ``scale``, on the scale
    grid) with the largest sum of absolute Laplacian of the luminance: where detail is, methods differ."""
    h, w = hr.shape[:2]
    s = max(1, int(scale))
    side = max(16, int(round(min(h, w) * fraction)))
    side = min(side - side % s or s, h - h % s, w - w % s)
    y = _luma(hr)
    lap = np.zeros_like(y)
    lap[1:-1, 1:-1] = np.abs(4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:])
    integral = np.zeros((h + 1, w + 1))
    integral[1:, 1:] = lap.cumsum(0).cumsum(1)
    step = max(s, (side // 8) - (side // 8) % s)
    ys = np.arange(0, h - side + 1, step)
    xs = np.arange(0, w - side + 1, step)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    energy = integral[yy + side, xx + side] - integral[yy, xx + side] - integral[yy + side, xx] + integral[yy, xx]
    iy, ix = np.unravel_index(int(np.argmax(energy)), energy.shape)
    return int(xs[ix]), int(ys[iy]), side, side


def _check_box(box: Box, hr: np.ndarray) -> Box:
    x, y, bw, bh = (int(v) for v in box)
    h, w = hr.shape[:2]
    if bw < 1 or bh < 1 or x < 0 or y < 0 or x + bw > w or y + bh > h:
        raise SuperresError(f"crop box x={x},y={y},w={bw},h={bh} does not fit in the {w}x{h} image")
    return x, y, bw, bh


# ---- comparison sheets -------------------------------------------------------------------------------------


def _panels(result: EvalResult, sample: Sample) -> list[tuple[str, np.ndarray, str]]:
    """(title, image, metric text) for bicubic, each model, then the ground truth."""
    s = sample.scale
    rows = []
    if "bicubic-rgb" not in sample.outputs:
        bic = bicubic_upscale(sample.lr, s)
        rows.append(("bicubic-rgb", bic, f"PSNR {psnr(bic, sample.hr, crop=s):.2f} dB\nSSIM {ssim(bic, sample.hr, crop=s):.4f}"))
    for name, img in sample.outputs.items():
        if img.ndim == 2 and sample.hr.ndim == 3:
            continue  # a Y-only baseline (``bicubic``): its numbers are in the tables, not a picture
        r = result.image_row(name, sample.dataset, s, sample.image)
        lines = []
        if r is not None and r.psnr_y is not None:
            lines.append(f"PSNR {r.psnr_y:.2f} dB")
        if r is not None and r.ssim_y is not None:
            lines.append(f"SSIM {r.ssim_y:.4f}")
        if r is not None and r.lpips is not None:
            lines.append(f"LPIPS {r.lpips:.4f}")
        rows.append((name, img, "\n".join(lines)))
    rows.append(("HR (ground truth)", sample.hr, "PSNR / SSIM: reference"))
    return rows


def comparison_sheet(result: EvalResult, sample: Sample, path: str | os.PathLike[str], *,
                     box: Box | None = None) -> Path:
    """One PNG: the full HR image with the crop outlined, then the crop from bicubic, each model and the HR.

    Crops are drawn with nearest-neighbour zoom so pixels are not smoothed by the viewer. The metrics under
    each crop are for the whole image (Y, border ``scale`` cropped), from ``result``."""
    Figure = require_matplotlib()
    from matplotlib.patches import Rectangle

    x, y, bw, bh = _check_box(box, sample.hr) if box is not None else choose_crop(sample.hr, sample.scale)
    panels = _panels(result, sample)
    n = len(panels) + 1
    cols = min(n, 5)
    rows = -(-n // cols)
    aspect = bh / bw
    fig = Figure(figsize=(3.0 * cols, rows * (3.0 * aspect + 0.95) + 0.35), layout="constrained")
    fig.suptitle(f"{sample.dataset} x{sample.scale}: {sample.image}   (crop x={x} y={y} {bw}x{bh}; "
                 "numbers: whole image, PSNR/SSIM on Y)", fontsize=10)
    grey = sample.hr.ndim == 2

    def show(ax: Any, img: np.ndarray) -> None:
        if img.ndim == 2:
            ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])

    ax = fig.add_subplot(rows, cols, 1)
    show(ax, sample.hr)
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), bw, bh, fill=False, edgecolor="red", linewidth=1.5))
    ax.set_title("HR, crop outlined" + (" (grey)" if grey else ""), fontsize=10)
    h, w = sample.hr.shape[:2]
    ax.set_xlabel(f"{w}x{h}, LR {sample.lr.shape[1]}x{sample.lr.shape[0]}", fontsize=9)
    for i, (title, img, text) in enumerate(panels, start=2):
        ax = fig.add_subplot(rows, cols, i)
        show(ax, img[y:y + bh, x:x + bw])
        ax.set_title(title, fontsize=10, fontweight="bold")
        ax.set_xlabel(text, fontsize=9, linespacing=1.3)
    return _save(fig, Path(path))


def comparison_sheets(result: EvalResult, out_dir: str | os.PathLike[str], *, count: int | None = None,
                      box: Box | None = None) -> list[Path]:
    """A sheet for each kept sample (the first ``count`` per dataset/scale); needs ``evaluate(keep_samples=N)``."""
    if not result.samples:
        raise SuperresError("no images were kept for figures; evaluate with keep_samples=N (--figures keeps 3)")
    out = Path(out_dir)
    seen: dict[tuple[str, int], int] = {}
    paths = []
    for sample in result.samples:
        k = (sample.dataset, sample.scale)
        seen[k] = seen.get(k, 0) + 1
        if count is not None and seen[k] > count:
            continue
        name = f"{_safe(sample.dataset)}_x{sample.scale}_{_safe(sample.image)}.png"
        paths.append(comparison_sheet(result, sample, out / name, box=box))
    return paths


# ---- quality vs cost ---------------------------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def quality_plots(result: EvalResult, out_dir: str | os.PathLike[str], *, scales: Sequence[int] | None = None) -> list[Path]:
    """One PNG per scale, ``quality_x<s>.png``: PSNR-Y against parameters (log) and against seconds per image
    (log), one marker per model+dataset (colour = model, shape = dataset). Parameter-free baselines are
    dashed lines on the parameter plot (log axes have no zero)."""
    Figure = require_matplotlib()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = [r for r in result.summary if r.psnr_y is not None]
    if not rows:
        raise SuperresError("nothing to plot: no PSNR results")
    models = list(dict.fromkeys(r.model for r in result.summary))
    datasets = list(dict.fromkeys(r.dataset for r in result.summary))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    markers = {d: _MARKERS[i % len(_MARKERS)] for i, d in enumerate(datasets)}
    paths = []
    for scale in sorted(set(scales) if scales else {r.scale for r in rows}):
        sub = [r for r in rows if r.scale == scale]
        if not sub:
            continue
        fig = Figure(figsize=(12, 5), layout="constrained")
        ax_p, ax_t = fig.subplots(1, 2)
        for r in sub:
            c, mk = colours[r.model], markers[r.dataset]
            if r.params > 0:
                ax_p.scatter(r.params, r.psnr_y, color=c, marker=mk, s=60, zorder=3)
                ax_p.annotate(r.model, (r.params, r.psnr_y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            else:
                ax_p.axhline(r.psnr_y, color=c, linestyle="--", linewidth=1)
            ax_t.scatter(max(r.sec_per_image, 1e-6), r.psnr_y, color=c, marker=mk, s=60, zorder=3)
            ax_t.annotate(r.model, (max(r.sec_per_image, 1e-6), r.psnr_y), textcoords="offset points",
                          xytext=(5, 4), fontsize=8)
        ax_p.set_xscale("log")
        if not any(r.params > 0 for r in sub):
            ax_p.set_xlim(1e3, 1e8)
        baselines: dict[str, list[SummaryRow]] = {}
        for r in sub:
            if r.params == 0:
                baselines.setdefault(r.dataset, []).append(r)
        for dataset, rs in baselines.items():  # one label per dataset: the lines of near-equal baselines overlap
            names = ", ".join(r.model for r in rs)
            ax_p.annotate(f"{names} ({dataset}, no parameters)", (0.01, max(r.psnr_y or 0.0 for r in rs)),
                          xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(0, 3),
                          fontsize=8, color="dimgrey")
        ax_t.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        for ax in (ax_p, ax_t):
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.margins(x=0.25, y=0.12)
        ax_p.set_xlabel("parameters (log)")
        ax_t.set_xlabel(f"seconds per image (log; {result.meta.get('device', '?')}, SR step only)")
        for ax in (ax_p, ax_t):
            ax.set_ylabel("PSNR-Y (dB)")
            ax.grid(True, which="both", alpha=0.3)
        handles: list[Any] = [Patch(color=colours[m], label=m) for m in models]
        handles += [Line2D([], [], marker=markers[d], markerfacecolor="none", markeredgecolor="black",
                           linestyle="", label=d) for d in datasets]
        ax_t.legend(handles=handles, fontsize=8, loc="best")
        fig.suptitle(f"Quality vs cost, x{scale} (PSNR-Y, crop={scale})", fontsize=11)
        paths.append(_save(fig, Path(out_dir) / f"quality_x{scale}.png"))
    return paths
