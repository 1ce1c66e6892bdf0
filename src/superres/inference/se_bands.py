"""Real-CUGAN and waifu2x CUNet on an image too large for one pass: bands of rows with the whole image's SE means.

Their SE gates scale each map by a gate computed from the map's mean over the *whole* image, so a tile alone
computes other gates (tiles of 512 on a 1080p frame moved edges by up to 96 levels), while the whole-image
pass needs 4.4-9.9 KB per LR pixel (35 GB for a 3840x2160 frame at x2). Here the image runs in full-width bands
of rows, each read with enough rows of context that its own rows are exact, in one sweep per SE gate: sweep k
runs every band up to gate k (the gates before it use the means already found) and adds up the rows of that
gate's map which the band owns; the last sweep runs the whole network with every mean known and streams each
band's output rows. Every mean is the whole image's (summed in float64), so the output equals the whole-image
pass up to float rounding, with the memory of one band, for 1.8x the time of one pass on a 1080p frame (README,
"Large frames with Real-CUGAN and CUNet"). The gates ask the same control whether they run eager
(``archs.cugan.SE``) or in the engine's U-Net plan (``inference.fast._UNetPlan._gate``), so the sweeps run at
engine speed.

Geometry: the maps are cropped and resampled copies of the padded input, so whole-map row ``j`` sits at a fixed
position of the input, ``(j + shrink / 2) / m`` padded rows, where ``m`` is the map's rows per input row and
``shrink`` what its valid convolutions ate; both come from two probe runs. A band owns the map rows whose
position falls in its own image rows; band starts are multiples of 4, so every map's rows line up with the
whole image's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from ..archs.base import report_step
from ..archs.cugan import SE, SE_CONTROL

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

STRIDE = 4  # band starts and context are multiples of this (the deepest map is at 1/4, or 3/4 at x3)
_PROBE = (32, 64, 16)  # two probe heights and the probe width (LR pixels; multiples of STRIDE)


class _Stop(Exception):
    """Raised at the gate being summed: the rest of the network is not needed in that sweep."""


class _Control:
    """What the SE gates do while a band runs (installed in ``archs.cugan.SE_CONTROL``): the eager network's
    gates call it with their NCHW map, the engine's U-Net plan with its (h, w, C) map."""

    def __init__(self) -> None:
        self.heights: list[tuple[int, int]] = []  # (id of the gate, map height) in the order reached (probing)
        self.means: dict[int, torch.Tensor] = {}  # id(gate) -> whole-image channel means (1, C), float64
        self.target: int | None = None  # id of the gate whose map is summed in this sweep
        self.rows: tuple[int, int] = (0, 0)  # the rows of its map this band owns
        self.total: torch.Tensor | None = None  # their per-channel sum (1, C), float64

    def _seen(self, total: torch.Tensor, height: int) -> None:
        lo, hi = self.rows
        if lo < 0 or hi > height:
            raise RuntimeError("a band does not hold the map rows it owns (context too small)")
        self.total = total
        raise _Stop

    def __call__(self, se: SE, x: torch.Tensor) -> torch.Tensor:
        key = id(se)
        if key == self.target:
            lo, hi = self.rows
            self._seen(x[:, :, lo:hi].sum(dim=(2, 3), dtype=torch.float64), x.shape[-2])
        known = self.means.get(key)
        if known is not None:
            return se.gate(x, known.to(x.dtype))
        if self.target is not None:
            raise RuntimeError("an SE gate ran before its mean was known")
        self.heights.append((key, int(x.shape[-2])))  # probing: record, then compute as usual
        return se.gate(x, x.mean(dim=(2, 3)))

    def engine_gate(self, key: int, src: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor],
                    mean: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The engine plan's gate (``inference.fast._UNetPlan``): ``src`` (h, w, C); ``gate`` maps a (C,) mean
        to (C,) weights; ``mean()`` is the plan's own mean of ``src``."""
        if key == self.target:
            lo, hi = self.rows
            self._seen(src[lo:hi].sum(dim=(0, 1), dtype=torch.float64)[None], src.shape[0])
        known = self.means.get(key)
        if known is not None:
            return gate(known[0].float())
        if self.target is not None:
            raise RuntimeError("an SE gate ran before its mean was known")
        self.heights.append((key, int(src.shape[0])))
        return gate(mean())


Forward = Callable[[torch.Tensor], torch.Tensor]


def _run(call: Forward, x: torch.Tensor, control: _Control) -> torch.Tensor | None:
    token = SE_CONTROL.set(control)
    try:
        return call(x)
    except _Stop:
        return None
    finally:
        SE_CONTROL.reset(token)


def _geometry(call: Forward, channels: int, pad: int) -> list[tuple[int, float, float]]:
    """Per gate, in the order a pass reaches them: (its id, m, shrink), where its map has ``m * N - shrink`` rows
    for a padded input of N rows (two probe runs on zeros)."""
    h1, h2, w = _PROBE
    runs = []
    for h in (h1, h2):
        control = _Control()
        _run(call, torch.zeros(1, channels, h, w), control)
        runs.append(control.heights)
    out = []
    for (key, a), (_, b) in zip(*runs):
        m = (b - a) / (h2 - h1)
        out.append((key, m, m * (h1 + 2 * pad) - a))
    return out


def context_rows(pad: int) -> int:
    """Rows of context a band reads above and below its own rows: twice what the network's valid convolutions
    eat (its prepadding), which covers the receptive field, rounded up to STRIDE."""
    return -(-(2 * pad + STRIDE) // STRIDE) * STRIDE


def band_plan(height: int, width: int, bytes_per_pixel: int, budget: float, pad: int) -> list[tuple[int, int]]:
    """The bands' own rows: as many as ``budget`` bytes allow with their context, a multiple of STRIDE."""
    ctx = context_rows(pad)
    rows = int(budget // max(1, width * bytes_per_pixel)) - 2 * ctx
    rows = max(STRIDE, rows // STRIDE * STRIDE)
    return [(y, min(height, y + rows)) for y in range(0, height, rows)]


def upscale_in_bands(net: nn.Module, x: torch.Tensor, bands: list[tuple[int, int]], pad: int,
                     sink: Callable[[int, int, torch.Tensor], None], run: Forward | None = None) -> None:
    """``net`` (Real-CUGAN or CUNet) on ``x`` (1, C, H, W) in the row ``bands`` given (starts multiples of STRIDE;
    see :func:`band_plan`); ``sink(r0, r1, rows)`` receives the output rows (C, r1 - r0, W * scale) of each band
    in order. ``pad``: the network's prepadding. ``run``: what computes a pass (default: ``net`` itself, eager;
    the engine's U-Net plan built from ``net`` answers the same gates, 3.7x faster on a 1080p frame)."""
    if x.shape[0] != 1:
        raise ValueError("one image at a time")
    if any(a % STRIDE for a, _ in bands):
        raise ValueError(f"band starts must be multiples of {STRIDE}")
    h, w = x.shape[-2:]
    scale, multiple = int(getattr(net, "scale")), int(getattr(net, "multiple", 1))
    ctx = context_rows(pad)
    call = run or net
    with torch.inference_mode():
        gates = _geometry(call, x.shape[1], pad)
        control = _Control()
        runs, total = 0, len(bands) * (len(gates) + 1)

        def step() -> None:
            nonlocal runs
            runs += 1
            report_step(runs / total)

        def band_input(a: int, e: int) -> tuple[int, torch.Tensor]:
            b0, b1 = max(0, a - ctx), min(h, e + ctx)
            return b0, x[:, :, b0:b1]

        for key, m, shrink in gates:
            control.target = key
            rows = int(round(m * (h + 2 * pad + (-h % multiple)) - shrink))
            cols = int(round(m * (w + 2 * pad + (-w % multiple)) - shrink))
            position = (torch.arange(rows, dtype=torch.float64) + shrink / 2) / m - pad  # image row of each map row
            owner = position.floor().clamp(0, h - 1)
            summed = torch.zeros((), dtype=torch.float64)
            for a, e in bands:
                b0, piece = band_input(a, e)
                own = ((owner >= a) & (owner < e)).nonzero().flatten()
                offset = int(round(m * b0))
                control.rows = (int(own[0]) - offset, int(own[-1]) + 1 - offset)
                control.total = None
                _run(call, piece, control)
                if control.total is None:
                    raise RuntimeError("the summed SE gate was not reached")
                summed = summed + control.total
                step()
            control.means[key] = summed / (rows * cols)
        control.target = None
        for a, e in bands:
            b0, piece = band_input(a, e)
            y = _run(call, piece, control)
            assert y is not None
            sink(a * scale, e * scale, y[0, :, (a - b0) * scale:(e - b0) * scale])
            step()


def supports(net: nn.Module) -> bool:
    """Real-CUGAN and CUNet (with or without SE gates): the networks whose layout this module knows."""
    from ..archs.cugan import RealCUGAN
    from ..archs.cunet import CUNet

    return isinstance(net, (RealCUGAN, CUNet))
