"""Know when an output is wrong: the per-image quality report, the gate verdict and the safe fallback.

No ground truth exists at upscale time, so two independent no-reference signals are combined:

* the NIQE gate (:func:`superres.metrics.quality_gate.quality_gate`): the output must not look less
  natural than the plain bicubic upscale by more than ``niqe_tolerance`` NIQE points;
* the ensemble spread (:mod:`superres.inference.ensemble`): where the 8 flips/rotations (or the dropout
  samples, or the member models) disagree, the network is guessing; a 99th percentile above
  ``max_uncertainty_p99`` grey levels marks an input far from what the model learned.

The defaults come from measurements (edsr-baseline-x4, x8 self-ensemble, Set14 x4): real images have
p99 2.9-4.7 grey levels and NIQE margins from +1.9 to -0.5 (``comic``); seeded noise weights give p99 34-46
and margins of -9 or worse, a pure-noise input p99 23 and margin -4.6. A flagged image can be replaced by
the bicubic upscale (never worse than the input) or by another model, and the report says which was written.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import SuperresError

if TYPE_CHECKING:  # pragma: no cover
    from ..io.image import ImageData
    from ..metrics.niqe import NiqeModel
    from .ensemble import Ensemble
    from .upscaler import UpscaleOptions, Upscaler

__all__ = ["GateRules", "ImageReport", "Guard", "bicubic_upscale_image", "heatmap", "write_report"]

#: outputs larger than this are scored by NIQE on a centred crop of about this many pixels (time bound)
NIQE_MAX_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class GateRules:
    """When an output is flagged. ``max_uncertainty_p99`` is in 8-bit grey levels; None = not used."""

    niqe_tolerance: float = 1.0
    max_uncertainty_p99: float | None = 12.0


@dataclass
class ImageReport:
    """What the gate saw for one image, and what was written. JSON-ready through :meth:`to_dict`."""

    input: str
    model: str
    ensemble: str
    samples: int
    width: int
    height: int
    niqe: float | None = None
    bicubic_niqe: float | None = None
    niqe_margin: float | None = None  # bicubic - output: > 0, the output looks more natural than bicubic
    niqe_region: list[int] | None = None  # [x, y, w, h] of the output scored, when not the whole image
    uncertainty_mean: float | None = None
    uncertainty_p99: float | None = None
    flagged: bool = False
    reasons: list[str] = field(default_factory=list)  # why it was flagged
    notes: list[str] = field(default_factory=list)  # what could not be checked
    fallback: str | None = None  # what was asked for flagged images
    fallback_used: bool = False
    written: str = "model"  # "model", "bicubic" or the fallback model's name
    output: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _uint8(a: np.ndarray) -> np.ndarray:
    """Any ImageData plane (uint8, uint16, float [0, 1]) as uint8, for NIQE."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return np.floor(a.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    return np.floor(np.clip(a.astype(np.float64), 0, 1) * 255.0 + 0.5).astype(np.uint8)


def _squeeze(a: np.ndarray) -> np.ndarray:
    return a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a


def _niqe_region(lr_hw: tuple[int, int], sr_hw: tuple[int, int], max_pixels: int
                 ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None:
    """Aligned centred crops (y, x, h, w) of LR and SR holding about ``max_pixels`` output pixels; None = all."""
    (lh, lw), (sh, sw) = lr_hw, sr_hw
    if sh * sw <= max_pixels:
        return None
    fy, fx = sh / lh, sw / lw
    side = math.sqrt(max_pixels)
    ch, cw = min(lh, max(2, int(side / fy))), min(lw, max(2, int(side / fx)))
    y0, x0 = (lh - ch) // 2, (lw - cw) // 2
    sy0, sx0 = int(round(y0 * fy)), int(round(x0 * fx))
    sh_c, sw_c = int(round(ch * fy)), int(round(cw * fx))
    return (y0, x0, ch, cw), (sy0, sx0, sh_c, sw_c)


def assess(lr: "ImageData", sr: "ImageData", uncertainty: np.ndarray | None, rules: GateRules,
           niqe_model: "NiqeModel", report: ImageReport) -> ImageReport:
    """Fill ``report``'s scores and verdict from the input, the output and (optionally) its uncertainty."""
    from ..metrics.quality_gate import quality_gate

    lr8, sr8 = _squeeze(_uint8(np.asarray(lr.color))), _squeeze(_uint8(np.asarray(sr.color)))
    reasons: list[str] = []
    if not np.isfinite(np.asarray(sr.color, dtype=np.float64)).all():  # pragma: no cover - quantised outputs
        reasons.append("the output has non-finite values")
    region = _niqe_region(lr8.shape[:2], sr8.shape[:2], NIQE_MAX_PIXELS)
    if region is not None:
        (y, x, h, w), (sy, sx, sh, sw) = region
        lr8, sr8 = lr8[y:y + h, x:x + w], sr8[sy:sy + sh, sx:sx + sw]
        report.niqe_region = [sx, sy, sw, sh]
    crop = max(1, int(round(sr8.shape[0] / max(lr8.shape[0], 1))))
    try:
        g = quality_gate(lr8, sr8, tolerance=rules.niqe_tolerance, crop_border=crop, model=niqe_model)
    except ValueError as e:  # fewer than two NIQE blocks: too small to judge
        report.notes.append(f"NIQE not computed ({str(e).splitlines()[0]})")
    else:
        report.niqe, report.bicubic_niqe, report.niqe_margin = g.sr_niqe, g.bicubic_niqe, g.margin
        if not math.isfinite(g.bicubic_niqe) and not math.isfinite(g.sr_niqe):
            report.notes.append("NIQE undefined for both output and bicubic (too few 96x96 blocks)")
        elif not math.isfinite(g.sr_niqe):
            reasons.append("the output has no natural-image statistics (NIQE undefined, bicubic's is not)")
        elif math.isfinite(g.bicubic_niqe) and g.worse_than_bicubic:
            reasons.append(f"NIQE {g.sr_niqe:.2f} is worse than bicubic's {g.bicubic_niqe:.2f} by more than "
                           f"{rules.niqe_tolerance:g}")
    if uncertainty is not None:
        u = np.asarray(uncertainty, np.float64) * 255.0
        report.uncertainty_mean, report.uncertainty_p99 = float(u.mean()), float(np.percentile(u, 99))
        if rules.max_uncertainty_p99 is not None and not report.uncertainty_p99 <= rules.max_uncertainty_p99:
            reasons.append(f"uncertainty p99 {report.uncertainty_p99:.1f} grey levels exceeds "
                           f"{rules.max_uncertainty_p99:g}")
    report.flagged = bool(reasons)
    report.reasons += reasons
    return report


def bicubic_upscale_image(img: "ImageData", size: tuple[int, int]) -> "ImageData":
    """The safe fallback: MATLAB-bicubic of the input to ``size`` (width, height), alpha and depth kept."""
    from ..io.image import as_float
    from ..resize import imresize

    w, h = size
    depth = np.dtype(np.uint16 if img.bit_depth == 16 else np.uint8)
    maxv = float(np.iinfo(depth).max)

    def up(a: np.ndarray) -> np.ndarray:
        r = np.asarray(imresize(as_float(a).astype(np.float64), size=(h, w)))
        return np.floor(np.clip(r, 0.0, 1.0) * maxv + 0.5).astype(depth)

    alpha = up(img.alpha) if img.alpha is not None else None
    return replace(img, color=up(img.color), alpha=alpha)


_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)


def heatmap(uncertainty: np.ndarray, vmax: float = 12.0) -> np.ndarray:
    """H x W uncertainty ([0, 1] units) -> H x W x 3 uint8 heatmap, 0..``vmax`` grey levels black to yellow.

    A fixed scale (not per image) so a broken output looks alarming, not just "normalised"."""
    t = np.clip(np.asarray(uncertainty, np.float64) * 255.0 / vmax, 0.0, 1.0) * (len(_STOPS) - 1)
    i = np.minimum(t.astype(np.int64), len(_STOPS) - 2)
    f = (t - i)[..., None]
    rgb = _STOPS[i] * (1 - f) + _STOPS[i + 1] * f
    return np.floor(rgb + 0.5).astype(np.uint8)


class Guard:
    """Upscale, score, and fall back: one call per image, safe to share between threads.

    ``ensemble`` (optional) provides the uncertainty; without one the gate uses NIQE only. ``fallback``:
    None (flag only), ``"bicubic"``, or the name of ``fallback_upscaler`` (rerun flagged images with it)."""

    def __init__(self, upscaler: "Upscaler", *, ensemble: "Ensemble | None" = None, rules: GateRules | None = None,
                 niqe_model: "NiqeModel | None" = None, niqe_params: str | os.PathLike[str] | None = None,
                 fallback: str | None = None, fallback_upscaler: "Upscaler | None" = None) -> None:
        from ..metrics.niqe import load_niqe_model

        if fallback not in (None, "bicubic") and fallback_upscaler is None:
            raise SuperresError(f"fallback model {fallback!r} is not loaded")
        try:
            self.niqe_model = niqe_model if niqe_model is not None else load_niqe_model(niqe_params)
        except FileNotFoundError as e:
            raise SuperresError(f"the quality report needs NIQE: {e}") from None
        self.upscaler = upscaler
        self.ensemble = ensemble
        self.rules = rules or GateRules()
        self.fallback = fallback
        self.fallback_upscaler = fallback_upscaler
        self._lock = threading.Lock()
        self.reports: list[ImageReport] = []

    def upscale_image(self, img: "ImageData", *, source: str = "", outscale: float | None = None,
                      width: int | None = None, height: int | None = None,
                      options: "UpscaleOptions | None" = None) -> tuple["ImageData", ImageReport, np.ndarray | None]:
        """(what to write, its report, the uncertainty map or None). The report is also kept in ``reports``."""
        from .upscaler import target_size

        h, w = img.color.shape[:2]
        size = target_size(w, h, self.upscaler.scale, outscale, width, height)
        unc: np.ndarray | None = None
        if self.ensemble is not None:
            res = self.ensemble.upscale_image(img, outscale=outscale, width=width, height=height, options=options)
            out, unc, label, k = res.image, res.uncertainty, self.ensemble.label, res.samples
        else:
            out = self.upscaler.upscale_image(img, outscale=outscale, width=width, height=height, options=options)
            label, k = "none", 1
        report = ImageReport(input=source, model=self.upscaler.name, ensemble=label, samples=k,
                             width=size[0], height=size[1], fallback=self.fallback)
        assess(img, out, unc, self.rules, self.niqe_model, report)
        if report.flagged and self.fallback is not None:
            if self.fallback == "bicubic":
                out = bicubic_upscale_image(img, size)
                report.written = "bicubic"
            else:
                assert self.fallback_upscaler is not None
                out = self.fallback_upscaler.upscale_image(img, width=size[0], height=size[1], options=options)
                report.written = self.fallback_upscaler.name
            report.fallback_used = True
        with self._lock:
            self.reports.append(report)
        return out, report, unc


def write_report(path: str | os.PathLike[str], reports: Sequence[ImageReport], meta: dict[str, Any]) -> Path:
    """All image reports as one JSON file ``{"meta": ..., "images": [...], "flagged": n}``, written atomically."""
    from ..io.atomic import atomic_write

    p = Path(path)
    body = {"meta": meta, "flagged": sum(r.flagged for r in reports), "images": [r.to_dict() for r in reports]}
    text = json.dumps(body, indent=2, allow_nan=False)
    try:
        with atomic_write(p) as tmp:
            tmp.write_text(text + "\n")
    except OSError as e:
        raise SuperresError(f"cannot write the report '{p}': {e.strerror or e}") from None
    return p
