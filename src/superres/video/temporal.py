"""Temporal stabilisation of upscaled video (``--temporal off|flow|model``).

Single-image networks invent texture independently in every frame, so GAN detail and thin edges shimmer. A
filter here sees each decoded LR frame with its upscaled frame and returns stabilised frames in order:

- ``flow``: a motion-compensated recursive filter. DIS flow between consecutive LR frames (cheap: LR is 16x
  fewer pixels; refined to full LR resolution, and on the LR upscaled x2 when it is small), carried to the
  output size; the previous *stabilised* output is warped (bicubic) onto the current frame and blended in
  where it can be trusted. Trust is the product of (1) the forward-backward check, (2) the LR photometric
  error after warping (both mask occlusions and wrong flow), and (3) a gate on the difference between the
  warped previous output and the new SR frame: shimmer is a small difference and is averaged away, a large
  one is real change (or a flow error the LR could not show) and the new frame wins. Only the blend's detail
  above the LR's Nyquist frequency is kept: the LR pins the low frequencies, so they come from the current
  frame (blending them drifted brightness on a moving flat wall and cost up to 0.8 dB). The blend weight is
  ``strength`` at full trust, so older frames fade geometrically and warping blur cannot accumulate. Lag 0.
  Defaults tuned with ``benchmarks/video_temporal.py`` (README, "Video: temporal stability"): strength 0.95
  against 0.85 lowers tOF by 1-3 points and the warping error by 2-4 points on every GAN row, with no
  ghosting in the frames; PSNR-Y moves by -0.04..+0.05 dB.
- ``model``: the temporalfix networks (:mod:`superres.video.temporalfix`), a 7-frame window, lag 3.

A filter is stateful and belongs to one segment (the engine makes a new one per segment); a scene cut seen
on the LR frames resets it. Frames are ``HxWx3`` float32 RGB in [0, 1]; the output size need not be an exact
multiple of the LR size.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .flow import (
    SceneCutDetector,
    consistent,
    dis_flow,
    gray_u8,
    make_dis,
    require_cv2,
    resize_flow,
    resize_map,
    warp,
)

__all__ = ["GENTLE_FLOW_STRENGTH", "TEMPORAL_MODES", "FlowFilter", "TemporalFilter", "make_temporal"]

TEMPORAL_MODES = ("off", "flow", "model")
#: The flow blend for fidelity / fast models (the CLI's default for them): 0.95 cost span-x4 up to 0.53 dB
#: on near-static shots, 0.85 up to 0.30 dB.
GENTLE_FLOW_STRENGTH = 0.85
_ZOOM_MAX_PIXELS = 32_000  # LR frames up to about 200x160
_MEAN3 = np.full((1, 3), 1.0 / 3.0, np.float32)  # cv2.transform: the mean of three channels


class TemporalFilter(Protocol):
    def push(self, lr: np.ndarray, sr: np.ndarray) -> list[np.ndarray]:
        """Finished frames in order; may lag behind the frames pushed."""
        ...

    def flush(self) -> list[np.ndarray]:
        """End of a segment: the frames still held."""
        ...


def _blur(a: np.ndarray, k: int) -> np.ndarray:
    from .flow import require_cv2

    cv2 = require_cv2()
    return cv2.blur(a, (k, k)) if k > 1 else a


class FlowFilter:
    """Motion-compensated recursive blend of the SR output (see the module docstring)."""

    def __init__(self, *, strength: float = 0.95, photo_tau: float = 0.08, gate: float = 0.3,
                 cut: SceneCutDetector | None = None, cubic: bool = True, detail_only: bool = True,
                 flow_zoom: int | None = None) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"flow strength must be in [0, 1), got {strength}")
        self.strength = strength
        self.photo_tau = photo_tau  # LR error (0..1) at which trust has fallen to exp(-1)
        self.gate = gate  # SR difference (0..1, local mean) at which trust has fallen to exp(-1)
        self.detail_only = detail_only  # blend only what the LR frame cannot pin down (above its Nyquist)
        self.cubic = cubic
        # flow on the LR upscaled this much: finer sub-pixel motion at 4x the cost. None: 2 for LR frames up to
        # _ZOOM_MAX_PIXELS (there it is cheap and helps most), else 1 (DIS at 640x360 costs ~0.15 s a call).
        self.flow_zoom = flow_zoom  # bicubic warp: a recursive filter re-samples its output every frame, bilinear blurs
        self._cut = cut or SceneCutDetector()
        self._dis = make_dis("fine")
        self._prev_gray: np.ndarray | None = None
        self._prev_lr: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None
        self.cuts = 0  # scene cuts seen (for reports and tests)

    def reset(self) -> None:
        self._prev_gray = self._prev_lr = self._prev_out = None

    def trust(self, lr: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        """LR flow (current -> previous), LR trust map in [0, 1] and the mean compensated error; None when
        there is no previous frame."""
        if self._prev_gray is None or self._prev_lr is None:
            return None
        a, b = gray, self._prev_gray
        zoom = self.flow_zoom or (2 if gray.size <= _ZOOM_MAX_PIXELS else 1)
        if zoom > 1:
            cv2 = require_cv2()
            size = (gray.shape[1] * zoom, gray.shape[0] * zoom)
            a, b = (cv2.resize(g, size, interpolation=cv2.INTER_CUBIC) for g in (a, b))
        fwd = dis_flow(a, b, self._dis)
        bwd = dis_flow(b, a, self._dis)
        ok = resize_map(consistent(fwd, bwd).astype(np.float32), lr.shape[:2])
        fwd = resize_flow(fwd, lr.shape[:2])
        err = np.abs(warp(self._prev_lr, fwd) - lr).mean(axis=2)
        photo = np.exp(-((err / self.photo_tau) ** 2))
        conf = _blur(ok, 3) * photo  # soften the mask edges: no seams where trust switches
        return fwd, conf.astype(np.float32), float(err.mean())

    def push(self, lr: np.ndarray, sr: np.ndarray) -> list[np.ndarray]:
        lr = np.asarray(lr, dtype=np.float32)
        sr = np.asarray(sr, dtype=np.float32)
        gray = gray_u8(lr)
        got = self.trust(lr, gray)
        cut = self._cut.is_cut(gray, got[2] if got is not None else None)
        if got is None or cut or self._prev_out is None or self._prev_out.shape != sr.shape:
            self.cuts += int(cut)
            out = sr
        else:
            fwd, conf, _ = got
            out = self._blend(sr, warp(self._prev_out, resize_flow(fwd, sr.shape[:2]), cubic=self.cubic),
                              conf, lr.shape[:2])
        self._prev_gray, self._prev_lr, self._prev_out = gray, lr, out
        return [out]

    def _blend(self, sr: np.ndarray, warped: np.ndarray, conf: np.ndarray, lr_size: tuple[int, int]) -> np.ndarray:
        """``sr`` moved towards ``warped`` where trusted. The shimmer gate is a local statistic, so it is
        computed on a grid of half LR pixels (4x fewer values than the output at x4), then resized up."""
        cv2 = require_cv2()
        h, w = sr.shape[:2]
        grid = (min(h, 2 * lr_size[0]), min(w, 2 * lr_size[1]))
        change = cv2.subtract(warped, sr)
        diff = cv2.transform(cv2.absdiff(warped, sr), _MEAN3)
        diff = cv2.blur(cv2.resize(diff, grid[::-1], interpolation=cv2.INTER_AREA), (3, 3))  # ~1.5 LR pixels
        weight = resize_map(conf, grid) * np.exp(-np.square(diff / self.gate))
        weight = resize_map((self.strength * weight).astype(np.float32), (h, w))
        delta = change * weight[:, :, None]
        if self.detail_only:  # the LR pins the low frequencies: take those from the current frame
            delta -= cv2.GaussianBlur(delta, (0, 0), 0.6 * w / lr_size[1])
        delta += sr
        return np.clip(delta, 0.0, 1.0, out=delta)

    def flush(self) -> list[np.ndarray]:
        self.reset()
        return []


def make_temporal(mode: str, *, scale: int, strength: float | None = None) -> TemporalFilter | None:
    """A new filter for one segment: ``off`` -> None, ``flow`` -> :class:`FlowFilter`, ``model`` -> the
    temporalfix runner. ``strength``: the flow blend weight in [0, 1) (default 0.95), or the model's level in
    [0, 3] (default 2, fractional levels interpolate the weights as the upstream wheel does). ``scale`` is
    the upscale factor (for the record; the filters read sizes from the frames)."""
    if mode == "off":
        return None
    if mode == "flow":
        return FlowFilter() if strength is None else FlowFilter(strength=strength)
    if mode == "model":
        from .temporalfix import TemporalFixFilter

        return TemporalFixFilter(strength=2.0 if strength is None else strength)
    raise ValueError(f"unknown temporal mode {mode!r}; choose one of {', '.join(TEMPORAL_MODES)}")
