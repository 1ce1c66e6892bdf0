"""Device and precision choice, and a memory-based tile size."""

from __future__ import annotations

import math
import os

import torch

from ..archs.base import ModelDescriptor, get_arch
from ..errors import SuperresError

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(device: str = "auto", *, local_rank: int | None = None, mps: bool = True) -> torch.device:
    """``auto`` prefers CUDA, then Apple MPS (unless ``mps=False``), then CPU.

    ``local_rank`` (a ``torchrun`` worker's GPU) gives a bare ``cuda`` or an automatic CUDA choice that
    index; the trainer passes it and ``mps=False`` (training on MPS is not supported)."""
    d = device.lower()
    if d == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda" if local_rank is None else f"cuda:{local_rank}")
        if mps and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise SuperresError(f"device {device!r} requested but CUDA is not available in this PyTorch build")
    if d == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SuperresError("device 'mps' requested but Apple MPS is not available")
    if d not in ("cpu", "mps") and not d.startswith("cuda"):
        raise SuperresError(f"unknown device {device!r}; expected auto, cpu, cuda, cuda:N or mps")
    if d == "cuda" and local_rank is not None:
        return torch.device(f"cuda:{local_rank}")
    return torch.device(d)


def pick_dtype(precision: str, device: torch.device, desc: ModelDescriptor) -> torch.dtype:
    """``auto``: fp16 on CUDA/MPS when the architecture is fp16-safe, else fp32. CPU always runs fp32
    unless bf16 is asked for explicitly (fp16 convolutions are slow or missing on CPU)."""
    p = precision.lower()
    if p == "auto":
        if device.type in ("cuda", "mps") and desc.supports_fp16:
            return torch.float16
        return torch.float32
    if p not in _DTYPES:
        raise SuperresError(f"unknown precision {precision!r}; expected auto, fp32, fp16 or bf16")
    if p == "fp16" and not desc.supports_fp16:
        raise SuperresError(f"architecture {desc.arch} is not fp16-safe; use --precision fp32 or bf16")
    if p == "bf16" and not desc.supports_bf16:
        raise SuperresError(f"architecture {desc.arch} is not bf16-safe; use --precision fp32")
    if p == "fp16" and device.type == "cpu":
        raise SuperresError("fp16 is not supported on CPU; use --precision fp32 or bf16")
    return _DTYPES[p]


def bytes_per_lr_pixel(desc: ModelDescriptor, dtype: torch.dtype) -> int:
    """Rough activation footprint per LR pixel at the peak of a forward pass (inference mode)."""
    feat = int(desc.hyperparams.get("num_feat", desc.hyperparams.get("embed_dim", 64)))
    s2 = desc.scale * desc.scale
    elems = 6 * feat + 4 * desc.out_channels * s2
    elems += get_arch(desc.arch).extra_activations(desc.hyperparams, feat)  # the architecture's own peak
    item = torch.tensor([], dtype=dtype).element_size()
    return elems * max(item, 2) + 16 * desc.in_channels


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 4 << 30


_CONCURRENT_PASSES = 1  # whole-image passes that may run at once in this process (share_memory_among)


def share_memory_among(passes: int) -> None:
    """Say that up to ``passes`` whole-image passes run at once in this process (a server's inference
    threads), so each takes that fraction of the memory shares below: two banded passes planned on the same
    free memory must not each take half of it."""
    global _CONCURRENT_PASSES
    _CONCURRENT_PASSES = max(1, int(passes))


def memory_share(share: float) -> float:
    """``share`` of free memory for one pass, divided among the passes that may run at once."""
    return share / _CONCURRENT_PASSES


#: Share of free memory one whole-image pass in bands may take on the CPU: DAT's exact tile (on a CPU with
#: 22 GB free, DAT-light x2 runs LR images up to about 2300x2300 whole and exact) and the SE U-Nets' band plan
#: (``Upscaler._se_band_plan``).
WHOLE_PASS_SHARE = 0.5


def auto_tile(desc: ModelDescriptor, device: torch.device, dtype: torch.dtype, *, exact_whole: bool = False) -> int:
    """Largest tile (LR side, multiple of 16) whose activations fit a share of free memory.

    CPU tiles are capped at 384: larger tiles buy no speed there and cost memory (15 % of free memory, at most
    1.5 GiB). ``exact_whole``: the network is global and runs large inputs in bands (``ArchSpec.bands``, on
    the torch backend), so a larger tile buys the whole-image result; only memory bounds it then, with the
    share the SE U-Nets' bands take (:data:`WHOLE_PASS_SHARE` of free memory), up to 4096."""
    if exact_whole or device.type == "cuda":
        budget = available_memory(device) * memory_share(WHOLE_PASS_SHARE if exact_whole else 0.5)
    else:
        budget = min(available_memory(device) * 0.15, 1.5 * (1 << 30))
    side = int(math.sqrt(budget / bytes_per_lr_pixel(desc, dtype)))
    cap = 4096 if exact_whole else 1024 if device.type == "cuda" else 384
    side = max(64, min(cap, side))
    return side - side % 16
