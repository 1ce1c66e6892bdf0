"""The stateless upscale pipeline: one loaded network, many concurrent calls.

An :class:`Upscaler` holds only the network and its settings; every call keeps its images in local
variables, so one instance may serve several threads at once (unlike helpers that keep the last image
on ``self``). The network sees float NCHW in [0, 1]; this module adapts images to it: grey to RGB and
back, RGB to Y for 1-channel models, straight colour (hidden pixels bled) with a separately upscaled
alpha, 16-bit kept.
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar, overload

import numpy as np
import torch

from ..archs.base import ModelDescriptor, SRNet, get_arch, step_hook
from ..errors import SuperresError
from . import se_bands
from .alpha import straight_colour_for_network
from .continuous import auto_tile as continuous_auto_tile
from .continuous import bands, render_tiled
from .devices import (
    WHOLE_PASS_SHARE,
    auto_tile,
    available_memory,
    bytes_per_lr_pixel,
    memory_share,
    pick_device,
    pick_dtype,
)
from .fast import accelerate, worker_map
from .tiling import TilePlan, run_tiled, spans

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

    from ..io.image import ImageData
    from ..zoo.registry import ModelCard

log = logging.getLogger(__name__)
AlphaMode = Literal["model", "bicubic"]
T = TypeVar("T")


@dataclass(frozen=True)
class UpscaleOptions:
    """Per-call choices; the defaults suit most images."""

    tile: int | None = None  # LR tile side; None = chosen from free memory; 0 = whole image
    overlap: int = 16  # LR pixels blended between tiles
    context: int | None = None  # LR pixels of context per tile side; None = min(receptive field, 48)
    alpha: AlphaMode = "model"


class Upscaler:
    """A loaded super-resolution network with everything needed to apply it to real images."""

    def __init__(
        self,
        net: SRNet,
        *,
        name: str = "",
        card: "ModelCard | None" = None,
        device: str = "auto",
        precision: str = "auto",
        options: UpscaleOptions | None = None,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """``forward``: a runtime session (superres.deploy) that runs the tiles instead of ``net``, taking and
        returning float32 CPU NCHW tensors; ``net`` then only describes the model (it may be on 'meta')."""
        self.name = name or net.arch_name
        self.card = card
        self.descriptor: ModelDescriptor = net.descriptor
        self.options = options or UpscaleOptions()
        net = net.eval().requires_grad_(False)
        if forward is not None:
            self.device, self.dtype = torch.device("cpu"), torch.float32
            self._net32 = self._net = net
            self._forward: Callable[[torch.Tensor], torch.Tensor] = forward
        else:
            self.device = pick_device(device)
            self.dtype = pick_dtype(precision, self.device, self.descriptor)
            self._net32 = net.to(self.device)
            half = self.dtype != torch.float32
            self._net = _half_copy(net, self.dtype, self.device) if half else self._net32
            # fp32 CPU networks run through the fastest method measured for them (Winograd kernels,
            # channels-last); anything else runs eager. Equal to eager within float rounding (test_fast.py).
            self._forward = accelerate(self._net, self.device) if self.dtype == torch.float32 else self._net
        self.backend: str = getattr(forward, "backend", "torch")  # a session names its runtime
        self._tile_lock = threading.Lock()  # guards only the learned OOM tile size
        self._oom_tile: int | None = None

    # ---- properties ------------------------------------------------------------------------------------
    @property
    def scale(self) -> int:
        return self.descriptor.scale

    @property
    def network(self) -> SRNet:
        """The fp32 network (on 'meta' when a runtime session runs it): what the weights are, for records."""
        return self._net32

    def __repr__(self) -> str:
        d = self.descriptor
        return f"Upscaler({self.name!r}, arch={d.arch}, x{d.scale}, params={d.params:,}, device={self.device}, dtype={self.dtype})"

    # ---- the network on one tile -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network on a float32 CPU NCHW tensor; returns float32 CPU. Non-finite half-precision output
        is recomputed in fp32."""
        with torch.inference_mode():
            xin = x.to(self.device, self.dtype)
            y = self._forward(xin)
            if self.dtype != torch.float32 and not torch.isfinite(y).all():
                log.warning("non-finite %s output; recomputing this tile in fp32", self.dtype)
                y = self._net32(x.to(self.device, torch.float32))
            return y.float().cpu()

    def with_tile_hooks(self, before: Callable[[], None] | None = None,
                        after: Callable[[], None] | None = None,
                        within: Callable[[float], None] | None = None) -> "Upscaler":
        """A view of this upscaler whose every network call (one per tile) runs ``before`` and ``after``:
        progress bars count tiles with it, a server cancels between tiles (``before`` raises). A network that
        reports steps inside one call (DAT in bands: ``archs.base.report_step``) also runs ``before`` at each
        step, and ``within`` gets the share of the call done (a bar that moves during one long tile).

        A shallow copy shares the network and its weights; only ``forward`` is replaced on the copy,
        so other threads using the original are unaffected."""
        view = copy.copy(self)
        inner, inner_render, inner_call = self.forward, self.render_tile, self._hooked
        hooked = before is not None or within is not None

        def step(fraction: float) -> None:
            if before is not None:
                before()
            if within is not None:
                within(fraction)

        def call(fn: Callable[[], T]) -> T:
            if before is not None:
                before()
            with step_hook(step if hooked else None):
                y = fn()
            if after is not None:
                after()
            return y

        view.forward = lambda x: call(lambda: inner(x))  # type: ignore[method-assign]
        view.render_tile = lambda piece, ys, xs, cell: call(  # type: ignore[method-assign]
            lambda: inner_render(piece, ys, xs, cell))
        view._hooked = lambda fn: call(lambda: inner_call(fn))  # type: ignore[method-assign]
        return view

    def with_share_hook(self, tiles: int, share: Callable[[float], None]) -> "Upscaler":
        """A view that reports the share of one image done, over its ``tiles`` network calls (:meth:`count_tiles`)
        and the steps a long call reports inside (a progress bar that moves during one large photo)."""
        done = [0]

        def after() -> None:
            done[0] += 1
            share(min(1.0, done[0] / max(tiles, 1)))

        return self.with_tile_hooks(after=after, within=lambda f: share(min(1.0, (done[0] + f) / max(tiles, 1))))

    def _hooked(self, fn: Callable[[], T]) -> T:
        """``fn()`` as one network call: with the hooks of :meth:`with_tile_hooks` on a view, none here (a
        pass that is not one ``forward`` call, the SE bands, runs through it)."""
        return fn()

    def render_tile(self, piece: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                    cell: tuple[float, float]) -> np.ndarray:
        """A continuous-scale network (LIIF) on one LR crop: the output pixels at ``ys x xs`` (LR pixels
        relative to the crop) with cell ``(height, width)``; float32 C x rows x cols."""
        net: Any = self._net
        if self._net is not self._net32 or not hasattr(net, "render"):
            raise SuperresError(f"{self.name} renders any scale only on the PyTorch backend in fp32")
        with torch.inference_mode():
            proj = net.encode(piece.to(self.device, self.dtype))
            # on a CPU the query blocks go to single-threaded workers (robust when other jobs share the cores)
            blocks = worker_map() if self.device.type == "cpu" else None
            y = net.render(proj, ys.to(self.device), xs.to(self.device), cell, map_blocks=blocks)
            return y[0].float().cpu().numpy()

    def count_tiles(self, w: int, h: int, size: tuple[int, int], alpha: bool = False,
                    options: UpscaleOptions | None = None) -> int:
        """Network calls that upscaling a w x h image to ``size`` will make (for progress and time left),
        following the pass and tile logic of :meth:`upscale_image`."""
        opts = options or self.options
        plan = self.plan(opts)
        if self.descriptor.continuous:
            tile = self._continuous_tile(opts, max(size[0] / w, size[1] / h))
            return len(bands(h, tile)) * len(bands(w, tile)) * (2 if alpha and opts.alpha == "model" else 1)
        passes = network_passes(self.scale, max(size[0] / w, size[1] / h))
        total, cw, ch = 0, w, h
        for _ in range(passes):
            total += len(spans(ch, plan.tile, plan.overlap)) * len(spans(cw, plan.tile, plan.overlap))
            cw, ch = cw * self.scale, ch * self.scale
        return total * (2 if alpha and opts.alpha == "model" else 1)

    # ---- whole arrays ----------------------------------------------------------------------------------
    def plan(self, options: UpscaleOptions | None = None) -> TilePlan:
        """The tile size, overlap and context this upscaler will use with ``options``."""
        return self._plan(options or self.options)

    def _plan(self, options: UpscaleOptions) -> TilePlan:
        d = self.descriptor
        tile = options.tile
        if tile is None:
            tile = self._oom_tile or self._memory_tile()
        rf = d.receptive_field
        context = options.context if options.context is not None else min(rf if rf is not None else 48, 48)
        if d.tiling == "internal":
            tile = 0
        return TilePlan(tile=tile, overlap=options.overlap, context=context)

    def _memory_tile(self) -> int:
        """Tile side from free memory: the runtime's own device (a Vulkan heap) when it knows it, else ours."""
        from_session = getattr(self._forward, "auto_tile", None)
        if from_session is not None:
            side = from_session(bytes_per_lr_pixel(self.descriptor, self.dtype))
            if side:
                return int(side)
        banded = self.backend == "torch" and get_arch(self.descriptor.arch).bands
        return auto_tile(self.descriptor, self.device, self.dtype, exact_whole=banded)

    def _continuous_tile(self, options: UpscaleOptions, factor: float) -> int:
        """LR tile side for a continuous network: the plan's, shrunk when automatic so that one strip of
        output rows stays small at large factors (x12: 85 LR pixels, 1020 output rows)."""
        tile = self._plan(options).tile
        return continuous_auto_tile(tile, factor) if options.tile is None and tile > 0 else tile

    def _run_planes(self, planes: np.ndarray, sink: Callable[[int, int, np.ndarray], None], options: UpscaleOptions,
                    size: tuple[int, int] | None = None) -> None:
        """Run the network over C x H x W float32 planes (C = network input channels); ``size`` (width,
        height): the output size of a continuous network (None: x scale)."""
        x = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
        plan = self._plan(options)
        if self.descriptor.continuous:
            h, w = planes.shape[1:]
            size = size or (w * self.scale, h * self.scale)
            tile = self._continuous_tile(options, max(size[0] / w, size[1] / h))
            context = max(plan.context, 0)
            render_tiled(self.render_tile, x, size, tile, context, sink)
            return
        se_plan = self._se_band_plan(planes.shape[1], planes.shape[2], plan)
        if se_plan:
            self._run_se_bands(x, sink, se_plan)
            return
        while True:
            try:
                run_tiled(self.forward, x, self.scale, plan, sink, size_multiple=self.descriptor.size_multiple)
                return
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                h, w = planes.shape[1:]
                current = plan.tile or max(h, w)
                if current <= 32:
                    raise SuperresError("out of memory even with 32-pixel tiles; try --device cpu") from None
                plan = replace(plan, tile=max(32, current // 2))
                with self._tile_lock:
                    self._oom_tile = plan.tile
                log.warning("out of memory; retrying with %d-pixel tiles", plan.tile)

    def _se_band_plan(self, h: int, w: int, plan: TilePlan) -> list[tuple[int, int]]:
        """The row bands to run an image in when a whole-image pass on the CPU would need more memory than is
        free: Real-CUGAN and CUNet (SE gates: their plan's tile is 0) on the torch backend, with the whole
        image's SE means (:mod:`.se_bands`, same result); [] when one pass fits. Anything else past free memory
        is refused in one line before it starts, where the kernel would kill the process instead (realcugan-x2
        on a 3840x2160 frame needs ~35 GB in one pass). Tiles are not checked (automatic ones fit by
        construction), nor a Vulkan session's own."""
        if plan.tile or self.device.type != "cpu" or getattr(self._forward, "auto_tile", None) is not None:
            return []
        per_pixel = bytes_per_lr_pixel(self.descriptor, self.dtype)
        need, free = h * w * per_pixel, available_memory(self.device)
        if need <= free:
            return []
        internal = self.descriptor.tiling == "internal"
        if internal and self.backend == "torch" and se_bands.supports(self._net):
            smallest = (se_bands.STRIDE + 2 * se_bands.context_rows(self._net.pad)) * w * per_pixel
            share = free * memory_share(WHOLE_PASS_SHARE)  # divided among a server's concurrent passes
            if smallest <= share:
                return se_bands.band_plan(h, w, per_pixel, share, self._net.pad)

        def size(n: float) -> str:
            return f"{n / (1 << 30):.1f} GB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MB"

        why = ("it runs whole images (its SE gates average the whole picture); use a model that tiles, or a smaller "
               "image" if internal else "--tile 0 runs it whole; drop --tile 0 to tile it")
        if internal and self.backend != "torch":
            why += ", or --backend torch (bands of rows with the whole image's SE means)"
        raise SuperresError(f"{self.name} on this {w}x{h} image needs about {size(need)} and {size(free)} is free: "
                            f"{why}")

    def _run_se_bands(self, x: torch.Tensor, sink: Callable[[int, int, np.ndarray], None],
                      bands: list[tuple[int, int]]) -> None:
        """The whole-image result of an SE U-Net in ``bands`` of rows (:meth:`_se_band_plan`), as one network
        call for progress and cancel (a step per band and sweep)."""
        net: Any = self._net
        log.info("%s: %dx%d does not fit one pass; %d bands of rows with the whole image's SE means",
                 self.name, x.shape[-1], x.shape[-2], len(bands))
        self._hooked(lambda: se_bands.upscale_in_bands(
            net, x.to(self.device, self.dtype), bands, net.pad,
            lambda r0, r1, rows: sink(r0, r1, rows.float().cpu().numpy()), run=self._forward))

    def upscale_planes(self, planes: np.ndarray, out: np.ndarray | None = None, options: UpscaleOptions | None = None,
                       size: tuple[int, int] | None = None) -> np.ndarray:
        """Upscale C x H x W float planes in [0, 1] whose C matches the network; output H' x W' x C.

        ``out`` may be a preallocated uint8/uint16/float32 array (H*s x W*s x C): rows are written into
        it as soon as they are final, so peak memory is the output plus one row of tiles. ``size``
        (width, height): any output size, for continuous networks (LIIF) only."""
        opts = options or self.options
        c, h, w = planes.shape
        s = self.scale
        oc = self.descriptor.out_channels
        out_w, out_h = size or (w * s, h * s)
        if out is None:
            out = np.empty((out_h, out_w, oc), np.float32)
        maxv = _max_value(out.dtype)

        def sink(r0: int, r1: int, rows: np.ndarray) -> None:
            out[r0:r1] = _quantise(np.moveaxis(rows, 0, -1), out.dtype, maxv)

        self._run_planes(planes, sink, opts, size)
        return out

    def upscale_float(self, img: np.ndarray, options: UpscaleOptions | None = None, out_dtype: Any = np.float32,
                      size: tuple[int, int] | None = None) -> np.ndarray:
        """Upscale H x W x C (C = 1 or 3) float image in [0, 1] by the network's scale, any network
        (``size`` = (width, height): any size, continuous networks only)."""
        opts = options or self.options
        h, w, c = img.shape
        s = self.scale
        need = self.descriptor.in_channels
        out_w, out_h = size or (w * s, h * s)
        out = np.empty((out_h, out_w, c), dtype=out_dtype)
        if need == c:
            return self.upscale_planes(np.moveaxis(img, -1, 0), out, opts, size)
        if need == 3 and c == 1:  # grey through an RGB network, back to grey
            rgb = self.upscale_planes(np.repeat(np.moveaxis(img, -1, 0), 3, 0), None, opts, size)
            out[..., 0] = _quantise(rgb.mean(-1), out.dtype, _max_value(out.dtype))
            return out
        if need == 1 and c == 3:  # luma network: Y through the net, chroma by bicubic
            from ..metrics.color import rgb_to_ycbcr, ycbcr_to_rgb

            ycc = np.asarray(rgb_to_ycbcr(img.astype(np.float64)), np.float32)  # [0, 1] scale
            y_up = self.upscale_planes(ycc[None, ..., 0], None, opts, size)[..., 0]
            chroma = _resize_planes(np.moveaxis(ycc[..., 1:], -1, 0), (out_w, out_h))
            full = np.stack([y_up, chroma[0], chroma[1]], -1).astype(np.float64)
            out[:] = _quantise(np.asarray(ycbcr_to_rgb(full)), out.dtype, _max_value(out.dtype))
            return out
        raise SuperresError(f"cannot feed a {c}-channel image to a {need}-channel network")

    # ---- user-facing -----------------------------------------------------------------------------------
    @overload
    def upscale(self, image: np.ndarray, *, outscale: float | None = ...) -> np.ndarray: ...
    @overload
    def upscale(self, image: torch.Tensor, *, outscale: float | None = ...) -> torch.Tensor: ...
    @overload
    def upscale(self, image: "PILImage.Image", *, outscale: float | None = ...) -> "PILImage.Image": ...

    def upscale(self, image: Any, *, outscale: float | None = None) -> Any:
        """Upscale a numpy array (H x W [x C], uint8/uint16/float in [0,1]), a PIL image or a tensor
        (C x H x W or N x C x H x W, float in [0,1]); returns the same kind."""
        if isinstance(image, torch.Tensor):
            return self._upscale_tensor(image, outscale)
        if isinstance(image, np.ndarray):
            from ..io.image import from_array

            result = self.upscale_image(from_array(image), outscale=outscale)
            return _to_dtype(result, image)
        try:
            from PIL import Image as PILImage
        except ImportError:  # pragma: no cover
            PILImage = None  # type: ignore[assignment]
        if PILImage is not None and isinstance(image, PILImage.Image):
            from ..io.image import from_pil, to_pil

            return to_pil(self.upscale_image(from_pil(image), outscale=outscale))
        raise TypeError(f"cannot upscale a {type(image).__name__}; expected numpy array, PIL image or tensor")

    __call__ = upscale

    def _upscale_tensor(self, x: torch.Tensor, outscale: float | None) -> torch.Tensor:
        squeeze = x.ndim == 3
        batch = x[None] if squeeze else x
        if batch.ndim != 4:
            raise SuperresError(f"expected a C x H x W or N x C x H x W tensor, got shape {tuple(x.shape)}")
        outs = []
        for item in batch:
            img = item.detach().float().cpu().permute(1, 2, 0).numpy()
            up = self._upscale_chain(img, outscale, self.options)
            outs.append(torch.from_numpy(up).permute(2, 0, 1))
        y = torch.stack(outs).to(x.device)
        return y[0] if squeeze else y

    def _upscale_chain(self, img: np.ndarray, outscale: float | None, opts: UpscaleOptions,
                       size: tuple[int, int] | None = None, out_dtype: Any = np.float32) -> np.ndarray:
        """Apply the network as many times as the requested size needs, then resize to it exactly."""
        h, w = img.shape[:2]
        if size is None:
            factor = float(outscale) if outscale else float(self.scale)
            size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
        if self.descriptor.continuous:  # any size natively, one pass
            check_continuous_scale(max(size[0] / w, size[1] / h))
            return self.upscale_float(img, opts, out_dtype, size=size)
        passes = network_passes(self.scale, max(size[0] / w, size[1] / h))
        cur = img
        for i in range(passes):
            last = i == passes - 1
            native = (cur.shape[1] * self.scale, cur.shape[0] * self.scale) == size
            dt = out_dtype if last and native else np.float32
            cur = self.upscale_float(cur, opts, dt)
        if (cur.shape[1], cur.shape[0]) != size:
            cur = _resize_hwc(cur.astype(np.float32) / _max_value(cur.dtype), size)
            cur = _quantise(cur, np.dtype(out_dtype), _max_value(np.dtype(out_dtype)))
        return cur

    def upscale_image(
        self,
        img: "ImageData",
        *,
        outscale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        options: UpscaleOptions | None = None,
    ) -> "ImageData":
        """Upscale a decoded image with its alpha, bit depth and metadata kept.

        Colour (of RGBA images too) is written by the tiler straight into a uint8/uint16 array, so a
        4000 x 3000 photo at x4 needs the 576 MB output, not a 2.3 GB float buffer."""
        from ..io.image import as_float

        opts = options or self.options
        color = as_float(img.color)
        h, w = color.shape[:2]
        size = target_size(w, h, self.scale, outscale, width, height)
        out_dtype = np.dtype(np.uint16 if img.bit_depth == 16 else np.uint8)
        if img.alpha is None:
            return replace(img, color=self._upscale_chain(color, None, opts, size=size, out_dtype=out_dtype))
        a = as_float(img.alpha)
        a_up = self._upscale_alpha(a, size, opts)
        # straight colour, hidden pixels bled from visible ones: the visible area comes out as in an
        # RGB run (premultiplying would feed the network a black surround and darken it)
        up = self._upscale_chain(straight_colour_for_network(color, a), None, opts, size=size, out_dtype=out_dtype)
        return replace(img, color=up, alpha=_quantise(a_up, out_dtype, _max_value(out_dtype)))

    def _upscale_alpha(self, a: np.ndarray, size: tuple[int, int], opts: UpscaleOptions) -> np.ndarray:
        if opts.alpha == "bicubic":
            return np.clip(_resize_hwc(a[..., None], size)[..., 0], 0, 1)
        return np.clip(self._upscale_chain(a[..., None], None, opts, size=size)[..., 0], 0, 1)


# ---- helpers ---------------------------------------------------------------------------------------------


def target_size(w: int, h: int, scale: int, outscale: float | None, width: int | None, height: int | None) -> tuple[int, int]:
    """Output (width, height) from ``--outscale`` or ``--width``/``--height`` (aspect kept if one is given),
    at least 1 x 1 (:func:`limits.output_size` is the unclamped size the pre-run checks look at)."""
    from .limits import output_size

    if not (width or height) and outscale and float(outscale) <= 0:
        raise SuperresError(f"outscale must be positive, got {outscale}")
    out_w, out_h = output_size(w, h, scale, outscale, width, height)
    return max(1, out_w), max(1, out_h)


def check_continuous_scale(factor: float) -> None:
    """A continuous network's range (LIIF: 1-30), as a one-line error."""
    from ..archs.liif import check_scale

    try:
        check_scale(factor)
    except ValueError as e:
        raise SuperresError(str(e)) from None


def _max_value(dtype: Any) -> float:
    dt = np.dtype(dtype)
    return float(np.iinfo(dt).max) if dt.kind in "ui" else 1.0


def _quantise(x: np.ndarray, dtype: Any, maxv: float) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.clip(x, 0.0, 1.0).astype(dt, copy=False)
    return np.floor(np.clip(x, 0.0, 1.0) * maxv + 0.5).astype(dt)


def network_passes(scale: int, factor: float) -> int:
    """How many times a x``scale`` network runs to reach ``factor`` (then a resize finishes): the fewest
    passes that reach it, at most 3 (x64 with a x4 model)."""
    passes = 1
    while scale**passes < factor - 1e-9 and passes < 3:
        passes += 1
    return passes


def _resize_planes(planes: np.ndarray, size: tuple[int, int], mode: str = "bicubic") -> np.ndarray:
    """Resize of C x H x W float planes to (width, height), antialiased when shrinking."""
    t = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
    w, h = size
    aa = w < planes.shape[2] or h < planes.shape[1]
    y = torch.nn.functional.interpolate(t, size=(h, w), mode=mode, align_corners=False, antialias=aa)
    return y[0].numpy()


def _resize_hwc(img: np.ndarray, size: tuple[int, int], mode: str = "bicubic") -> np.ndarray:
    return np.moveaxis(_resize_planes(np.moveaxis(img, -1, 0), size, mode), 0, -1)


def _to_dtype(result: "ImageData", like: np.ndarray) -> np.ndarray:
    from ..io.image import as_float

    arr = as_float(result.color)
    if result.alpha is not None:
        arr = np.concatenate([arr, as_float(result.alpha)[..., None]], -1)
    if like.ndim == 2:
        arr = arr[..., 0]
    if like.dtype.kind in "ui":
        return _quantise(arr, like.dtype, _max_value(like.dtype))
    return arr.astype(like.dtype)


def _half_copy(net: SRNet, dtype: torch.dtype, device: torch.device) -> SRNet:
    import copy

    return copy.deepcopy(net).to(device=device, dtype=dtype)
