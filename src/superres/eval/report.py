"""Render an :class:`~superres.eval.runner.EvalResult` as a terminal table, Markdown, CSV or JSON.

Text is returned, never printed (the command prints). JSON keeps full precision and every number a script
may want to check (``summary`` rows: model, dataset, scale, psnr_y, ssim_y, lpips, niqe, params,
sec_per_image, n_images); the other formats round for reading. Skipped combinations and notes are part
of every format, so a reader never mistakes a missing row for a forgotten one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import SuperresError
from .metrics import get_metric, metrics
from .runner import EvalResult, ImageRow, SummaryRow

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

__all__ = ["FORMATS", "format_for_path", "render", "rich_table", "to_csv", "to_json", "to_markdown", "write_report"]

Format = Literal["table", "markdown", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json")
_SUFFIX_FORMAT = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".json": "json", ".txt": "table"}


# ---- cells -------------------------------------------------------------------------------------------------


def _f(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _params(n: int) -> str:
    if n == 0:
        return "-"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}K"
    return str(n)


def _secs(v: float) -> str:
    return f"{v:.3f}" if v >= 0.001 else f"{v:.1e}"


def _metric_columns(result: EvalResult) -> list[str]:
    """Result columns of the metrics this evaluation computed, in the order they were asked for."""
    return [get_metric(m).column for m in result.meta.get("metrics", ["psnr", "ssim"])]


def _columns(result: EvalResult) -> list[str]:
    """Summary columns, without metrics that were not computed."""
    return ["model", "dataset", "scale", *_metric_columns(result), "params", "sec_per_image", "n_images"]


_HEAD = {"model": "Model", "dataset": "Dataset", "scale": "Scale", "params": "Params",
         "sec_per_image": "s/image", "n_images": "N", "image": "Image", "seconds": "s"}


def _head(col: str) -> str:
    return _HEAD.get(col) or next((m.header for m in metrics() if m.column == col), col)


def _cell(row: SummaryRow | ImageRow, col: str) -> str:
    v = getattr(row, col)
    if col == "scale":
        return f"x{v}"
    if col == "params":
        return _params(v)
    if col in ("sec_per_image", "seconds"):
        return _secs(v)
    spec = next((m for m in metrics() if m.column == col), None)
    if spec is not None:
        return _f(v, spec.digits)
    return str(v)


def _footer(result: EvalResult) -> list[str]:
    lines = [f"skipped: {s.model} on {s.dataset} x{s.scale} ({s.reason})" for s in result.skipped]
    lines += [f"note: {n}" for n in result.notes]
    impl = result.meta.get("metric_implementation")
    if impl:
        lines.append(f"metrics: {impl}")
    machine = result.meta.get("machine", {})
    if machine:
        lines.append(f"timing: {result.meta.get('device', '?')}, {machine.get('torch_threads', '?')} threads, "
                     f"{machine.get('processor', '?')}; SR step only")
    return lines


# ---- formats -----------------------------------------------------------------------------------------------


def rich_table(result: EvalResult, *, per_image: bool = False) -> "Table":
    """A rich Table of the summary (or the per-image rows), with skips and notes as its caption."""
    from rich.table import Table

    cols = _columns(result)
    rows: Iterable[SummaryRow | ImageRow] = result.summary
    if per_image:
        cols = [c for c in cols if c not in ("params", "sec_per_image", "n_images")]
        cols.insert(3, "image")
        cols.append("seconds")
        rows = result.images
    table = Table(title="superres eval (PSNR-Y in dB)", caption="\n".join(_footer(result)) or None,
                  caption_justify="left")
    rows = list(rows)
    for c in cols:
        if c in ("model", "dataset", "image"):
            longest = max([len(str(getattr(r, c))) for r in rows] + [len(_head(c))])
            table.add_column(_head(c), justify="left", overflow="fold", min_width=min(longest, 28))
        else:
            table.add_column(_head(c), justify="right", no_wrap=True)
    for r in rows:
        table.add_row(*(_cell(r, c) for c in cols))
    return table


def _plain_table(result: EvalResult, per_image: bool, width: int = 200) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, highlight=False, force_terminal=False).print(
        rich_table(result, per_image=per_image))
    return buf.getvalue()


def to_markdown(result: EvalResult, *, per_image: bool = False, layout: str = "long") -> str:
    """Markdown: ``long`` = one row per model/dataset/scale; ``paper`` = the literature's layout (a table per
    scale, a row per model, ``PSNR/SSIM`` per dataset column), ready for a README."""
    if layout not in ("long", "paper"):
        raise SuperresError(f"markdown layout must be 'long' or 'paper', not {layout!r}")
    out: list[str] = []
    if layout == "paper" and not per_image:
        out += _paper_tables(result)
    else:
        cols = _columns(result)
        rows: Iterable[SummaryRow | ImageRow] = result.summary
        if per_image:
            cols = [c for c in cols if c not in ("params", "sec_per_image", "n_images")]
            cols.insert(3, "image")
            cols.append("seconds")
            rows = result.images
        out.append("| " + " | ".join(_head(c) for c in cols) + " |")
        out.append("|" + "|".join("---" if c in ("model", "dataset", "image") else "---:" for c in cols) + "|")
        for r in rows:
            out.append("| " + " | ".join(_cell(r, c) for c in cols) + " |")
    foot = _footer(result)
    if foot:
        out.append("")
        out += [f"- {line}" for line in foot]
    return "\n".join(out) + "\n"


def _paper_tables(result: EvalResult) -> list[str]:
    out: list[str] = []
    datasets = list(dict.fromkeys(r.dataset for r in result.summary))
    models = list(dict.fromkeys(r.model for r in result.summary))
    for scale in sorted({r.scale for r in result.summary}):
        if out:
            out.append("")
        out.append(f"**x{scale}** (PSNR-Y dB / SSIM-Y)")
        out.append("")
        out.append("| Model | Params | " + " | ".join(datasets) + " |")
        out.append("|---|---:|" + "|".join("---:" for _ in datasets) + "|")
        for m in models:
            cells = []
            params = 0
            present = False
            for d in datasets:
                r = result.row(m, d, scale)
                if r is None:
                    cells.append("-")
                    continue
                present = True
                params = r.params
                ssim_txt = "-" if r.ssim_y is None else f"{r.ssim_y:.4f}".lstrip("0")
                cells.append(f"{_f(r.psnr_y, 2)}/{ssim_txt}")
            if present:
                out.append(f"| {m} | {_params(params)} | " + " | ".join(cells) + " |")
    return out


def to_csv(result: EvalResult, *, per_image: bool = False) -> str:
    """CSV with full precision: the summary rows, or the per-image rows."""
    buf = io.StringIO()
    if per_image:
        rows: Iterable[Any] = result.images
    else:
        rows = result.summary
    flat = [r.flat() for r in rows]
    cols = list(flat[0]) if flat else ["model", "dataset", "scale", *_metric_columns(result)]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in flat:
        w.writerow(["" if r.get(c) is None else r[c] for c in cols])
    return buf.getvalue()


def to_json(result: EvalResult) -> str:
    """``{"meta", "summary", "images", "skipped", "notes"}``, full precision; non-finite numbers are null."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"


def render(result: EvalResult, fmt: str = "table", *, per_image: bool = False, layout: str = "long") -> str:
    """The report as text in one of :data:`FORMATS` (``table`` is rich's table drawn in plain characters)."""
    if fmt == "table":
        return _plain_table(result, per_image)
    if fmt == "markdown":
        return to_markdown(result, per_image=per_image, layout=layout)
    if fmt == "csv":
        return to_csv(result, per_image=per_image)
    if fmt == "json":
        return to_json(result)
    raise SuperresError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def format_for_path(path: str | os.PathLike[str], default: str = "table") -> str:
    """The format implied by an output file's suffix (``.md``, ``.csv``, ``.json``, ``.txt``)."""
    return _SUFFIX_FORMAT.get(Path(path).suffix.lower(), default)


def write_report(result: EvalResult, path: str | os.PathLike[str], fmt: str | None = None, **kwargs: Any) -> Path:
    """Write the report atomically (a crash never leaves half a file); the format defaults from the suffix."""
    from ..io.atomic import atomic_write

    target = Path(path)
    text = render(result, fmt or format_for_path(target), **kwargs)
    try:
        with atomic_write(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise SuperresError(f"cannot write report '{target}': {e.strerror or e}") from None
    return target
