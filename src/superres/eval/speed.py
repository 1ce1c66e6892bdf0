"""``superres bench``: backend x model x input size -> time, throughput, achieved GFLOP/s, peak memory.

Work is counted from the architecture, not the runtime: multiply-accumulates of every convolution and
linear layer (forward hooks on a small input, scaled per LR pixel; attention products of SwinIR are not
counted, so its figure is a lower bound). FLOPs = 2 x MACs. Achieved GFLOP/s is compared with a fp32
matrix-multiply peak measured in the same run, on the same threads, as the guide asks.
"""

from __future__ import annotations

import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch

from ..archs.cost import count_macs


@dataclass(frozen=True)
class BenchRow:
    backend: str
    model: str
    size: int  # LR side (square input)
    ms: float  # median of the timed repeats
    lr_mpix_s: float
    gflops: float  # achieved, from the architecture's MAC count
    peak_fraction: float  # of the measured matmul peak
    peak_mem_mb: float | None  # RSS above the level before the timed runs (None: psutil missing)
    macs_per_pixel: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def matmul_peak_gflops(n: int = 1024, repeats: int = 7) -> float:
    """Median fp32 GFLOP/s of an n x n matrix product on the current torch threads."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


class _RssPeak:
    """Samples the process RSS every 2 ms in a thread; ``peak_mb`` is the rise above the starting level."""

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError:  # pragma: no cover
            self._proc = None
            return
        self._proc = psutil.Process()
        self._base = self._peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self._proc is not None
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def __enter__(self) -> "_RssPeak":
        if self._proc is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._stop.set()
            self._thread.join()

    @property
    def peak_mb(self) -> float | None:
        return None if self._proc is None else (self._peak - self._base) / 2**20


def time_forward(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int, warmup: int = 2
) -> float:
    """Median seconds of ``forward(x)`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        forward(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        forward(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(
    models: Sequence[str],
    backends: Sequence[str],
    sizes: Sequence[int],
    *,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[BenchRow], float]:
    """Run every combination; returns the rows and the matmul peak (GFLOP/s) measured first."""
    from ..inference.upscaler import UpscaleOptions
    from ..loading import load_model
    from ..zoo.loader import load_network

    peak = matmul_peak_gflops()
    rows: list[BenchRow] = []
    for spec in models:
        net, _ = load_network(spec)
        macs_px = count_macs(net) / (32 * 32)
        c = net.descriptor.in_channels
        m = max(1, net.descriptor.size_multiple)
        for backend in backends:
            # ncnn: its default Vulkan device (the point of that backend); the others: the CPU
            dev = "auto" if backend == "ncnn" else "cpu"
            up = load_model(spec, device=dev, backend=backend, options=UpscaleOptions(tile=0))
            label = backend
            choice = getattr(up, "backend_choice", None)  # --backend auto: say what it ran
            if choice is not None:
                label = f"auto: {choice.backend}"
                if progress:
                    progress(f"auto for {up.name}: {choice.describe()}")
            for size in sizes:
                side = -(-size // m) * m
                x = torch.rand(1, c, side, side, generator=torch.Generator().manual_seed(0))
                if progress:
                    progress(f"{label} {up.name} {side}px")
                with _RssPeak() as mem:
                    sec = time_forward(up.forward, x, repeats)
                px = side * side
                gflops = 2 * macs_px * px / sec / 1e9
                rows.append(
                    BenchRow(
                        label,
                        up.name,
                        side,
                        sec * 1e3,
                        px / sec / 1e6,
                        gflops,
                        gflops / peak,
                        mem.peak_mb,
                        macs_px,
                    )
                )
    return rows, peak


def machine() -> str:
    import os

    return (
        f"{cpu_model()} ({cpu_flag_summary() or 'no SIMD flags read'}), {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); fast engine kernel: {kernel_summary()}"
    )


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flag_summary() -> str:
    """The CPU flags that decide which kernels and precisions can run fast here."""
    from ..inference.fast import cpu_flags

    flags = cpu_flags() or frozenset()
    return " ".join(f for f in SIMD_FLAGS if f in flags)


def kernel_summary() -> str:
    """Which build of the fast engine's C kernel runs (and how to force another)."""
    from ..inference.fast import KERNEL_ENV, kernel_variant, supported_kernel_variants

    return (f"{kernel_variant()} (this CPU runs {', '.join(supported_kernel_variants())}; "
            f"${KERNEL_ENV} picks one)")


def to_markdown(rows: Sequence[BenchRow], peak: float) -> str:
    lines = [
        f"Machine: {machine()}; fp32 matmul peak {peak:.1f} GFLOP/s (1024^3, median of 7).",
        "",
        "| backend | model | LR size | ms | LR MP/s | GFLOP/s | % of peak | peak mem (MB) | MFLOP/LR px |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mem = "n/a" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.0f}"
        lines.append(
            f"| {r.backend} | {r.model} | {r.size} | {r.ms:.1f} | {r.lr_mpix_s:.3f} | {r.gflops:.1f} | "
            f"{100 * r.peak_fraction:.0f}% | {mem} | {2 * r.macs_per_pixel / 1e6:.3f} |"
        )
    return "\n".join(lines) + "\n"
