"""The benchmark runner: models x datasets x scales -> per-image and mean PSNR/SSIM (+ LPIPS, NIQE), timed.

The protocol is the literature's (``shared/GUIDE.md``, "Protocol pins"), so numbers are comparable with
published tables: LR = MATLAB bicubic of the top-left-modcropped HR; the SR output rounded to uint8; PSNR
and SSIM on the unrounded Y of BT.601 (16-235) with ``scale`` pixels cropped at each border, in float64;
the mean over images of the per-image values. Grey images (Set14 ``bridge``) go through the network as
grey and are their own Y by default (``grey="y"``: the MATLAB-era scripts behind the published bicubic rows);
``grey="rgb"`` repeats them to three channels first, as BasicSR (``cv2.IMREAD_COLOR``) and LIIF (PIL
``convert("RGB")``) do, so the network sees RGB and Y is ``16 + 219/255 g``: +1.32 dB on ``bridge``, about
+0.09 dB on a Set14 mean, which is how the tables of DAT, SPAN, SwinIR and LIIF were scored. Every result carries
the implementation of each metric in ``meta``.

Two baselines are models too (no parameters, any scale):

* ``bicubic-rgb``: the same LR images the networks get, upscaled by MATLAB ``imresize(LR, s, 'bicubic')`` on
  the uint8 image (rounded after each 1-D pass, as MATLAB does for uint8). This is the fair baseline in a
  table of networks. Rounding once at the end instead moves the means by at most +0.005 dB, and neither
  variant reproduces every published bicubic cell within 0.01 dB: on Set5 both are about +0.01 to
  +0.015 dB high (x2 33.674 vs 33.66; per pass / once 33.674 / 33.679), on Set14 x3 0.011 dB low. SSIM is
  within 0.0007 everywhere. Per-pass rounding is kept because it is what MATLAB (and so every published
  LR image) does with uint8 data.
* ``bicubic``: the procedure behind the published bicubic rows (VDSR's test code, copied into most later
  tables): Y = MATLAB ``rgb2ycbcr`` of the modcropped HR rounded to uint8, ``imresize`` down and up on that
  Y in double precision, the result rounded once. It ignores the shipped RGB LR files and reproduces all 18
  Set5/Set14/BSD100 x2/x3/x4 cells within 0.007 dB PSNR and 0.0008 SSIM (Set5/Set14 in tests/test_eval.py).
  Its output is a Y image, so LPIPS is not computed for it.

A zoo model asked at another scale runs its family's native member of that scale (as ``superres upscale``
does); a network with no such member is skipped with a note in ``result.skipped`` (no number is made up by
resizing), and a run where every combination is skipped is an error. Self-ensemble (``x8``) averages the 8 flips/rotations in float before rounding.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from ..errors import SuperresError
from .metrics import MetricContext, MetricSpec, MetricUnavailable, Scorer, get_metric, metrics
from .rows import RowLog
from ..resize import imresize
from ..data.catalogue import Pair, ResolvedDataset, iter_pairs, resolve_dataset

__all__ = [
    "BASELINES",
    "EvalResult",
    "ImageRow",
    "Sample",
    "Skip",
    "SummaryRow",
    "bicubic_upscale",
    "evaluate",
]

Progress = Callable[[int, int, str], None]
BASELINES = ("bicubic-rgb", "bicubic")

PROTOCOL = {
    "lr": "MATLAB imresize(HR, 1/s, 'bicubic') of the top-left modcrop (superres.resize.imresize on uint8, "
          "rounded half up after each pass); shipped LR files used after a size check",
    "sr": "rounded to uint8 (half up) before any metric",
}

#: How a grey test image (Set14 ``bridge``) is scored; see the module docstring.
GREY = {
    "y": "grey images are their own Y (MATLAB-era scripts, e.g. VDSR's, behind the published bicubic rows)",
    "rgb": "grey images repeated to RGB before the network and the metrics, so Y = 16 + 219/255 g (BasicSR's "
           "cv2.IMREAD_COLOR, LIIF's PIL convert('RGB'): the convention of DAT, SPAN, SwinIR, LIIF tables)",
}


# ---- results -----------------------------------------------------------------------------------------------


class _Scores:
    """Metric values by result column (``scores["psnr_y"]``), also readable as attributes (``row.psnr_y``);
    a registered metric that was not computed reads as ``None``."""

    scores: dict[str, float | None]

    def __getattr__(self, name: str) -> float | None:
        if name != "scores" and any(m.column == name for m in metrics()):
            return self.scores.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def flat(self) -> dict[str, Any]:
        """The JSON/CSV form: the scores as top-level columns (built-in ones always present)."""
        d = asdict(self)  # type: ignore[call-overload]
        scores = d.pop("scores")
        cols = {m.column: None for m in metrics() if m.builtin}
        cols.update(scores)
        head = {k: d.pop(k) for k in ("model", "dataset", "scale", "image") if k in d}
        return {**head, **cols, **d}


@dataclass
class ImageRow(_Scores):
    """One model on one image. ``scores``: metric column -> value (``None``: not computable, see notes)."""

    model: str
    dataset: str
    scale: int
    image: str
    scores: dict[str, float | None]
    seconds: float


@dataclass
class SummaryRow(_Scores):
    """Means over a dataset's images for one model and scale; ``sec_per_image`` = mean SR time."""

    model: str
    dataset: str
    scale: int
    scores: dict[str, float | None]
    params: int
    sec_per_image: float
    n_images: int


@dataclass
class Skip:
    """A combination that was not evaluated, and why (never a silently wrong number)."""

    model: str
    dataset: str
    scale: int
    reason: str


@dataclass
class Sample:
    """Images kept for figures: HR, LR and every model's uint8 output for one test image."""

    dataset: str
    scale: int
    image: str
    hr: np.ndarray
    lr: np.ndarray
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Everything a report or a figure needs; :meth:`to_dict` is the JSON form (no image arrays)."""

    meta: dict[str, Any]
    images: list[ImageRow]
    summary: list[SummaryRow]
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def row(self, model: str, dataset: str, scale: int) -> SummaryRow | None:
        """The summary row of one combination, or None if it was skipped or not asked for."""
        for r in self.summary:
            if r.model == model and r.dataset == dataset and r.scale == scale:
                return r
        return None

    def image_row(self, model: str, dataset: str, scale: int, image: str) -> ImageRow | None:
        for r in self.images:
            if (r.model, r.dataset, r.scale, r.image) == (model, dataset, scale, image):
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "summary": [_clean(r.flat()) for r in self.summary],
            "images": [_clean(r.flat()) for r in self.images],
            "skipped": [asdict(s) for s in self.skipped],
            "notes": list(self.notes),
        }


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN/inf: non-finite numbers become None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


# ---- methods (networks and baselines) ----------------------------------------------------------------------


class _Method(Protocol):
    name: str
    scale: int | None  # None = any scale
    params: int
    rgb_output: bool  # False: the output is a Y image (no LPIPS)

    def run(self, pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
        """(SR uint8, the reference to compare it with)."""
        ...

    def describe(self) -> dict[str, Any]: ...


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The ``bicubic-rgb`` baseline: MATLAB bicubic upscaling of a uint8 image, rounded after each pass."""
    out = imresize(np.asarray(lr, dtype=np.uint8), float(scale))
    assert isinstance(out, np.ndarray)
    return out


class _Bicubic:
    name = "bicubic-rgb"
    scale = None
    params = 0
    rgb_output = True

    def run(self, pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
        return bicubic_upscale(pair.lr, scale), pair.hr

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "baseline", "params": 0,
                "method": "imresize(LR, s) on uint8, MATLAB bicubic, rounded after each pass"}


def _y_rounded(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` Y of a uint8 image as uint8 (grey images are their own Y)."""
    if img.ndim == 2:
        return img
    from ..metrics.color import rgb_to_y

    return np.clip(np.floor(np.asarray(rgb_to_y(img), dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


class _BicubicY:
    name = "bicubic"
    scale = None
    params = 0
    rgb_output = False

    def run(self, pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
        y = _y_rounded(pair.hr).astype(np.float64)
        up = imresize(imresize(y, 1.0 / scale), float(scale))
        assert isinstance(up, np.ndarray)
        sr = np.clip(np.floor(up + 0.5), 0, 255).astype(np.uint8)
        return sr, y.astype(np.uint8)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "baseline", "params": 0,
                "method": "published bicubic rows (VDSR protocol): uint8 Y of HR, imresize down and up in "
                          "double, rounded once; ignores shipped LR files"}


class _Network:
    rgb_output = True

    def __init__(self, spec: str, *, device: str, precision: str, tile: int | None, self_ensemble: bool,
                 allow_download: bool = False, backend: str = "torch") -> None:
        from ..inference.upscaler import UpscaleOptions
        from ..loading import load_model

        self.spec = spec
        self.up = load_model(spec, device=device, precision=precision, allow_download=allow_download,
                             options=UpscaleOptions(tile=tile), backend=backend)
        self.name = self.up.name
        self.continuous = bool(self.up.descriptor.continuous)  # LIIF: evaluated at any scale, natively
        self.scale: int | None = None if self.continuous else int(self.up.scale)
        self.params = int(self.up.descriptor.params)
        self.self_ensemble = self_ensemble

    def _size(self, x: np.ndarray, scale: int) -> tuple[int, int] | None:
        return (x.shape[1] * scale, x.shape[0] * scale) if self.continuous else None

    def _sr_float(self, x: np.ndarray, scale: int) -> np.ndarray:
        return self.up.upscale_float(x, out_dtype=np.float32, size=self._size(x, scale))

    def run(self, pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
        lr = pair.lr
        x = (lr[..., None] if lr.ndim == 2 else lr).astype(np.float32) / 255.0
        if self.self_ensemble:
            acc = np.zeros((x.shape[0] * scale, x.shape[1] * scale, x.shape[2]), np.float64)
            for k in range(4):
                for flip in (False, True):
                    t = np.rot90(x, k, axes=(0, 1))
                    t = t[:, ::-1] if flip else t
                    y = self._sr_float(np.ascontiguousarray(t), scale)
                    y = y[:, ::-1] if flip else y
                    acc += np.rot90(y, -k, axes=(0, 1))
            out = np.floor(np.clip(acc / 8.0, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        else:
            out = self.up.upscale_float(x, out_dtype=np.uint8, size=self._size(x, scale))
        sr = out[..., 0] if lr.ndim == 2 else out
        if sr.shape != pair.hr.shape:
            raise SuperresError(f"{self.name} returned {sr.shape} for '{pair.name}', expected {pair.hr.shape}")
        return sr, pair.hr

    def describe(self) -> dict[str, Any]:
        d = self.up.descriptor
        return {"name": self.name, "kind": "network", "source": self.spec, "arch": d.arch, "scale": d.scale,
                "params": d.params, "device": str(self.up.device), "dtype": str(self.up.dtype).replace("torch.", ""),
                "self_ensemble": self.self_ensemble, "backend": self.up.backend}


def _make_method(spec: str, **kw: Any) -> _Method:
    low = spec.strip().lower()
    if low == "bicubic-rgb":
        return _Bicubic()
    if low in ("bicubic", "bicubic_literature"):
        return _BicubicY()
    return _Network(spec.strip(), **kw)


def _native(spec: str, scale: int | None) -> tuple[str, str]:
    """(what to load for ``spec`` at ``scale``, a note when it is another model): the family's native member."""
    if spec.strip().lower() in (*BASELINES, "bicubic_literature"):
        return spec, ""
    from ..errors import ModelLoadError
    from ..zoo.choose import choose

    try:
        c = choose(spec.strip(), scale)
    except ModelLoadError:  # a weights file, or an unknown name: _make_method says what is wrong
        return spec, ""
    return c.model, c.note.removeprefix("note: ")


def _settings(self_ensemble: bool, precision: str, tile: int | None, backend: str, device: str,
              grey: str = "y") -> dict[str, Any]:
    """What makes a row comparable with another run's (the resume check). ``grey`` appears only when it is
    not the default, so row files written before the option existed still resume."""
    out = {"self_ensemble": self_ensemble, "precision": precision, "tile": tile, "backend": backend,
           "device": "cpu" if device == "cpu" else "accelerator"}
    if grey != "y":
        out["grey"] = grey
    return out


def _as_rgb(pair: Pair) -> Pair:
    """A grey pair with both images repeated to three channels (``grey="rgb"``); colour pairs unchanged."""
    if pair.hr.ndim == 3 and pair.lr.ndim == 3:
        return pair

    def rgb(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a

    return Pair(pair.name, rgb(pair.hr), rgb(pair.lr))


def _tiny(pair: Pair, s: int) -> Pair:
    """A 32x32 LR corner of a pair (and its HR), for an untimed warm-up call."""
    n = min(32, pair.lr.shape[0], pair.lr.shape[1])
    return Pair(pair.name, pair.hr[: n * s, : n * s], pair.lr[:n, :n])


# ---- metrics -----------------------------------------------------------------------------------------------


class _Scorer:
    """The requested metrics, each set up once (weights loaded), scoring one (SR, reference) pair."""

    def __init__(self, names: Sequence[str], device: str, lpips_dir: str | None, niqe_params: str | None) -> None:
        self.specs: tuple[MetricSpec, ...] = tuple(get_metric(n) for n in names)  # unknown names fail here
        ctx = MetricContext(device, {"lpips_dir": lpips_dir, "niqe_params": niqe_params})
        self.fns: tuple[Scorer, ...] = tuple(spec.setup(ctx) for spec in self.specs)

    def score(self, sr: np.ndarray, ref: np.ndarray, s: int, rgb_output: bool,
              notes: set[str], label: str, group: tuple[str, str, int] | None = None) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for spec, fn in zip(self.specs, self.fns):
            value = None
            if spec.set_level:
                if group is not None:
                    fn.add(group, sr, ref, s)  # type: ignore[attr-defined]
                continue
            if spec.rgb_only and not rgb_output:
                notes.add(f"{label}: no {spec.header} (the output is a Y image)")
            else:
                try:
                    value = float(fn(sr, ref, s))
                except MetricUnavailable as e:
                    notes.add(f"{label}: no {spec.header} for some images ({e})")
            out[spec.column] = value
        return out


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


# ---- the run -----------------------------------------------------------------------------------------------


def _fp32_protocol(fn: Callable[..., EvalResult]) -> Callable[..., EvalResult]:
    """Run an fp32 evaluation in true fp32 on CUDA too: PyTorch lets cuDNN convolutions use TF32 (10-bit
    mantissa) by default on Ampere and later GPUs, which would make GPU scores differ from the CPU's and
    from the papers' protocol. The flags are restored afterwards (training and upscaling keep TF32)."""
    import functools

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> EvalResult:
        if kwargs.get("precision", "fp32") != "fp32":
            return fn(*args, **kwargs)
        import torch

        old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            return fn(*args, **kwargs)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old

    return run


@_fp32_protocol
def evaluate(
    models: Sequence[str],
    datasets: Sequence[str],
    scales: Sequence[int] | None = None,
    *,
    metrics: Sequence[str] = ("psnr", "ssim"),
    self_ensemble: bool = False,
    device: str = "cpu",
    precision: str = "fp32",
    tile: int | None = 0,
    data_root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    keep_samples: int = 0,
    lpips_dir: str | None = None,
    niqe_params: str | None = None,
    allow_download: bool = False,
    progress: Progress | None = None,
    backend: str = "torch",
    rows_path: str | os.PathLike[str] | None = None,
    images: Sequence[str] | None = None,
    grey: str = "y",
) -> EvalResult:
    """Evaluate each model on each dataset at each scale.

    Args:
        models: ``bicubic-rgb``, ``bicubic``, zoo names or weights files.
        datasets: names (Set5, Set14, BSD100/B100, Urban100, Manga109, DIV2K-valid) or folders of HR images.
        scales: integer factors; a network is only evaluated at its own scale (others go to ``skipped``).
            ``None``: the networks' own scales (2, 3, 4 when only baselines are given).
        metrics: any registered metric (psnr, ssim, lpips, niqe, brisque, ...).
        self_ensemble: x8 geometric self-ensemble for networks (baselines are unaffected).
        precision / tile: passed to the upscaler; ``tile=0`` runs whole images (the exact protocol).
        limit: only the first N images of each dataset (quick checks; recorded in ``meta``).
        images: only these image names (file stems) of each dataset, e.g. ``["baboon", "comic"]``.
        grey: how grey images (Set14 ``bridge``) are scored: ``"y"`` (their own Y, default) or ``"rgb"``
            (repeated to RGB first, as BasicSR-era papers do); see :data:`GREY`.
        keep_samples: keep the HR, LR and outputs of the first N images of each dataset/scale for figures.
        lpips_dir / niqe_params: metric weights; default: ``$SUPERRES_LPIPS_DIR`` / ``$SUPERRES_NIQE_PARAMS``.
        allow_download: let zoo models fetch their official (hash-pinned) weights if not installed.
        backend: torch, onnxruntime or openvino (networks run through an exported model; same tiling).
        progress: called as ``progress(done, total, label)`` after each model/image step.
        rows_path: a JSON-lines file that gets each image's row as soon as it is scored (flushed and
            synced); rows already in it for the same settings are reused, not redone, so a killed run is
            resumed by running it again with the same file (:class:`superres.eval.rows.RowLog`).

    A zoo model asked at another scale than its own runs its family's native member (``span-x4`` at
    ``-s 2`` is ``span-ch48-x2``; ``fidelity`` picks the most faithful native model per scale), as
    ``superres upscale`` does; a model with no member of that scale is skipped with a note, and a run where
    everything is skipped is an error, not an empty table.

    Datasets and models are all resolved before any work starts, so a typo fails in a second, not after an
    hour. Seconds per image count only the super-resolution step (no decoding, no metrics), after one
    small untimed warm-up call per method and dataset.
    """
    if not models:
        raise SuperresError("no models given (e.g. -m bicubic,realesr-animevideov3)")
    if not datasets:
        raise SuperresError("no datasets given (e.g. -d Set5,Set14)")
    if scales is not None and not scales:
        raise SuperresError("no scales given (e.g. -s 2,3,4)")
    if grey not in GREY:
        raise SuperresError(f"grey must be one of {', '.join(GREY)}, not {grey!r}")
    metrics = tuple(dict.fromkeys(get_metric(m).name for m in metrics))  # a typo fails before any work
    for s in scales or ():
        if int(s) != s or s < 1:
            raise SuperresError(f"scales must be positive integers, got {s}")
    if scales is not None:  # datasets first: a typo in a name fails before any weights are read
        for d in dict.fromkeys(datasets):
            resolve_dataset(d, int(scales[0]), data_root, limit=limit, images=images)
    loaded: dict[str, _Method] = {}

    def method(spec: str) -> _Method:
        if spec not in loaded:
            loaded[spec] = _make_method(spec, device=device, precision=precision, tile=tile,
                                        self_ensemble=self_ensemble, allow_download=allow_download, backend=backend)
        return loaded[spec]

    notes: set[str] = set()
    specs = list(dict.fromkeys(models))
    if scales is None:
        first = [method(_native(sp, None)[0]) for sp in specs]
        scales = sorted({m.scale for m in first if m.scale is not None}) or [2, 3, 4]
    scales = [int(s) for s in dict.fromkeys(scales)]
    per_scale: dict[int, list[_Method]] = {}
    for s in scales:
        per_scale[s] = []
        for sp in specs:
            name, note = _native(sp, s)
            if note:
                notes.add(f"x{s}: {note}")
            m = method(name)
            if m not in per_scale[s]:
                per_scale[s].append(m)
    methods = list(loaded.values())
    resolved: list[ResolvedDataset] = [resolve_dataset(d, s, data_root, limit=limit, images=images)
                                       for d in dict.fromkeys(datasets) for s in scales]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise SuperresError(f"two models have the same name ({', '.join(names)}); rename a weights file")
    scorer = _Scorer(metrics, device, lpips_dir, niqe_params)

    rows: list[ImageRow] = []
    skipped: list[Skip] = []
    samples: list[Sample] = []
    total = sum(len(ds) * sum(1 for m in per_scale[ds.scale] if m.scale in (None, ds.scale)) for ds in resolved)
    done = 0
    columns = [get_metric(n).column for n in metrics if not get_metric(n).set_level]
    set_level = any(get_metric(n).set_level for n in metrics)  # needs every output again: no reuse
    log = RowLog.open(rows_path, _settings(self_ensemble, precision, tile, backend, device, grey),
                         columns) \
        if rows_path is not None else None
    for ds in resolved:
        active = []
        for m in per_scale[ds.scale]:
            if m.scale is not None and m.scale != ds.scale:
                skipped.append(Skip(m.name, ds.name, ds.scale,
                                    f"{m.name} is a x{m.scale} model with no native x{ds.scale} member; "
                                    f"not evaluated at x{ds.scale} (no number is made by resizing)"))
            else:
                active.append(m)
        if not active:
            continue
        for i, pair in enumerate(iter_pairs(ds)):
            if pair.hr.ndim == 2:
                if grey == "rgb":
                    pair = _as_rgb(pair)
                notes.add(f"{ds.name} '{pair.name}' is grey: {GREY[grey]}; --grey "
                          f"{'y' if grey == 'rgb' else 'rgb'} scores it the other way")
            sample = Sample(ds.name, ds.scale, pair.name, pair.hr, pair.lr) if i < keep_samples else None
            warmed: set[str] = set()
            for m in active:
                label = f"{m.name} {ds.name} x{ds.scale}"
                kept = log.get(m.name, ds.name, ds.scale, pair.name) if log is not None else None
                if kept is not None and sample is None and not set_level:  # finished earlier: not redone
                    rows.append(ImageRow(m.name, ds.name, ds.scale, pair.name, *kept))
                    done += 1
                    if progress is not None:
                        progress(done, total, f"{label} {pair.name} (kept)")
                    continue
                if m.name not in warmed and i == 0:  # untimed first call: allocator, threads, kernels
                    m.run(_tiny(pair, ds.scale), ds.scale)
                    warmed.add(m.name)
                t0 = time.perf_counter()
                sr, ref = m.run(pair, ds.scale)
                seconds = time.perf_counter() - t0
                scores = scorer.score(sr, ref, ds.scale, m.rgb_output, notes, label, (m.name, ds.name, ds.scale))
                rows.append(ImageRow(m.name, ds.name, ds.scale, pair.name, scores, seconds))
                if log is not None:
                    log.append(m.name, ds.name, ds.scale, pair.name, scores, seconds)
                if sample is not None:
                    sample.outputs[m.name] = sr
                done += 1
                if progress is not None:
                    progress(done, total, f"{label} {pair.name}")
            if sample is not None:
                samples.append(sample)

    if log is not None:
        log.close()
    if not rows and skipped:
        raise SuperresError("nothing to evaluate: " + "; ".join(dict.fromkeys(k.reason for k in skipped)))
    summary = _summarise(rows, {m.name: m.params for m in methods}, scorer.specs)
    for spec, fn in zip(scorer.specs, scorer.fns):
        if spec.set_level:
            for r in summary:
                r.scores[spec.column] = fn.value((r.model, r.dataset, r.scale))  # type: ignore[attr-defined]
            notes.add(f"{spec.header} is set-level: one value per model, set and scale (per-image rows have none)")
    if self_ensemble:
        notes.add("self-ensemble (x8 flips/rotations, averaged in float) applied to networks only")
    meta = _meta(methods, resolved, metrics, device, precision, tile, self_ensemble, limit, grey)
    return EvalResult(meta, rows, summary, skipped, sorted(notes), samples)


def _summarise(rows: list[ImageRow], params: dict[str, int], specs: Sequence[MetricSpec]) -> list[SummaryRow]:
    groups: dict[tuple[str, str, int], list[ImageRow]] = {}
    for r in rows:
        groups.setdefault((r.model, r.dataset, r.scale), []).append(r)
    out = []
    for (model, dataset, scale), rs in groups.items():
        means = {m.column: _mean([r.scores.get(m.column) for r in rs]) for m in specs}
        out.append(SummaryRow(model, dataset, scale, means, params[model],
                              float(np.mean([r.seconds for r in rs])), len(rs)))
    return out


def _meta(methods: list[_Method], resolved: list[ResolvedDataset], metrics: tuple[str, ...], device: str,
          precision: str, tile: int | None, self_ensemble: bool, limit: int | None,
          grey: str = "y") -> dict[str, Any]:
    import torch

    from .._version import __version__

    specs = [get_metric(m) for m in metrics]
    impl = {(m.impl_key or m.name): m.implementation for m in specs}
    short = list(dict.fromkeys(m.short for m in specs))
    return {
        "tool": f"superres {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": list(metrics),
        "metric_implementation": "; ".join(short),
        "implementation": impl,
        "protocol": {"lr": PROTOCOL["lr"], "sr": PROTOCOL["sr"], "crop": "scale", "grey": GREY[grey],
                     "self_ensemble": "x8 (networks only)" if self_ensemble else "off"},
        "models": [m.describe() for m in methods],
        "datasets": [{"name": d.name, "scale": d.scale, "folder": str(d.folder), "n_images": len(d),
                      "lr": d.lr_source} for d in resolved],
        "limit": limit,
        "device": device,
        "precision": precision,
        "tile": tile,
        "timing": "seconds per image: wall time of the super-resolution step only, after one warm-up call",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "numpy": np.__version__},
    }
