"""The contract every architecture fulfils: a typed descriptor, hyper-parameter detection, a registry.

An architecture module defines an ``nn.Module`` subclass of :class:`SRNet` and registers one
:class:`ArchSpec`. The spec knows how to build the network from hyper-parameters and how to recognise
its own state dicts (``detect`` returns the hyper-parameters inferred from key names and tensor shapes,
or ``None``). Nothing here imports an architecture: the registry imports each module on first use, so
``import superres`` stays cheap.

All networks share one I/O convention: float NCHW input in [0, 1] (RGB, or Y for 1-channel models),
output at ``scale`` times the size in the same range (not clamped).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Mapping

import torch
from torch import nn

StateDict = Mapping[str, torch.Tensor]
Tiling = Literal["safe", "discouraged", "internal"]

# name -> module that registers it; imported lazily. The order is the detection order: ``detect`` asks each
# architecture in turn and the first that recognises a state dict wins. Every detector checks key names
# that only its own layout has, so no two match the same file today; a new architecture whose keys are a
# superset of another's must come before it. Plugins (superres.plugins) are asked after these.
_ARCH_MODULES: dict[str, str] = {
    "srcnn": "superres.archs.srcnn",
    "fsrcnn": "superres.archs.fsrcnn",
    "espcn": "superres.archs.espcn",
    "edsr": "superres.archs.edsr",
    "rcan": "superres.archs.rcan",
    "rrdbnet": "superres.archs.rrdbnet",
    "srvgg": "superres.archs.srvgg",
    "swinir": "superres.archs.swinir",
    "span": "superres.archs.span",
    "srmd": "superres.archs.srmd",
    "upconv7": "superres.archs.upconv7",
    "cugan": "superres.archs.cugan",
    "cunet": "superres.archs.cunet",
    "hat": "superres.archs.hat",
    "atd": "superres.archs.atd",
    "craft": "superres.archs.craft",
    "omnisr": "superres.archs.omnisr",
    "plksr": "superres.archs.plksr",
    "realplksr": "superres.archs.plksr",
    "safmn": "superres.archs.safmn",
    "swin2sr": "superres.archs.swin2sr",
    "liif": "superres.archs.liif",
    "dat": "superres.archs.dat",
}
_REGISTRY: dict[str, "ArchSpec"] = {}


@dataclass(frozen=True)
class ModelDescriptor:
    """What a caller needs to know to run a network well, without reading its code."""

    arch: str
    scale: int
    in_channels: int
    out_channels: int
    params: int
    supports_fp16: bool
    supports_bf16: bool
    size_multiple: int  # input height and width must be a multiple of this (the engine pads)
    tiling: Tiling  # "safe": tiles with enough overlap equal the whole image
    receptive_field: int | None  # LR pixels of context each side an output pixel depends on (None: global)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    continuous: bool = False  # any real output scale (LIIF): the pipeline renders the requested size directly

    def as_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "scale": self.scale,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "params": self.params,
            "supports_fp16": self.supports_fp16,
            "supports_bf16": self.supports_bf16,
            "size_multiple": self.size_multiple,
            "tiling": self.tiling,
            "receptive_field": self.receptive_field,
            "hyperparams": dict(self.hyperparams),
            "continuous": self.continuous,
        }


class SRNet(nn.Module):
    """Base class: remembers the hyper-parameters it was built with so it can describe itself."""

    arch_name: str = ""

    def __init__(self, **hyperparams: Any) -> None:
        super().__init__()
        self.hyperparams: dict[str, Any] = dict(hyperparams)

    @property
    def scale(self) -> int:
        return int(self.hyperparams["scale"])

    @property
    def descriptor(self) -> ModelDescriptor:
        return get_arch(self.arch_name).describe(self)


# Progress inside one network call, for networks whose single call runs long (DAT in bands, a whole photo):
# the pipeline sets a hook around each call (Upscaler.with_tile_hooks) that moves a progress bar and lets a
# server cancel between steps. The network reports the share of the call done; the hook may raise to abort.
_STEP_HOOK: ContextVar[Callable[[float], None] | None] = ContextVar("superres_step_hook", default=None)


def report_step(fraction: float) -> None:
    """Tell the caller's hook (if any) that ``fraction`` of this network call is done."""
    hook = _STEP_HOOK.get()
    if hook is not None:
        hook(fraction)


@contextlib.contextmanager
def _setting(var: ContextVar[Any], value: Any) -> Iterator[None]:
    """Run the block with ``var`` set to ``value`` in this thread (the hooks below are all set this way)."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def step_hook(hook: Callable[[float], None] | None) -> contextlib.AbstractContextManager[None]:
    """Run the block with ``hook`` receiving :func:`report_step` calls made in this thread."""
    return _setting(_STEP_HOOK, hook)


# Windowed self-attention over a channels-last map in one compiled call, where the pipeline has one (the CPU
# engine's kernel, superres.inference.fast): the roll of shifted windows, the window partition and its
# inverse become address arithmetic instead of copies. Architectures describe the windows as a MapWindows and
# call :func:`map_attention`; without a kernel (training, export, GPU) they take their torch path.
@dataclass(frozen=True)
class MapWindows:
    """Attention in windows of ``window`` = (wh, ww) tokens over ``qkv`` (B, R, Wp, 3C; channels contiguous):
    window row k, token row y reads qkv row ``rowmap[k * wh + y]``; window column j, token column x reads
    column (j * ww + x + col_shift) mod Wp; this branch's q channels start at ``channel`` (heads of
    ``head_dim`` in a row), k C and v 2C further. The result of that token goes to ``out`` (B, Ro, Wo, C'),
    row ``outrow[k * wh + y]`` (not written where -1, nor at columns >= Wo), channels from ``out_channel``.
    Scores get ``bias`` (heads, N, N) and, where ``mask_of`` (one per window of a map, -1: none) says, one
    of the ``masks`` (P, N, N)."""

    qkv: torch.Tensor
    channel: int
    heads: int
    head_dim: int
    window: tuple[int, int]
    col_shift: int
    rowmap: torch.Tensor
    out: torch.Tensor
    out_channel: int
    outrow: torch.Tensor
    bias: torch.Tensor
    masks: torch.Tensor | None = None
    mask_of: torch.Tensor | None = None


_MAP_ATTENTION: ContextVar[Callable[[MapWindows], bool] | None] = ContextVar(
    "superres_map_attention", default=None)


def map_attention_available() -> bool:
    """Whether a kernel is set for this thread and autograd is off (what :func:`map_attention` needs to run)."""
    return _MAP_ATTENTION.get() is not None and not torch.is_grad_enabled()


def map_attention(windows: MapWindows) -> bool:
    """Run ``windows`` through the caller's kernel (:func:`attention_kernel`); False (nothing written) when
    there is none, autograd is on, or it does not take these inputs."""
    fn = _MAP_ATTENTION.get()
    return fn is not None and not torch.is_grad_enabled() and fn(windows)


def attention_kernel(fn: Callable[[MapWindows], bool] | None) -> contextlib.AbstractContextManager[None]:
    """Run the block with :func:`map_attention` calls made in this thread going to ``fn``."""
    return _setting(_MAP_ATTENTION, fn)


# Independent items of one network call (DAT's bands) on the caller's worker threads, where the pipeline
# lends them (the CPU engine's pool, whose workers run torch single-threaded: no OpenMP barrier per op).
_PARALLEL_MAP: ContextVar[Callable[[Callable[[int], None], int], None] | None] = ContextVar(
    "superres_parallel_map", default=None)


def parallel_items(fn: Callable[[int], None], n: int) -> None:
    """``fn(0) .. fn(n - 1)``, on the caller's workers (:func:`item_workers`) when it lends them, else in
    order here. Each item sees this thread's context (kernels, hooks) except the workers themselves, so an
    item's own parallel_items runs in its thread."""
    mapper = _PARALLEL_MAP.get()
    if mapper is None or n < 2:
        for i in range(n):
            fn(i)
        return
    ctx = contextvars.copy_context()

    def item(i: int) -> None:
        def inner() -> None:
            _PARALLEL_MAP.set(None)
            fn(i)

        ctx.copy().run(inner)

    mapper(item, n)


def item_workers(mapper: Callable[[Callable[[int], None], int], None] | None
                 ) -> contextlib.AbstractContextManager[None]:
    """Run the block with :func:`parallel_items` calls in this thread going to ``mapper(fn, n)``."""
    return _setting(_PARALLEL_MAP, mapper)


@dataclass(frozen=True)
class ArchSpec:
    """One registered architecture.

    ``build(**hp)`` makes the network; ``detect(sd)`` returns hyper-parameters when ``sd`` is one of its
    state dicts, else ``None``. ``receptive_field(hp)`` gives the LR context radius (None when global).
    """

    name: str
    title: str
    build: Callable[..., SRNet]
    detect: Callable[[StateDict], dict[str, Any] | None]
    supports_fp16: bool = True
    supports_bf16: bool = True
    size_multiple: Callable[[dict[str, Any]], int] = lambda hp: 1
    tiling: Tiling = "safe"
    receptive_field: Callable[[dict[str, Any]], int | None] = lambda hp: None
    in_channels_key: str = "in_channels"
    out_channels_key: str = "out_channels"
    # Activation elements per LR pixel held at the peak of a forward pass, beyond the common estimate
    # (features at LR resolution): e.g. convolutions run at output resolution, attention windows.
    # Used by the memory-based tile size (superres.inference.devices.bytes_per_lr_pixel).
    extra_activations: Callable[[dict[str, Any], int], int] = lambda hp, feat: 0
    # The PyTorch forward runs large inputs in bands of rows with the whole-image result (DAT: its global
    # sums are added band by band), so on the torch backend a tile as large as memory allows is exact, and
    # the CPU's speed-based tile cap does not apply (superres.inference.devices.auto_tile).
    bands: bool = False
    licence: str = ""  # SPDX id of the upstream code and weights licence, e.g. "Apache-2.0"; "" for our own
    noncommercial: bool = False  # True: loading needs the explicit opt-in (SUPERRES_ALLOW_NONCOMMERCIAL=1)
    continuous: bool = False  # renders any output size (``render`` / ``upscale_to``), not only x``scale``

    def describe(self, net: SRNet) -> ModelDescriptor:
        hp = net.hyperparams
        return ModelDescriptor(
            arch=self.name,
            scale=int(hp["scale"]),
            in_channels=int(hp.get(self.in_channels_key, 3)),
            out_channels=int(hp.get(self.out_channels_key, 3)),
            params=sum(p.numel() for p in net.parameters()),
            supports_fp16=self.supports_fp16,
            supports_bf16=self.supports_bf16,
            size_multiple=self.size_multiple(hp),
            tiling=self.tiling,
            receptive_field=self.receptive_field(hp),
            hyperparams=dict(hp),
            continuous=self.continuous,
        )


def register(spec: ArchSpec) -> ArchSpec:
    """Called once by each architecture module (or plugin) at import time; a second architecture with the
    same name is an error (it would silently replace the first)."""
    other = _REGISTRY.get(spec.name)
    if other is not None and other is not spec:
        raise ValueError(f"architecture {spec.name!r} is already registered ({other.title})")
    _REGISTRY[spec.name] = spec
    return spec


def _plugin_archs() -> list[str]:
    from ..plugins import load_plugins

    load_plugins()
    return [n for n in _REGISTRY if n not in _ARCH_MODULES]


def detection_order() -> list[str]:
    """Architectures in the order :func:`detect` asks them (built-ins in table order, then plugins)."""
    return [*_ARCH_MODULES, *_plugin_archs()]


def list_archs() -> list[str]:
    return sorted(detection_order())


def get_arch(name: str) -> ArchSpec:
    key = name.lower()
    if key in _ARCH_MODULES and key not in _REGISTRY:
        importlib.import_module(_ARCH_MODULES[key])
    if key not in _REGISTRY:
        _plugin_archs()
    if key not in _REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; expected one of: {', '.join(list_archs())}")
    return _REGISTRY[key]


def build(name: str, **hyperparams: Any) -> SRNet:
    """Build an untrained network, e.g. ``build("edsr", scale=4, num_blocks=16, num_feat=64)``."""
    return get_arch(name).build(**hyperparams)


def detect(state_dict: StateDict) -> tuple[str, dict[str, Any]] | None:
    """Return ``(arch name, hyper-parameters)`` of the first architecture (in :func:`detection_order`)
    that recognises ``state_dict``."""
    for name in detection_order():
        hp = get_arch(name).detect(state_dict)
        if hp is not None:
            return name, hp
    return None


# ---- small helpers shared by detect() functions -------------------------------------------------------


def has_all(sd: StateDict, *keys: str) -> bool:
    return all(k in sd for k in keys)


def count_indexed(sd: StateDict, prefix: str, suffix: str = "") -> int:
    """Number of consecutive ``prefix{i}{suffix}`` indices present, starting at 0 (``body.{i}.`` style)."""
    indices = set()
    for k in sd:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit() and (not suffix or k.endswith(suffix)):
                indices.add(int(head))
    n = 0
    while n in indices:
        n += 1
    return n


def shuffle_scale(out_channels_before_shuffle: int, image_channels: int) -> int | None:
    """Scale from a pixel-shuffle conv: out = image_channels * s^2; None if not a perfect square."""
    if out_channels_before_shuffle % image_channels:
        return None
    sq = out_channels_before_shuffle // image_channels
    s = int(round(sq**0.5))
    return s if s * s == sq else None
