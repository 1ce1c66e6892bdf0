"""Optical flow, warping, occlusion masks and scene cuts: what temporal stabilisation and the video metrics share.

Flow comes from OpenCV (DIS, Kroeger et al. ECCV 2016: fast and well kept; Farneback for the TecoGAN tOF metric,
which the literature computes with it). OpenCV is optional (``pip install "superres[video]"``) and imported
inside :func:`require_cv2` only.

Conventions: frames are ``HxWx3`` float32 RGB in [0, 1] or uint8; a flow ``f`` "from a to b" is ``HxWx2``
float32 (x, y) with ``a(p) ~ b(p + f(p))``, so ``warp(b, f)`` lines ``b`` up with ``a`` (backward warping).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SuperresError

__all__ = [
    "SceneCutDetector",
    "consistent",
    "dis_flow",
    "farneback_flow",
    "gray_u8",
    "make_dis",
    "require_cv2",
    "resize_flow",
    "resize_map",
    "warp",
]


def require_cv2() -> Any:
    """The cv2 module, or a one-line error naming the extra."""
    try:
        import cv2
    except ImportError:
        raise SuperresError('optical flow needs OpenCV: pip install "superres[video]" '
                            "(opencv-python-headless)") from None
    return cv2


def gray_u8(frame: np.ndarray) -> np.ndarray:
    """BT.601 luma as uint8 (the input the OpenCV flow methods take), from RGB float [0,1] or uint8."""
    f = np.asarray(frame)
    if f.dtype != np.uint8:
        f = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if f.ndim == 2:
        return np.ascontiguousarray(f)
    cv2 = require_cv2()
    return cv2.cvtColor(np.ascontiguousarray(f[:, :, :3]), cv2.COLOR_RGB2GRAY)


def make_dis(preset: str = "fine") -> Any:
    """A DIS flow object; not thread-safe, so one per filter or metric accumulator.

    ``fine`` is OpenCV's medium preset refined down to full resolution (finest scale 0): the presets stop at
    half resolution, which on an LR frame means flow 8x coarser than the output it is carried to."""
    cv2 = require_cv2()
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, "fine": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    dis = cv2.DISOpticalFlow_create(presets[preset])
    if preset == "fine":
        dis.setFinestScale(0)
    return dis


def dis_flow(a: np.ndarray, b: np.ndarray, dis: Any | None = None) -> np.ndarray:
    """DIS flow from ``a`` to ``b`` (uint8 gray frames of one size)."""
    dis = dis if dis is not None else make_dis()
    return dis.calc(a, b, None)


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Farneback flow from ``a`` to ``b`` with TecoGAN's tOF parameters (0.5, 3, 15, 3, 5, 1.2)."""
    cv2 = require_cv2()
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``flow`` carried to ``size`` = (height, width): resampled and its vectors scaled per axis, so an LR flow
    serves an output of any size (an exact multiple of the LR or not)."""
    h, w = size
    fh, fw = flow.shape[:2]
    if (fh, fw) == (h, w):
        return flow
    cv2 = require_cv2()
    out = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    out[:, :, 0] *= w / fw
    out[:, :, 1] *= h / fh
    return out


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A per-pixel map (mask, weight) resampled to ``size`` = (height, width), bilinear."""
    if m.shape[:2] == tuple(size):
        return m
    cv2 = require_cv2()
    return cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def warp(img: np.ndarray, flow: np.ndarray, *, cubic: bool = False) -> np.ndarray:
    """``img`` sampled at ``p + flow(p)`` (edges replicated): ``img`` lined up with the frame the flow starts
    from."""
    cv2 = require_cv2()
    h, w = flow.shape[:2]
    gx, gy = _grid(h, w)
    mode = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    return cv2.remap(img, gx + flow[:, :, 0], gy + flow[:, :, 1], mode, borderMode=cv2.BORDER_REPLICATE)


def consistent(fwd: np.ndarray, bwd: np.ndarray, *, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """Forward-backward check (Sundaram et al. ECCV 2010): True where following ``fwd`` then ``bwd`` comes
    back to the start, within ``alpha * (|fwd|^2 + |bwd'|^2) + beta`` pixels^2. False marks occlusions and
    flow that disagrees with itself; points whose target leaves the frame are False too."""
    h, w = fwd.shape[:2]
    back = warp(bwd, fwd)
    gx, gy = _grid(h, w)
    tx, ty = gx + fwd[:, :, 0], gy + fwd[:, :, 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    err = np.sum((fwd + back) ** 2, axis=2)
    bound = alpha * (np.sum(fwd ** 2, axis=2) + np.sum(back ** 2, axis=2)) + beta
    return inside & (err <= bound)


class SceneCutDetector:
    """Says when a frame starts a new shot, from the LR frames alone.

    Why two tests: a luma-histogram jump catches cuts between shots of different tone; a cut between shots
    of similar tone still leaves the previous frame unpredictive, which shows as a large error after motion
    compensation. Either one above its threshold is a cut.
    """

    def __init__(self, *, hist_threshold: float = 0.5, error_threshold: float = 0.12) -> None:
        self.hist_threshold = hist_threshold
        self.error_threshold = error_threshold
        self._prev_hist: np.ndarray | None = None

    @staticmethod
    def _hist(gray: np.ndarray) -> np.ndarray:
        h = np.bincount((gray >> 3).ravel(), minlength=32).astype(np.float64)
        return h / max(h.sum(), 1.0)

    def is_cut(self, gray: np.ndarray, compensated_error: float | None = None) -> bool:
        """``gray``: the new LR frame (uint8); ``compensated_error``: the mean |LR - warped previous LR| in
        [0, 1] when the caller has one. The first frame is not a cut."""
        hist = self._hist(gray)
        prev, self._prev_hist = self._prev_hist, hist
        if prev is None:
            return False
        if float(np.abs(hist - prev).sum()) > self.hist_threshold:
            return True
        return compensated_error is not None and compensated_error > self.error_threshold
