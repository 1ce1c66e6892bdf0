"""Video quality against a ground-truth clip: per-frame fidelity and temporal consistency.

Per frame t (SR and HR of one size, uint8 RGB):
- PSNR-Y and SSIM-Y by the image protocol (:mod:`superres.metrics.psnr_ssim`, ``crop`` border pixels left out);
- **tOF** (TecoGAN, Chu et al. 2020): the mean over pixels of the length of the vector
  flow(HR[t-1], HR[t]) - flow(SR[t-1], SR[t]), in pixels, with Farneback flow at TecoGAN's parameters on the
  whole frames, then TecoGAN's centre crop of the flow field (``teco_crop``: a multiple of 32, at least 8
  pixels off each side), as the authors' ``metrics.py`` computes it. Motion in SR that HR does not have
  (shimmer, wobbling edges) raises it. Farneback at these parameters follows motion of a few pixels a
  frame; on a faster pan it fails on HR and SR alike, and tOF then says how alike they fail.
- **warping error** (Lai et al. ECCV 2018): mean over non-occluded pixels of the squared RGB difference (in
  [0, 1]) between X[t] and X[t-1] warped onto it. The flow and the occlusion mask (forward-backward check) come
  from the *HR* clip for every X, so all methods are judged on the same motion; HR's own value is the floor a
  perfect result reaches (lighting changes, flow error) and is reported beside it.
A frame that starts a new shot in HR (a scene cut, :class:`~superres.video.flow.SceneCutDetector`) has no
tOF or warping error: there is no motion across a cut, and one such pair would outweigh a whole shot.

Streaming: :class:`VideoMetrics` keeps one previous frame pair, so memory does not grow with the clip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SuperresError
from ..metrics.psnr_ssim import psnr, ssim
from ..video.flow import SceneCutDetector, consistent, dis_flow, farneback_flow, gray_u8, make_dis, warp

__all__ = ["FrameScores", "VideoMetrics", "VideoScores", "flicker_plot", "iter_rgb_frames", "score_videos",
           "teco_crop", "tof"]


@dataclass(frozen=True)
class FrameScores:
    index: int
    psnr_y: float
    ssim_y: float
    tof: float | None  # None on the first frame (no pair yet)
    warp_error: float | None
    warp_error_hr: float | None


@dataclass
class VideoScores:
    frames: list[FrameScores] = field(default_factory=list)

    def _mean(self, key: str) -> float:
        vals = [getattr(f, key) for f in self.frames if getattr(f, key) is not None]
        vals = [v for v in vals if not math.isnan(v)]  # inf (identical frames) stays: the mean is inf
        return float(np.mean(vals)) if vals else float("nan")

    def summary(self) -> dict[str, float]:
        """Means over frames (PSNR-Y: mean of the per-frame values, as video SR papers report it)."""
        return {"frames": len(self.frames), "psnr_y": self._mean("psnr_y"), "ssim_y": self._mean("ssim_y"),
                "tof": self._mean("tof"), "warp_error": self._mean("warp_error"),
                "warp_error_hr": self._mean("warp_error_hr")}

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "frames": [asdict(f) for f in self.frames]}


def _as_u8(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame)
    if f.dtype == np.uint8:
        return f
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def warping_error(cur: np.ndarray, prev: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared RGB difference ([0, 1] scale) between ``cur`` and ``prev`` warped by ``flow`` (from cur to
    prev), over the pixels where ``mask`` is True; NaN when the mask is empty."""
    if not mask.any():
        return float("nan")
    a = cur.astype(np.float32) / 255.0
    b = warp(prev.astype(np.float32) / 255.0, flow)
    return float(np.mean(np.sum((a - b) ** 2, axis=2)[mask]))


def teco_crop(a: np.ndarray) -> np.ndarray:
    """TecoGAN's ``crop_8x8``: the centre of ``a`` with sides a multiple of 32 and at least 8 pixels (16 in
    all) cut from each dimension; Farneback's flow is least reliable at the borders."""
    h0, w0 = a.shape[:2]
    h, w = h0 // 32 * 32, w0 // 32 * 32
    while h > h0 - 16:
        h -= 32
    while w > w0 - 16:
        w -= 32
    if h <= 0 or w <= 0:  # a frame under 48 pixels: nothing would be left, keep it whole
        return a
    y, x = (h0 - h) // 2, (w0 - w) // 2
    return a[y:y + h, x:x + w]


def tof(hr_prev: np.ndarray, hr_cur: np.ndarray, sr_prev: np.ndarray, sr_cur: np.ndarray) -> float:
    """TecoGAN tOF of one frame pair (uint8 gray or RGB frames, whole): the mean length of the difference of
    the two Farneback flows over TecoGAN's centre crop; 0 when SR moves exactly as HR does."""
    f_hr = farneback_flow(gray_u8(hr_prev), gray_u8(hr_cur))
    f_sr = farneback_flow(gray_u8(sr_prev), gray_u8(sr_cur))
    diff = teco_crop(f_hr - f_sr)
    return float(np.mean(np.sqrt(np.sum(diff * diff, axis=2))))


class VideoMetrics:
    """Feed SR/HR frame pairs in order with :meth:`add`; read :attr:`scores`."""

    def __init__(self, *, crop: int = 0) -> None:
        self.crop = crop
        self.scores = VideoScores()
        self._dis = make_dis("medium")
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._cuts = SceneCutDetector()
        self.cut_frames: list[int] = []  # frames that start a new shot in HR: no tOF / warping error for them

    def _crop(self, a: np.ndarray) -> np.ndarray:
        c = self.crop
        return a[c:-c, c:-c] if c else a

    def add(self, sr: np.ndarray, hr: np.ndarray) -> FrameScores:
        sr, hr = _as_u8(sr), _as_u8(hr)
        if sr.shape != hr.shape:
            raise SuperresError(f"frame {len(self.scores.frames)}: SR is {sr.shape[1]}x{sr.shape[0]}, HR is "
                                f"{hr.shape[1]}x{hr.shape[0]}; the clips must have one size")
        t_of = w_sr = w_hr = None
        cut = self._cuts.is_cut(gray_u8(hr))
        self.cut_frames += [len(self.scores.frames)] if cut else []
        if self._prev is not None and not cut:  # across a scene cut there is no motion to follow
            sr_p, hr_p = self._prev
            g, gp = gray_u8(self._crop(hr)), gray_u8(self._crop(hr_p))
            fwd, bwd = dis_flow(g, gp, self._dis), dis_flow(gp, g, self._dis)
            mask = consistent(fwd, bwd)
            w_sr = warping_error(self._crop(sr), self._crop(sr_p), fwd, mask)
            w_hr = warping_error(self._crop(hr), self._crop(hr_p), fwd, mask)
            t_of = tof(hr_p, hr, sr_p, sr)  # whole frames, TecoGAN's own crop of the flow
        scores = FrameScores(len(self.scores.frames), psnr(sr, hr, crop=self.crop), ssim(sr, hr, crop=self.crop),
                             t_of, w_sr, w_hr)
        self.scores.frames.append(scores)
        self._prev = (sr, hr)
        return scores


def iter_rgb_frames(path: str | os.PathLike[str], *, limit: int | None = None) -> Iterator[np.ndarray]:
    """Decoded frames of ``path``'s first video stream as uint8 RGB, one at a time (PyAV)."""
    try:
        import av
    except ImportError:
        raise SuperresError('reading video needs PyAV: pip install "superres[video]"') from None
    p = Path(path)
    try:
        container = av.open(str(p))
    except (OSError, av.error.FFmpegError) as e:  # type: ignore[attr-defined]
        why = getattr(e, "strerror", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise SuperresError(f"{p}: cannot open as a video ({why})") from None
    with container:
        if not container.streams.video:
            raise SuperresError(f"{p}: has no video stream")
        try:
            for i, frame in enumerate(container.decode(video=0)):
                if limit is not None and i >= limit:
                    return
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:  # type: ignore[attr-defined]
            why = getattr(e, "strerror", None) or type(e).__name__
            raise SuperresError(f"{p}: cannot decode its frames ({why})") from None


def score_videos(sr_frames: Iterable[np.ndarray], hr_frames: Iterable[np.ndarray], *, crop: int = 0) -> VideoScores:
    """Scores of two frame sequences of equal length (a length mismatch is an error, not a silent cut)."""
    metrics = VideoMetrics(crop=crop)
    sr_it, hr_it = iter(sr_frames), iter(hr_frames)
    end = object()
    while True:
        sr, hr = next(sr_it, end), next(hr_it, end)
        if sr is end and hr is end:
            break
        if sr is end or hr is end:
            n = len(metrics.scores.frames)
            longer = "HR" if sr is end else "SR"
            raise SuperresError(f"the clips differ in length: {longer} has more than {n} frames")
        metrics.add(sr, hr)  # type: ignore[arg-type]
    if not metrics.scores.frames:
        raise SuperresError("no frames to score")
    return metrics.scores


def flicker_plot(series: dict[str, VideoScores], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """PNG with, per frame, the warping error (the flicker) of each named result and of HR, and PSNR-Y."""
    from ..io.atomic import atomic_write
    from .figures import require_matplotlib

    figure_cls = require_matplotlib()
    fig = figure_cls(figsize=(9, 5.5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    hr_drawn = False
    for name, scores in series.items():
        idx = [f.index for f in scores.frames if f.warp_error is not None]
        ax1.plot(idx, [f.warp_error * 1e3 for f in scores.frames if f.warp_error is not None], label=name, lw=1.2)
        if not hr_drawn:
            ax1.plot(idx, [f.warp_error_hr * 1e3 for f in scores.frames if f.warp_error_hr is not None],
                     label="HR (floor)", color="black", lw=1, ls="--")
            hr_drawn = True
        ax2.plot([f.index for f in scores.frames], [f.psnr_y for f in scores.frames], label=name, lw=1.2)
    ax1.set_ylabel("warping error (x1e-3)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_ylabel("PSNR-Y (dB)")
    ax2.set_xlabel("frame")
    ax2.grid(alpha=0.3)
    if title:
        ax1.set_title(title)
    fig.tight_layout()
    out = Path(path)
    try:
        with atomic_write(out, tmp_suffix=".tmp.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    except OSError as e:
        raise SuperresError(f"cannot write the flicker plot '{out}': {e.strerror or e}") from None
    return out
