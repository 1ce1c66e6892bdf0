"""The wheel families on the ncnn backend: each wheel's original ``.param``/``.bin``, plus the work its
upstream runtime does *outside* the graph, done in numpy exactly as our torch ``forward`` does it.

Why: the ncnn graphs of Real-CUGAN, waifu2x CUNet / UpConv7 and SRMD are not the whole network. Their
C++ runtimes (realcugan-, waifu2x-, srmd-ncnn-vulkan) pad the image, add inputs and crop the result
around the graph; our torch networks do the same inside ``forward`` (see each architecture's module).
Running the original files and repeating that work here keeps one source of truth for the weights (the
same files the zoo converts for PyTorch) and needs no export, which our writer refuses for these
networks anyway (global pooling, size-dependent inputs):

* Real-CUGAN (:mod:`superres.archs.cugan`): pro weights see ``x * 0.7 + 0.15`` and give back
  ``(y - 0.15) / 0.7``; the input is edge-padded 18 / 14 / 19 LR pixels a side (x2 / x3 / x4) plus the
  bottom/right rows that make its size a multiple of 2 (4 at x3); the output is cropped to ``scale`` x
  the input; at x4 the nearest-neighbour 4x input is added.
* waifu2x CUNet (:mod:`superres.archs.cunet`): edge padding 18 (2x) / 28 (1x), multiple 2 / 4, crop.
* waifu2x UpConv7 (:mod:`superres.archs.upconv7`): edge padding 7.
* SRMD (:mod:`superres.archs.srmd`): the 15 constant channels of the bicubic kernel's PCA code and, for
  SRMD (not SRMDNF), the noise level sigma/255, appended to the image channels.
* Real-ESRGAN SRVGG / RRDBNet and SPAN: nothing; their graph is the whole network.

Real-CUGAN and CUNet never tile (their SE gates average the whole image; the descriptor says
``tiling="internal"``), so a whole image that does not fit the Vulkan device is a clear error, not a
tile halved and retried into a different result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..archs.cugan import PRO_GAIN, PRO_OFFSET
from .common import DeployError
from .ncnn_runtime import NcnnSession

if TYPE_CHECKING:  # pragma: no cover
    from ..archs.base import SRNet


@dataclass(frozen=True)
class AroundGraph:
    """What runs around a wheel graph: before it (pro mapping, extra channels, padding), after it (crop,
    pro unmapping, nearest-neighbour residual)."""

    pad: int = 0  # edge-replicated LR pixels on each side
    multiple: int = 1  # extra bottom/right edge rows and columns make the size a multiple of this
    pro: bool = False  # Real-CUGAN pro weights: [0, 1] mapped to [0.15, 0.85] and back
    nearest_add: bool = False  # Real-CUGAN x4: add the input upscaled by nearest neighbour
    maps: tuple[float, ...] = ()  # SRMD: constant channels appended to the image
    whole_image: bool = False  # never tiled: the output depends on the whole input


def around_graph(net: "SRNet") -> AroundGraph | None:
    """The work around ``net``'s wheel graph, as its torch ``forward`` does it; None when its architecture
    has no wheel graph we run."""
    d = net.descriptor
    hp = dict(d.hyperparams)
    if d.arch in ("srvgg", "rrdbnet", "span"):
        return AroundGraph()
    if d.arch == "upconv7":
        from ..archs.upconv7 import BORDER

        return AroundGraph(pad=BORDER)
    if d.arch == "cunet":
        from ..archs.cunet import MULTIPLE, PAD

        return AroundGraph(pad=PAD[d.scale], multiple=MULTIPLE[d.scale], whole_image=True)
    if d.arch == "cugan":
        from ..archs.cugan import PREPADDING, SIZE_MULTIPLE

        return AroundGraph(pad=PREPADDING[d.scale], multiple=SIZE_MULTIPLE[d.scale], pro=bool(hp.get("pro")),
                           nearest_add=d.scale == 4, whole_image=True)
    if d.arch == "srmd":
        from ..archs.srmd import BICUBIC_DEGRADATION

        noise = hp.get("noise_level")
        return AroundGraph(maps=tuple(BICUBIC_DEGRADATION) + (() if noise is None else (int(noise) / 255.0,)))
    return None


class WheelGraphSession(NcnnSession):
    """An :class:`NcnnSession` on a wheel's original files that also does the work around the graph, so
    ``run`` maps an N x C x H x W image to its N x C x sH x sW upscale like the torch network."""

    def __init__(self, param: str | os.PathLike[str], bin_path: str | os.PathLike[str], around: AroundGraph,
                 scale: int, **kwargs: Any) -> None:
        super().__init__(param, bin_path, **kwargs)
        self.around, self.scale = around, int(scale)

    def run(self, x: np.ndarray) -> np.ndarray:
        a, s = self.around, self.scale
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, _, h, w = x.shape
        z = x * np.float32(PRO_GAIN) + np.float32(PRO_OFFSET) if a.pro else x
        if a.maps:
            maps = np.asarray(a.maps, dtype=np.float32)[None, :, None, None]
            z = np.concatenate([z, np.broadcast_to(maps, (n, maps.shape[1], h, w))], axis=1)
        if a.pad or a.multiple > 1:
            ph, pw = -h % a.multiple, -w % a.multiple
            z = np.pad(z, ((0, 0), (0, 0), (a.pad, a.pad + ph), (a.pad, a.pad + pw)), mode="edge")
        try:
            y = super().run(z)
        except torch.OutOfMemoryError:
            if not a.whole_image:
                raise  # the Upscaler halves the tile
            model = self.meta.get("model", self.path.stem)
            raise DeployError(
                f"{model} needs the whole {w}x{h} image on {self.device_label} "
                "at once (its SE gates average the whole image, so it never tiles) and the device ran out of "
                "memory: use a smaller image, ncnn's CPU path (--device cpu) or --backend torch") from None
        y = y[:, :, : s * h, : s * w]
        if y.shape[2:] != (s * h, s * w):
            raise DeployError(f"'{self.path.name}' gave {y.shape[3]}x{y.shape[2]} for a {w}x{h} input, "
                              f"not x{s}: it is not the graph its model card names")
        if a.pro:
            y = (y - np.float32(PRO_OFFSET)) / np.float32(PRO_GAIN)
        if a.nearest_add:
            y = y + x.repeat(4, axis=2).repeat(4, axis=3)
        return np.ascontiguousarray(y, dtype=np.float32)
