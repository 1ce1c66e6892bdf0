"""``--backend auto`` (the command line's default): per model and machine, the fastest installed of the fast
engine (the torch backend), ONNX Runtime and OpenVINO, from a measured table cached per machine.

Why measured, not ranked once: which runtime wins depends on the family and on the CPU. On an AVX-512 EPYC
``span-x4`` at 128 px took 550 ms in the engine, 245 ms in ONNX Runtime and 239 ms in OpenVINO, while the
engine's whole-network plans beat both on Real-ESRGAN (issue 27). So the first load of a model on a machine
times each candidate on one fixed-seed 128 px input (smaller for heavy networks: a second or two; the ONNX
export a runtime needs is made once and cached as it would be for ``--backend onnxruntime``), checks that
each computes the engine's image (within 1e-3), and records the winner under a key of the CPU (model and
flags), the thread count, the library versions, the engine's kernel variant and the weights' sha256.
Later loads read the table and measure nothing.

Only fp32 on the CPU is measured: a GPU, ``--precision bf16``, hyper-parameters (``--denoise``) and a
``--device vulkan`` run where only one backend can (torch, torch, torch, ncnn); an exported file runs on a
runtime that reads it. Architectures whose torch forward runs large images in bands (DAT) stay on torch: a
runtime runs their whole-image graph in tiles, which differ from the whole image, and on a 768 px photograph
OpenVINO's tiles took 2.5x the time and 3.5x the memory of the bands (README "DAT-light"). With only the core
install (no ONNX Runtime, no OpenVINO) auto is the engine and measures nothing. ``$SUPERRES_AUTO_BACKEND`` pins
the answer (the test suite pins ``torch``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .inference.upscaler import UpscaleOptions, Upscaler

log = logging.getLogger(__name__)

PIN_ENV = "SUPERRES_AUTO_BACKEND"
RUNTIMES = ("onnxruntime", "openvino")  # measured against the engine when installed
TABLE_NAME = "backend-auto.json"
MAX_TABLE_BYTES = 1 << 20  # a larger (or hostile) table is ignored and rewritten, never read whole
MAX_ENTRIES = 500
AGREE = 1e-3  # max |runtime - engine| on [0, 1] outputs for a runtime to count
_SIDE, _MIN_SIDE = 128, 48
_WORK_BUDGET = 5e9  # multiply-accumulates per timed call: ~0.1-0.3 s on two quiet cores
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Choice:
    """What auto ran and why: ``times_ms`` per candidate when measured now or earlier on this machine."""

    backend: str
    reason: str
    times_ms: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        times = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(self.times_ms.items(), key=lambda kv: kv[1]))
        return f"{self.backend} ({self.reason}{': ' + times if times else ''})"


def installed_runtimes() -> tuple[str, ...]:
    """The runtimes auto can weigh against the engine here (their Python packages importable)."""
    return tuple(r for r in RUNTIMES if importlib.util.find_spec(r) is not None)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


@functools.lru_cache(maxsize=1)
def _engine_code_digest() -> str:
    """sha256 (16 hex) of the engine's Python and C source: read once per process, not per model load."""
    from .inference import fast

    return hashlib.sha256(Path(fast.__file__).read_bytes() + fast._c_source().encode()).hexdigest()[:16]


def machine_key(threads: int, weights_sha256: str) -> str:
    """The table's key: what the ranking depends on (CPU model and flags, threads, library versions, the
    engine's kernel variant and its code, the weights). The engine's code is in the key because a
    development checkout keeps one version number while plans are added: a table from before a model got
    its plan would otherwise keep sending that model to another backend."""
    from .inference.fast import _cpu_signature, kernel_variant

    parts = [_cpu_signature(), f"threads={threads}", f"kernel={kernel_variant()}", f"engine={_engine_code_digest()}",
             f"weights={weights_sha256}",
             *(f"{d}={_version(d)}" for d in ("superres", "torch", *RUNTIMES))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def table_path() -> Path:
    from .cache import cache_dir

    return cache_dir(TABLE_NAME)


def _read_table(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TABLE_BYTES + 1)
    except OSError:
        return {}
    if len(raw) > MAX_TABLE_BYTES:
        log.warning("%s is larger than %d bytes; measuring again", path, MAX_TABLE_BYTES)
        return {}
    try:
        table = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return table if isinstance(table, dict) else {}


def _write_table(path: Path, table: dict[str, Any]) -> None:
    """Atomically (a temporary file renamed over the old one): a reader never sees half a table."""
    if len(table) > MAX_ENTRIES:  # the oldest measurements go first
        def when(k: str) -> float:
            entry = table[k]
            try:
                return float(entry.get("when", 0)) if isinstance(entry, dict) else 0.0
            except (TypeError, ValueError):
                return 0.0

        for k in sorted(table, key=when)[: len(table) - MAX_ENTRIES]:
            del table[k]
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(table, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError) as e:  # a read-only cache still gives a choice, measured again
        log.warning("cannot record the backend choice in %s (%s)", path, e)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def lookup(key: str, candidates: tuple[str, ...]) -> Choice | None:
    """The recorded winner for ``key`` if it is still among the installed candidates."""
    entry = _read_table(table_path()).get(key)
    if not isinstance(entry, dict) or entry.get("backend") not in candidates:
        return None
    times = entry.get("ms") if isinstance(entry.get("ms"), dict) else {}
    times = {str(k): float(v) for k, v in times.items() if isinstance(v, (int, float))}
    return Choice(str(entry["backend"]), "fastest measured on this machine earlier", times)


def record(key: str, choice: Choice, model: str, side: int) -> None:
    with _LOCK:
        path = table_path()
        table = _read_table(path)
        table[key] = {"backend": choice.backend, "ms": choice.times_ms, "model": model, "side": side,
                      "when": time.time()}
        _write_table(path, table)


def measure_side(macs_per_pixel: float, multiple: int = 1) -> int:
    """The input side timed: 128 px (where the engine's tiles are efficient), less for heavy networks."""
    side = _SIDE
    if macs_per_pixel > 0:
        side = int(min(_SIDE, max(_MIN_SIDE, (_WORK_BUDGET / macs_per_pixel) ** 0.5)))
    m = max(1, multiple)
    return max(m, side // m * m)


def probe_image(channels: int, side: int) -> "torch.Tensor":
    """A smooth fixed-seed image in [0, 1] (uniform noise drives some networks far outside [0, 1], where
    fp32 rounding differences between runtimes grow with the values)."""
    import torch
    import torch.nn.functional as F

    coarse = torch.rand(1, channels, 6, 6, generator=torch.Generator().manual_seed(0))
    return F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False).clamp_(0, 1)


def race(forwards: dict[str, Callable[["torch.Tensor"], "torch.Tensor"]], x: "torch.Tensor",
         repeats: int = 2) -> tuple[dict[str, float], dict[str, str]]:
    """Median ms per candidate, interleaved after one warm-up call each (which also checks that every
    candidate computes the first one's image); (times, left out with why)."""
    import torch

    left: dict[str, str] = {}
    ref = None
    live = {}
    with torch.inference_mode():
        for name, fwd in forwards.items():
            try:
                y = fwd(x).float()
            except Exception as e:  # noqa: BLE001 - a runtime that cannot run this graph is left out
                left[name] = f"failed: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}"
                continue
            if ref is None:
                ref = y
            elif y.shape != ref.shape or not (float((y - ref).abs().max())
                                              <= AGREE * max(1.0, float(ref.abs().max()))):
                left[name] = "its output differs from the engine's"
                continue
            live[name] = fwd
        samples: dict[str, list[float]] = {k: [] for k in live}
        names = list(live)
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                live[name](x)
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}, left


def _session_upscaler(net: Any, name: str, card: Any, backend: str, options: "UpscaleOptions | None",
                      threads: int) -> "Upscaler":
    from .deploy.runtime import cached_export, open_session
    from .inference.upscaler import Upscaler

    session = open_session(cached_export(net, name), backend, threads=threads)
    return Upscaler(net, name=name, card=card, options=options, forward=session)


def _with_choice(up: "Upscaler", choice: Choice) -> "Upscaler":
    up.backend_choice = choice  # type: ignore[attr-defined]  # read by the CLI's summary and superres bench
    return up


Loaders = Callable[[str], Any]  # backend name -> its Backend row (superres.loading.get_backend)


def _single(get_backend: Loaders, backend: str, reason: str, name_or_path: Any, **kw: Any) -> "Upscaler":
    return _with_choice(get_backend(backend).load(name_or_path, **kw), Choice(backend, reason))


def _load_ncnn_file(get_backend: Loaders, name_or_path: Any, **kw: Any) -> "Upscaler":
    """An ncnn ``.param``: the engine when the zoo's converters read it (as the torch default always did, with
    no ncnn runtime installed), else the ncnn runtime when it is installed (any other ncnn graph)."""
    import importlib.util

    from .errors import ModelLoadError

    try:
        return _single(get_backend, "torch", "an ncnn model the engine reads", name_or_path, **kw)
    except ModelLoadError:
        if importlib.util.find_spec("ncnn") is None:
            raise
    return _single(get_backend, "ncnn", "an ncnn model only the ncnn runtime reads", name_or_path, **kw)


def load_auto(name_or_path: str | Path, *, get_backend: Loaders, device: str, precision: str,
              allow_download: bool, options: "UpscaleOptions | None",
              hyperparams: dict[str, Any] | None = None) -> "Upscaler":
    """The ``auto`` row of the backend table (see the module docstring). ``get_backend``: the table's
    lookup (passed in: the table imports this module, not the other way round)."""
    import torch

    kw: dict[str, Any] = dict(device=device, precision=precision, allow_download=allow_download,
                              options=options)
    # an exported file runs on a runtime that reads it, whatever the pin says
    suffix = Path(str(name_or_path)).suffix.lower()
    if suffix == ".param":
        return _load_ncnn_file(get_backend, name_or_path, **kw)
    if suffix == ".xml" or (suffix == ".onnx" and "onnxruntime" not in installed_runtimes()):
        return _single(get_backend, "openvino", "an exported model", name_or_path, **kw)
    if suffix == ".onnx":
        return _single(get_backend, "onnxruntime", "an exported model", name_or_path, **kw)
    pinned = os.environ.get(PIN_ENV, "").strip()
    if pinned and pinned != "auto":
        try:
            get_backend(pinned)
        except Exception as e:  # noqa: BLE001 - the table's own message names the option, not the variable
            from .errors import ModelLoadError

            raise ModelLoadError(f"${PIN_ENV}={pinned!r} names no backend ({str(e).split(';', 1)[-1].strip()})"
                                 ) from None
    if pinned and pinned != "auto" and (not hyperparams or pinned in ("torch", "ncnn")):
        extra = {"hyperparams": hyperparams} if hyperparams else {}
        return _single(get_backend, pinned, f"pinned by ${PIN_ENV}", name_or_path, **kw, **extra)
    if device.lower().startswith("vulkan"):
        return _single(get_backend, "ncnn", "--device vulkan", name_or_path, **kw, hyperparams=hyperparams)

    from .archs.base import get_arch

    up = get_backend("torch").load(name_or_path, **kw, hyperparams=hyperparams)
    runtimes = installed_runtimes()
    why = ("hyper-parameters only the engine takes" if hyperparams else
           "a continuous-scale model: only the torch backend renders it" if up.descriptor.continuous else
           f"{up.device.type}: only the torch backend runs it" if up.device.type != "cpu" else
           f"{str(up.dtype).removeprefix('torch.')}: only the torch backend runs it"
           if up.dtype != torch.float32 else
           "ONNX Runtime and OpenVINO are not installed" if not runtimes else
           "runs large images in bands on torch: the whole-image result, faster than a runtime's tiles"
           if get_arch(up.descriptor.arch).bands else "")
    if why:
        return _with_choice(up, Choice("torch", why))
    try:
        return _with_choice(*_pick(up, runtimes))
    except Exception as e:  # noqa: BLE001 - the default path never fails because the race could not run
        log.warning("backend auto could not compare runtimes for %s (%s); using torch", up.name, e)
        return _with_choice(up, Choice("torch", f"the comparison failed: {str(e).splitlines()[0][:120]}"))


def _pick(up: "Upscaler", runtimes: tuple[str, ...]) -> tuple["Upscaler", Choice]:
    """The measured (or recorded) fastest of the engine (``up``) and ``runtimes`` for this network."""
    import torch

    from .archs.cost import count_macs
    from .deploy.common import weights_digest

    net, name, card = up.network, up.name, up.card
    threads = torch.get_num_threads()
    candidates = ("torch", *runtimes)
    key = machine_key(threads, weights_digest(net))
    known = lookup(key, candidates)
    if known is not None:
        if known.backend == "torch":
            return up, known
        try:
            return _session_upscaler(net, name, card, known.backend, up.options, threads), known
        except Exception as e:  # noqa: BLE001 - e.g. a runtime upgraded in place: measure again below
            log.warning("recorded choice %s failed to load (%s); measuring again", known.backend, e)
    t0 = time.perf_counter()
    d = up.descriptor
    side = measure_side(count_macs(net) / (32 * 32), d.size_multiple)
    x = probe_image(d.in_channels, side)
    ups: dict[str, Upscaler] = {"torch": up}
    left: dict[str, str] = {}
    for rt in runtimes:
        try:
            ups[rt] = _session_upscaler(net, name, card, rt, up.options, threads)
        except Exception as e:  # noqa: BLE001 - a runtime that cannot load this network is left out
            left[rt] = f"failed: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}"
    times, failed = race({k: u.forward for k, u in ups.items()}, x)
    left.update(failed)
    best = min(times, key=times.__getitem__) if times else "torch"
    reason = f"fastest measured now at {side} px in {time.perf_counter() - t0:.1f} s"
    if left:
        reason += "; left out " + ", ".join(f"{k} ({v})" for k, v in left.items())
    choice = Choice(best, reason, {k: round(v, 2) for k, v in times.items()})
    if "torch" in times:  # the engine ran: the measurement stands for this machine
        record(key, choice, name, side)
    log.info("backend auto for %s: %s", name, choice.describe())
    return ups.get(best, up), choice


def choice_of(up: Any) -> Choice | None:
    """What ``--backend auto`` decided for this upscaler (None: a backend was named)."""
    return getattr(up, "backend_choice", None)
