"""NIQE (Mittal, Soundararajan, Bovik, "Making a 'Completely Blind' Image Quality Analyzer", IEEE SPL 2013).

A no-reference score: lower means the image's local statistics are closer to those of pristine natural
images. This implementation follows the behaviour of the MATLAB release by LIVE (``computequality.m``), so
it gives the MATLAB numbers (e.g. 5.72957 on ``shared/weights/niqe/baboon_492x480.png``):

1. The luminance image (float, 0..255) is cropped to a whole number of 96x96 blocks.
2. At each of two scales, MSCN coefficients ``(I - mu) / (sigma + 1)`` are computed with the 7x7 Gaussian
   window of the pristine model, filtering with a replicated border (MATLAB ``imfilter(..., 'replicate')``).
3. For each block (96x96 at scale 1, 48x48 at scale 2, no overlap) 18 features: an asymmetric generalised
   Gaussian (AGGD) fit of the MSCN values (shape, mean of the left/right scales), and AGGD fits of the
   products with the 4 neighbours (horizontal, vertical, two diagonals; circular shifts inside the block):
   shape, mean, left scale, right scale. The shape is found by moment matching on the grid 0.2:0.001:10.
4. The second scale is MATLAB ``imresize(I, 0.5)``: :func:`superres.resize.imresize` with the *mirrored*
   border of recent MATLAB releases (``border="symmetric"``). With the clamped border of the benchmark LR
   files the baboon reference gives 5.7191 instead of 5.7296.
5. The 36-D block features give a mean vector and covariance (blocks with NaN features skipped, as
   ``nanmean`` / ``nancov``); the score is the Mahalanobis-like distance to the pristine model with the
   pseudo-inverse of the averaged covariances.

The pristine model file (``niqe_pris_params.npz``: ``mu_pris_param``, ``cov_pris_param``, ``gaussian_window``)
is found from an explicit path, the ``SUPERRES_NIQE_PARAMS`` environment variable,
``<cache>/niqe/niqe_pris_params.npz`` (put there by hand), or where ``superres fetch niqe`` puts it: the
member of the pinned ``basicsr==1.4.2`` sdist (:mod:`superres.metrics.assets`).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..resize import imresize
from .color import rgb_to_ycbcr

__all__ = ["niqe", "NiqeModel", "load_niqe_model", "default_niqe_params_path"]

NIQE_PARAMS_FILENAME = "niqe_pris_params.npz"
_BLOCK = 96


@dataclass(frozen=True)
class NiqeModel:
    """The pristine multivariate Gaussian model and the MSCN window of NIQE."""

    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)
    window: np.ndarray  # (7, 7), sums to 1


def default_niqe_params_path() -> Path:
    """Where the pristine model is looked for when no path is given (env var first, then the cache)."""
    env = os.environ.get("SUPERRES_NIQE_PARAMS")
    if env:
        return Path(env)
    from ..cache import cache_dir
    from .assets import METRIC_ASSETS, asset_folder

    by_hand = cache_dir("niqe", NIQE_PARAMS_FILENAME)
    return by_hand if by_hand.is_file() else asset_folder(METRIC_ASSETS["niqe"]) / NIQE_PARAMS_FILENAME


def load_niqe_model(path: str | os.PathLike[str] | None = None) -> NiqeModel:
    """Load ``niqe_pris_params.npz`` (no pickles). A missing file raises a one-line ``FileNotFoundError``."""
    p = Path(path) if path is not None else default_niqe_params_path()
    if not p.is_file():
        from .assets import missing_hint

        given = path is not None or os.environ.get("SUPERRES_NIQE_PARAMS")
        what = f"NIQE pristine model ({NIQE_PARAMS_FILENAME})"
        where = f"{what} not found at {p}" if given else f"{what} not fetched"
        raise FileNotFoundError(f"{where}: {missing_hint('niqe')}")
    with np.load(p, allow_pickle=False) as z:
        mu = np.asarray(z["mu_pris_param"], dtype=np.float64).reshape(-1)
        cov = np.asarray(z["cov_pris_param"], dtype=np.float64)
        window = np.asarray(z["gaussian_window"], dtype=np.float64)
    if mu.shape != (36,) or cov.shape != (36, 36) or window.ndim != 2:
        raise ValueError(f"unexpected NIQE model arrays in {p}: {mu.shape}, {cov.shape}, {window.shape}")
    return NiqeModel(mu=mu, cov=cov, window=window / window.sum())


@lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    """The shape grid 0.2:0.001:10 and the AGGD ratio ``Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))`` on it."""
    gam = np.round(0.2 + 0.001 * np.arange(9801), 3)
    lg = np.vectorize(math.lgamma)
    r = np.exp(2 * lg(2.0 / gam) - lg(1.0 / gam) - lg(3.0 / gam))
    gam.flags.writeable = False  # shared through the cache: keep it constant
    r.flags.writeable = False
    return gam, r


def _aggd_fit(vec: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching AGGD fit: (shape alpha, left scale, right scale), as MATLAB ``estimateaggdparam``."""
    gam, r_gam = _aggd_table()
    left = vec[vec < 0]
    right = vec[vec > 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = math.sqrt(np.mean(left * left)) if left.size else math.nan
        right_std = math.sqrt(np.mean(right * right)) if right.size else math.nan
        gamma_hat = left_std / right_std if right_std != 0 else math.nan
        mean_sq = float(np.mean(vec * vec))
        rhat = float(np.mean(np.abs(vec))) ** 2 / mean_sq if mean_sq != 0 else math.nan
    rhat_norm = rhat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    if math.isnan(rhat_norm):
        return math.nan, math.nan, math.nan
    alpha = float(gam[np.argmin((r_gam - rhat_norm) ** 2)])
    k = math.sqrt(math.gamma(1.0 / alpha) / math.gamma(3.0 / alpha))
    return alpha, left_std * k, right_std * k


def _block_features(block: np.ndarray) -> list[float]:
    """The 18 NIQE features of one MSCN block (MATLAB ``computefeature``)."""
    alpha, bl, br = _aggd_fit(block.ravel())
    feats = [alpha, (bl + br) / 2.0]
    # MATLAB circshift shifts [rows, cols]: (0,1) horizontal, (1,0) vertical, (1,1) and (-1,1) diagonals.
    for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        pair = (block * np.roll(block, shift, axis=(0, 1))).ravel()
        a, l_, r_ = _aggd_fit(pair)
        mean = (r_ - l_) * math.gamma(2.0 / a) / math.gamma(1.0 / a) if not math.isnan(a) else math.nan
        feats.extend([a, mean, l_, r_])
    return feats


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """MSCN coefficients ``(I - mu) / (sigma + 1)`` with ``imfilter(..., 'replicate')`` local statistics.

    The local moments are accumulated on differences to the centre pixel, ``sum w (x_k - x_p)``, which is
    the same quantity as ``I - mu`` but exactly 0 on a flat 7x7 patch. Computed directly, ``I - mu`` there is
    +-1 ulp with a sign set by summation order, and NIQE's AGGD fit counts negative and positive values
    separately: on the baboon reference image those 13 "zeros" move the score by 4e-4. MATLAB gets exact
    zeros (this gives 5.7295739 against MATLAB's 5.7295734; the direct form gives 5.72996).
    """
    kh, kw = window.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(img, ((ph, kh - 1 - ph), (pw, kw - 1 - pw)), mode="edge")
    h, w = img.shape
    first = np.zeros_like(img)  # mu - I
    second = np.zeros_like(img)  # E[(x - I)^2]
    for i in range(kh):
        for j in range(kw):
            diff = padded[i : i + h, j : j + w] - img
            first += window[i, j] * diff
            second += window[i, j] * (diff * diff)
    sigma = np.sqrt(np.abs(second - first * first))  # the local variance is shift-invariant
    return -first / (sigma + 1.0)


def _niqe_features(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The ``(blocks, 36)`` feature matrix of a block-cropped float image."""
    per_scale = []
    for scale in (1, 2):
        struct = _mscn(img, window)
        b = _BLOCK // scale
        nh, nw = struct.shape[0] // b, struct.shape[1] // b
        feats = [
            _block_features(struct[i * b : (i + 1) * b, j * b : (j + 1) * b])
            for j in range(nw)
            for i in range(nh)
        ]
        per_scale.append(np.asarray(feats, dtype=np.float64))
        if scale == 1:
            img = np.asarray(imresize(img, 0.5, border="symmetric"), dtype=np.float64)
    return np.concatenate(per_scale, axis=1)


def _pinv_matlab(a: np.ndarray) -> np.ndarray:
    """MATLAB ``pinv`` tolerance: ``max(size(A)) * norm(A) * eps``."""
    return np.linalg.pinv(a, rcond=max(a.shape) * np.finfo(np.float64).eps)


def niqe(
    img: np.ndarray,
    crop_border: int = 0,
    convert: str | None = "y",
    *,
    params_path: str | os.PathLike[str] | None = None,
    model: NiqeModel | None = None,
) -> float:
    """NIQE score of one image (lower is more natural), with MATLAB parity.

    Args:
        img: with ``convert="y"``, an RGB uint8 ``HxWx3`` image whose luminance is the Y of MATLAB
            ``rgb2ycbcr`` (rounded to uint8, as in the MATLAB reference); a 2-D (or ``HxWx1``) image is
            taken as the luminance itself. With ``convert=None``, ``img`` must already be the luminance,
            ``HxW`` float on the 0..255 scale (round it first for MATLAB parity).
        crop_border: pixels removed at each border first.
        params_path / model: the pristine model (see the module docstring for the default location).

    The image, after cropping, needs at least two 96x96 blocks (a covariance needs two samples).
    """
    arr = np.asarray(img)
    if convert == "y":
        if arr.ndim == 3 and arr.shape[2] == 3:
            if arr.dtype != np.uint8:
                raise TypeError(f"convert='y' expects an RGB uint8 image, got {arr.dtype}")
            lum = np.asarray(rgb_to_ycbcr(arr))[:, :, 0].astype(np.float64)
        elif arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
            lum = arr.reshape(arr.shape[0], arr.shape[1]).astype(np.float64)
        else:
            raise ValueError(f"expected an HxWx3 RGB or HxW gray image, got shape {arr.shape}")
    elif convert is None:
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2:
            raise ValueError(f"convert=None expects an HxW luminance image, got shape {arr.shape}")
        lum = arr.astype(np.float64)
    else:
        raise ValueError(f"convert must be 'y' or None, got {convert!r}")
    if crop_border:
        lum = lum[crop_border:-crop_border, crop_border:-crop_border]
    h, w = (lum.shape[0] // _BLOCK) * _BLOCK, (lum.shape[1] // _BLOCK) * _BLOCK
    if h * w < 2 * _BLOCK * _BLOCK:
        raise ValueError(f"NIQE needs at least two 96x96 blocks, got {lum.shape[0]}x{lum.shape[1]}")
    lum = lum[:h, :w]
    m = model if model is not None else load_niqe_model(params_path)

    feats = _niqe_features(lum, m.window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN, as MATLAB's nanmean
        mu = np.nanmean(feats, axis=0)
    complete = feats[~np.isnan(feats).any(axis=1)]
    if complete.shape[0] < 2:
        raise ValueError("NIQE: fewer than two blocks have finite features (flat image?)")
    cov = np.cov(complete, rowvar=False)
    d = m.mu - mu
    inv = _pinv_matlab((m.cov + cov) / 2.0)
    return float(math.sqrt(d @ inv @ d))
