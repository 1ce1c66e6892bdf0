"""Ensembles at test time, and their spread as a per-pixel uncertainty map.

Three ways to get several plausible outputs for one input, all applied around the network call on each
tile (so they compose with tiling, alpha, grey and luma networks exactly as a single model does):

* ``self_ensemble``: the 8 dihedral transforms (4 rotations x optional flip) of the tile, each output
  transformed back (Lim et al., EDSR "+", 2017). Free of training, ~8x the compute.
* ``mc_dropout=N``: N passes with the model's dropout / stochastic-depth layers left on (Gal & Ghahramani,
  2016). Only meaningful for a model trained with dropout; a model without any is refused.
* ``members``: several loaded models of the same scale averaged (a deep ensemble of zoo models).

The output is the mean of all samples; the uncertainty is their per-pixel standard deviation (population,
averaged over colour channels), in the network's [0, 1] units. Where the samples disagree the model is
guessing: calibration (``benchmarks/calibration.py``) measures how well that ranks the real error.
"""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from ..errors import SuperresError
from .tiling import TilePlan, run_tiled
from .upscaler import _resize_hwc, network_passes

if TYPE_CHECKING:  # pragma: no cover
    from ..io.image import ImageData
    from .upscaler import UpscaleOptions, Upscaler

__all__ = ["Ensemble", "UncertainResult", "dihedral", "undo_dihedral", "dropout_layers"]

Forward = Callable[[torch.Tensor], torch.Tensor]


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` in 0..7 of an NCHW tensor: rotate by ``k % 4`` quarter turns, then flip if ``k >= 4``."""
    y = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(y, dims=(3,)) if k >= 4 else y


def undo_dihedral(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`dihedral` (flip first, then rotate back)."""
    if k >= 4:
        y = torch.flip(y, dims=(3,))
    return torch.rot90(y, -(k % 4), dims=(2, 3))


def dropout_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    """Modules that are random in training mode: dropout with p > 0, stochastic depth (``drop_path`` > 0)."""
    found: list[torch.nn.Module] = []
    for m in net.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0:
            found.append(m)
        elif isinstance(getattr(m, "drop_path", None), float) and m.drop_path > 0:  # type: ignore[operator]
            found.append(m)
    return found


@dataclass(frozen=True)
class UncertainResult:
    """An upscaled image and its per-pixel uncertainty (H x W float32, std of the samples in [0, 1] units)."""

    image: "ImageData"
    uncertainty: np.ndarray
    samples: int

    def summary(self) -> dict[str, float]:
        """Mean and 99th percentile of the uncertainty in 8-bit grey levels (std x 255)."""
        u = self.uncertainty.astype(np.float64) * 255.0
        return {"uncertainty_mean": float(u.mean()), "uncertainty_p99": float(np.percentile(u, 99))}


class Ensemble:
    """Several outputs per tile from one :class:`Upscaler` (and optional member models); stateless per call.

    Use :meth:`as_upscaler` for the mean alone through every existing path (batch, video, server), and
    :meth:`upscale_image` for the mean plus the uncertainty map.
    """

    def __init__(self, base: "Upscaler", *, self_ensemble: bool = False, mc_dropout: int = 0,
                 members: Sequence["Upscaler"] = (), seed: int = 0) -> None:
        if mc_dropout < 0:
            raise SuperresError(f"MC-dropout sample count must be positive, not {mc_dropout}")
        self.base = base
        self.self_ensemble = self_ensemble
        self.mc_dropout = mc_dropout
        self.members = tuple(members)
        self.seed = seed
        d = base.descriptor
        for m in self.members:
            md = m.descriptor
            if (md.scale, md.in_channels, md.out_channels) != (d.scale, d.in_channels, d.out_channels):
                raise SuperresError(f"cannot ensemble {m.name} (x{md.scale}, {md.in_channels}->{md.out_channels} "
                                    f"channels) with {base.name} (x{d.scale}, {d.in_channels}->{d.out_channels})")
        self._mc_net: torch.nn.Module | None = None
        self._mc_lock = threading.Lock()
        if mc_dropout:
            self._mc_net = self._prepare_mc(base)
        self.size_multiple = math.lcm(d.size_multiple, *(m.descriptor.size_multiple for m in self.members))

    @property
    def samples(self) -> int:
        """Outputs averaged per tile."""
        views = 8 if self.self_ensemble else 1
        base = self.mc_dropout if self.mc_dropout else 1
        return views * (base + len(self.members))

    @property
    def label(self) -> str:
        parts = []
        if self.self_ensemble:
            parts.append("x8")
        if self.mc_dropout:
            parts.append(f"mc-dropout:{self.mc_dropout}")
        if self.members:
            parts.append("models:" + "+".join([self.base.name, *(m.name for m in self.members)]))
        return ",".join(parts) or "none"

    @staticmethod
    def _prepare_mc(base: "Upscaler") -> torch.nn.Module:
        if base.backend != "torch":
            raise SuperresError(f"MC-dropout needs the torch backend, not {base.backend}")
        net = copy.deepcopy(base._net32)  # a private copy: train-mode layers never leak to other callers
        layers = dropout_layers(net)
        if not layers:
            raise SuperresError(f"{base.name} has no dropout or stochastic-depth layers (p > 0), so MC-dropout "
                                "would repeat one output; use the x8 self-ensemble instead")
        for m in layers:
            m.train(True)
        return net

    # ---- one tile --------------------------------------------------------------------------------------
    def _single_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs: list[torch.Tensor] = []
        if self._mc_net is not None:
            dev = self.base.device
            cuda = [dev.index or 0] if dev.type == "cuda" else []
            with self._mc_lock, torch.inference_mode(), torch.random.fork_rng(devices=cuda):
                torch.manual_seed(self.seed)  # the same input gives the same samples; callers' RNG untouched
                for _ in range(self.mc_dropout):
                    outs.append(self._mc_net(x.to(dev, torch.float32)).float().cpu())
        else:
            outs.append(self.base.forward(x))
        outs += [m.forward(x) for m in self.members]
        return outs

    def sample_stack(self, x: torch.Tensor) -> torch.Tensor:
        """All outputs for one float32 NCHW tile, stacked: K x N x C x H' x W'."""
        if not self.self_ensemble:
            return torch.stack(self._single_outputs(x))
        outs = []
        for k in range(8):
            t = dihedral(x, k).contiguous()
            outs += [undo_dihedral(y, k) for y in self._single_outputs(t)]
        return torch.stack(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ensemble mean on one tile (same contract as :meth:`Upscaler.forward`)."""
        return self.sample_stack(x).mean(0)

    def forward_with_spread(self, x: torch.Tensor) -> torch.Tensor:
        """Mean (C channels) and the channel-averaged std of the samples (1 channel), concatenated."""
        s = self.sample_stack(x)
        mean = s.mean(0)
        spread = s.std(0, correction=0).mean(1, keepdim=True) if s.shape[0] > 1 else torch.zeros_like(mean[:, :1])
        return torch.cat([mean, spread], 1)

    # ---- whole images ----------------------------------------------------------------------------------
    def as_upscaler(self) -> "Upscaler":
        """A view of the base upscaler whose every tile is the ensemble mean (weights shared, not copied)."""
        view = copy.copy(self.base)
        view.forward = self.forward  # type: ignore[method-assign]
        view.descriptor = replace(self.base.descriptor, size_multiple=self.size_multiple)
        return view

    def _plan(self, options: "UpscaleOptions") -> TilePlan:
        plans = [self.base.plan(options), *(m.plan(options) for m in self.members)]
        tiles = [p.tile for p in plans if p.tile]
        tile = 0 if any(p.tile == 0 for p in plans) else min(tiles)
        return TilePlan(tile=tile, overlap=plans[0].overlap, context=max(p.context for p in plans))

    def upscale_planes(self, planes: np.ndarray, options: "UpscaleOptions | None" = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """C x H x W float planes -> (H' x W' x C mean, H' x W' uncertainty), both float32."""
        opts = options or self.base.options
        c, h, w = planes.shape
        s = self.base.scale
        oc = self.base.descriptor.out_channels
        mean = np.empty((h * s, w * s, oc), np.float32)
        unc = np.empty((h * s, w * s), np.float32)

        def sink(r0: int, r1: int, rows: np.ndarray) -> None:
            mean[r0:r1] = np.clip(np.moveaxis(rows[:oc], 0, -1), 0.0, 1.0)
            unc[r0:r1] = np.maximum(rows[oc], 0.0)

        x = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
        run_tiled(self.forward_with_spread, x, s, self._plan(opts), sink, size_multiple=self.size_multiple)
        return mean, unc

    def upscale_image(self, img: "ImageData", *, outscale: float | None = None, width: int | None = None,
                      height: int | None = None, options: "UpscaleOptions | None" = None) -> UncertainResult:
        """Upscale a decoded image (alpha, bit depth, metadata kept) and return its uncertainty map.

        The map is that of the first network pass; sizes other than the model's scale are reached as
        :meth:`Upscaler.upscale_image` does (more ensemble passes, then bicubic), the map resized along."""
        from ..io.image import as_float
        from .alpha import straight_colour_for_network
        from .upscaler import target_size

        opts = options or self.base.options
        view = self.as_upscaler()
        color = as_float(img.color)
        h, w = color.shape[:2]
        size = target_size(w, h, self.base.scale, outscale, width, height)
        if img.alpha is not None:
            color = straight_colour_for_network(color, as_float(img.alpha))
        first, unc = self.upscale_float(color, opts)
        cur = first
        s = self.base.scale
        passes = network_passes(s, max(size[0] / w, size[1] / h))
        for _ in range(passes - 1):
            cur = view.upscale_float(cur, opts, np.float32)
        if (cur.shape[1], cur.shape[0]) != size:
            cur = np.clip(_resize_hwc(cur, size), 0.0, 1.0)
        if unc.shape != (size[1], size[0]):
            unc = np.maximum(_resize_hwc(unc[..., None], size, mode="bilinear")[..., 0], 0.0)
        out_dtype = np.dtype(np.uint16 if img.bit_depth == 16 else np.uint8)
        maxv = float(np.iinfo(out_dtype).max)
        alpha = None
        if img.alpha is not None:
            a_up = view._upscale_alpha(as_float(img.alpha), size, opts)
            alpha = np.floor(np.clip(a_up, 0, 1) * maxv + 0.5).astype(out_dtype)
        result = replace(img, color=np.floor(cur * maxv + 0.5).astype(out_dtype), alpha=alpha)
        return UncertainResult(result, unc.astype(np.float32), self.samples)

    def upscale_float(self, color: np.ndarray, opts: "UpscaleOptions") -> tuple[np.ndarray, np.ndarray]:
        """One ensemble pass on H x W x C (C = 1 or 3) float colour in [0, 1] -> (H' x W' x C mean, H' x W'
        uncertainty), adapted to the network's channels as the upscaler does (grey via RGB, RGB via Y)."""
        c = color.shape[2]
        need = self.base.descriptor.in_channels
        if need == c:
            return self.upscale_planes(np.moveaxis(color, -1, 0), opts)
        if need == 3 and c == 1:
            rgb, unc = self.upscale_planes(np.repeat(np.moveaxis(color, -1, 0), 3, 0), opts)
            return rgb.mean(-1, keepdims=True), unc
        if need == 1 and c == 3:
            from ..metrics.color import rgb_to_ycbcr, ycbcr_to_rgb

            ycc = np.asarray(rgb_to_ycbcr(color.astype(np.float64)), np.float32)
            y_up, unc = self.upscale_planes(ycc[None, ..., 0], opts)
            h, w = y_up.shape[:2]
            chroma = _resize_hwc(ycc[..., 1:], (w, h))
            full = np.concatenate([y_up, chroma], -1).astype(np.float64)
            return np.clip(np.asarray(ycbcr_to_rgb(full), np.float32), 0.0, 1.0), unc
        raise SuperresError(f"cannot feed a {c}-channel image to a {need}-channel network")
