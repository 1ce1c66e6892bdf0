"""How big a network a weights file may make us build, checked before anything is allocated.

Why: architectures are detected from key names and tensor shapes, and a shape costs nothing to declare.
A 232-byte safetensors of empty tensors can describe an SRVGG 30,000 features wide (a 32 GB convolution);
a few hundred KB of keys can name 3,000 RRDB blocks; a 2 MB ``.pth`` can hold a record that inflates to
2 GiB; a legacy ``.pth`` can declare a 32 GiB storage in a 358-byte pickle. Each is refused here, from
the file's own directory or header, with one line that names the limit and how to raise it:

- archives (zip ``.pth``) are sized from the zip directory before any record is inflated, legacy
  ``.pth`` storages from their declarations (read without data, on fake tensors) against the file size;
- every tensor of a state dict must hold values and be backed by as many bytes as it has elements
  (no empty tensors, no stride-0 views of one float), and all of them together stay under the limit;
- the network the detected hyper-parameters describe is first built on the ``meta`` device (no memory)
  under a budget: it may not need more parameter tensors or values than the file holds (a strict load
  needs every one of them), nor more than the limit; only then is the real network built.

The limit is ``SUPERRES_MAX_WEIGHTS_PARAMS`` (the CLI's ``--max-weights-params`` sets it), default 200M
parameters: the zoo's largest network has 16.7M (RRDBNet), the community's largest supported ones about
43M (EDSR), so the default leaves a 4x margin and bounds a float32 network at 0.8 GB.
"""

from __future__ import annotations

import os
import threading
import warnings
import zipfile
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..archs.base import SRNet

__all__ = ["DEFAULT_MAX_WEIGHTS_PARAMS", "ENV", "OPTION", "build_within_limits", "check_legacy_pth",
           "check_state_dict", "check_tensor_count", "check_value_count", "check_zip_archive",
           "max_weights_params", "max_weights_tensors", "meta_network_within_limits"]

ENV = "SUPERRES_MAX_WEIGHTS_PARAMS"
OPTION = "--max-weights-params"
DEFAULT_MAX_WEIGHTS_PARAMS = 200_000_000
#: Bytes per parameter an archive may hold: float64 checkpoints are the widest in use.
_BYTES_PER_PARAM = 8
#: Room for the pickle (keys, ~100 bytes a tensor) and small records beside the tensors.
_ARCHIVE_SLACK = 1 << 20
#: Weights barely compress (float data: ratio ~1.1); a record that claims more than this is a bomb.
_MAX_RATIO = 32
_SMALL_RECORD = 1 << 20  # a compressed record may always inflate to this (pickles, tiny tensors)
_SMALL_BUFFERS, _SMALL_BUFFER_VALUES = 64, 1 << 16  # buffers a network computes itself (not in the file)


def worker_env() -> dict[str, str]:
    """The limit as environment for processes the caller starts elsewhere (Ray workers on other nodes do
    not inherit this process's environment): ``ray.init(runtime_env={"env_vars": worker_env()})``."""
    from .licences import worker_env as licence_env  # the licence opt-in travels the same way

    return {ENV: str(max_weights_params()), **licence_env()}


def max_weights_params() -> int:
    """The parameter limit in force: ``$SUPERRES_MAX_WEIGHTS_PARAMS`` or the default."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_MAX_WEIGHTS_PARAMS
    try:
        value = int(float(text)) if any(c in text for c in ".eE") else int(text.replace("_", ""))
    except (ValueError, OverflowError):
        raise ModelLoadError(f"{ENV} must be a whole number of parameters, not {text!r}") from None
    if value < 1:
        raise ModelLoadError(f"{ENV} must be a positive number of parameters, not {text!r}")
    return value


def max_weights_tensors(limit: int | None = None) -> int:
    """How many tensors a file may hold: 10,000 (RCAN, the zoo's most fragmented network, has 1,634),
    more in proportion when the parameter limit is raised past 200M. Reading a tensor costs ~30 us
    however small it is, so a file of a million one-float tensors is a bomb of time, not bytes."""
    limit = max_weights_params() if limit is None else limit
    return max(10_000, limit // 20_000)


def check_tensor_count(count: int, where: object, limit: int | None = None) -> None:
    limit = max_weights_params() if limit is None else limit
    cap = max_weights_tensors(limit)
    if count > cap:
        raise ModelLoadError(f"'{where}' holds {count:,} tensors, more than the {cap:,} a network of up to "
                             f"{limit:,} parameters may have; if the file is trusted, raise the limit with "
                             f"superres {OPTION} N <command> or {ENV}=N")


def _raise_hint(limit: int) -> str:
    return (f"over the limit of {limit:,} parameters; if the file is trusted, raise it with "
            f"superres {OPTION} N <command> or {ENV}=N")


def _over(where: object, what: str, limit: int) -> ModelLoadError:
    return ModelLoadError(f"'{where}' {what}, {_raise_hint(limit)}")


# ---- archives ---------------------------------------------------------------------------------------


def check_zip_archive(path: Path, limit: int | None = None) -> None:
    """Refuse a zip ``.pth`` whose records would inflate beyond what weights need, from its directory
    (``ZipInfo.file_size``), before torch decompresses anything."""
    limit = max_weights_params() if limit is None else limit
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelLoadError(f"'{path}' is not a readable PyTorch checkpoint (bad zip directory: {e})"
                             ) from None
    check_tensor_count(len(infos) - 8, path, limit)  # one record per storage, beside ~6 of torch's own
    total = 0
    for info in infos:
        compressed = info.compress_type != zipfile.ZIP_STORED
        if compressed and info.file_size > max(_MAX_RATIO * info.compress_size, _SMALL_RECORD):
            raise ModelLoadError(
                f"'{path}': record {info.filename!r} would inflate {info.compress_size:,} bytes to "
                f"{info.file_size:,} (weights never compress {_MAX_RATIO}x); refused before inflating")
        total += info.file_size
    cap = limit * _BYTES_PER_PARAM + _ARCHIVE_SLACK
    if total > cap:
        raise _over(path, f"holds {total:,} bytes of records ({total // _BYTES_PER_PARAM:,}+ parameters)",
                    limit)


def check_legacy_pth(path: Path, limit: int | None = None) -> None:
    """Refuse a legacy (pre-zip) ``.pth`` whose pickle declares more storage than the file holds: torch
    allocates each declared storage before reading it. The declarations are read with torch's own
    weights-only unpickler, each storage stood in for by a meta-device one (no allocation).
    Tar-format checkpoints are refused by ``torch.load(weights_only=True)`` itself."""
    limit = max_weights_params() if limit is None else limit
    try:
        count, declared = _legacy_storage_bytes(path)
    except Exception:  # noqa: BLE001
        return  # not a legacy pickle this can read: the real load reports it in its own words
    check_tensor_count(count, path, limit)
    size = path.stat().st_size
    if declared > size:
        raise ModelLoadError(f"'{path}' declares {declared:,} bytes of tensor storage but is only {size:,} "
                             "bytes long (a truncated or hostile legacy checkpoint); "
                             "refused before allocating")
    if declared > limit * _BYTES_PER_PARAM:
        raise _over(path, f"declares {declared:,} bytes of tensor storage", limit)


def _legacy_storage_bytes(path: Path) -> tuple[int, int]:
    """Number and bytes of all storages a legacy checkpoint's pickle declares (magic, protocol and system-info
    pickles first, then the object pickle whose persistent ids are the storages)."""
    import torch
    from torch import _weights_only_unpickler as safe_pickle

    sizes: dict[str, int] = {}

    def persistent_load(pid: Any) -> Any:
        _kind, storage_type, key, _location, numel, _view = pid
        dtype = storage_type.dtype if hasattr(storage_type, "dtype") else storage_type
        itemsize = torch.empty((), dtype=dtype).element_size()
        sizes[str(key)] = int(numel) * itemsize
        stand_in = torch.UntypedStorage(sizes[str(key)], device="meta")  # costs no memory
        return torch.storage.TypedStorage(wrap_storage=stand_in, dtype=dtype, _internal=True)

    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on pickle protocols; the real load gives its own
        for _ in range(3):
            safe_pickle.load(f)
        unpickler = safe_pickle.Unpickler(f)
        unpickler.persistent_load = persistent_load  # type: ignore[method-assign]
        try:
            unpickler.load()
        except Exception:  # noqa: BLE001, S110
            pass  # a stand-in may not satisfy everything a pickle does; the declarations seen are enough
    return len(sizes), sum(sizes.values())


# ---- state dicts ------------------------------------------------------------------------------------


def check_value_count(total: int, where: object, limit: int | None = None) -> None:
    """Refuse ``total`` declared weights beyond the limit (e.g. summed from a safetensors header)."""
    limit = max_weights_params() if limit is None else limit
    if total > limit:
        raise _over(where, f"holds {total:,} weights", limit)


def check_state_dict(sd: Mapping[str, torch.Tensor], where: object, limit: int | None = None) -> int:
    """Every tensor holds values and is backed by its own bytes; all of them stay under the limit.
    Returns the number of values. Run before any conversion (``.float()`` of a stride-0 view would
    materialise it)."""
    limit = max_weights_params() if limit is None else limit
    check_tensor_count(len(sd), where, limit)
    total = 0
    for key, t in sd.items():
        n = t.numel()
        if n == 0:
            raise ModelLoadError(f"'{where}': tensor {key!r} has shape {tuple(t.shape)} and no values; "
                                 "a weights file holds no empty tensors")
        backed = t.untyped_storage().nbytes() // max(1, t.element_size())
        if n > backed:
            raise ModelLoadError(f"'{where}': tensor {key!r} of shape {tuple(t.shape)} declares {n:,} values "
                                 f"but is backed by {backed:,} (a stretched view); "
                                 "re-save it with real values")
        total += n
    check_value_count(total, where, limit)
    return total


# ---- the network the file describes ------------------------------------------------------------------


@dataclass
class _Budget:
    max_tensors: int
    max_values: int
    max_modules: int
    tensors: int = 0
    values: int = 0
    modules: int = 0


class _OverBudget(Exception):
    pass


_BUDGET: ContextVar[_Budget | None] = ContextVar("superres_build_budget", default=None)
_HOOKS_LOCK = threading.Lock()
_hooks_installed = False


def _on_parameter(module: Any, name: str, param: Any) -> None:
    budget = _BUDGET.get()
    if budget is None or param is None:
        return
    budget.tensors += 1
    budget.values += int(param.numel())
    if budget.tensors > budget.max_tensors or budget.values > budget.max_values:
        raise _OverBudget


def _on_buffer(module: Any, name: str, buffer: Any) -> None:
    _on_parameter(module, name, buffer)  # a persistent buffer is in the file like a parameter


def _on_module(module: Any, name: str, sub: Any) -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.modules += 1
    if budget.modules > budget.max_modules:
        raise _OverBudget


def _install_hooks() -> None:
    """torch's global registration hooks, installed once; they act only inside :func:`_budgeted`'s
    context (a ContextVar, so other threads building networks are never counted or stopped)."""
    global _hooks_installed
    with _HOOKS_LOCK:
        if _hooks_installed:
            return
        from torch.nn.modules import module as torch_module

        torch_module.register_module_parameter_registration_hook(_on_parameter)
        torch_module.register_module_module_registration_hook(_on_module)
        torch_module.register_module_buffer_registration_hook(_on_buffer)
        _hooks_installed = True


def build_within_limits(arch: str, hp: dict[str, Any], sd: Mapping[str, torch.Tensor], where: object,
                        limit: int | None = None) -> SRNet:
    """Build ``arch(**hp)`` for ``sd`` only when the network fits the file and the limit.

    The network is first built on the meta device under a budget: no more parameter tensors than ``sd``
    has keys, no more values than ``sd`` holds (a strict load needs every parameter in the file) and none
    beyond the limit. The budget stops the build at the first parameter past it, so even a file naming
    a million blocks costs a few of them."""
    from ..archs.base import build

    limit = max_weights_params() if limit is None else limit
    held = sum(int(t.numel()) for t in sd.values())
    # Parameters and persistent buffers are all in the file; non-persistent buffers (a mean, an index)
    # are small: a little room for them.
    budget = _Budget(max_tensors=len(sd) + _SMALL_BUFFERS, max_values=min(held, limit) + _SMALL_BUFFER_VALUES,
                     max_modules=8 * len(sd) + 256)
    try:
        _dry_run(arch, hp, budget, where)
    except _OverBudget:
        summary = _hp_summary(hp)
        if budget.values > limit and held >= limit:  # else the file is the problem: no limit would help
            raise _over(where, f"describes a {arch} network ({summary}) of more than {limit:,} parameters",
                        limit) from None
        raise ModelLoadError(
            f"weights at '{where}' do not fit {arch} ({summary}): that network needs more than the "
            f"{held:,} values in {len(sd):,} tensors the file holds; refused before building it") from None
    return build(arch, **hp)


def meta_network_within_limits(arch: str, hp: dict[str, Any], where: object, limit: int | None = None) -> SRNet:
    """A network on the meta device (no memory: it describes an exported model), built only when the
    hyper-parameters its file states stay within the limits; an exported file holds no weights to
    compare with, so only the limits bound it."""
    limit = max_weights_params() if limit is None else limit
    cap = max_weights_tensors(limit)
    budget = _Budget(max_tensors=cap + _SMALL_BUFFERS, max_values=limit + _SMALL_BUFFER_VALUES,
                     max_modules=8 * cap + 256)
    try:
        net = _dry_run(arch, hp, budget, where)
    except _OverBudget:
        raise _over(where, f"describes a {arch} network ({_hp_summary(hp)}) of more than {limit:,} parameters "
                    f"or {cap:,} tensors", limit) from None
    if net is None:
        raise ModelLoadError(f"'{where}': {arch} cannot be described without building it")
    return net


def _dry_run(arch: str, hp: dict[str, Any], budget: _Budget, where: object) -> SRNet | None:
    """``arch(**hp)`` on the meta device under ``budget`` (raises _OverBudget at the first parameter,
    buffer or module past it); None for a plugin network that cannot be built on the meta device."""
    import torch

    from ..archs.base import build

    _install_hooks()
    token = _BUDGET.set(budget)
    try:
        with torch.device("meta"):
            return build(arch, **hp)
    except (TypeError, ValueError, KeyError) as e:
        raise ModelLoadError(f"'{where}': cannot build {arch} with {_hp_summary(hp)}: {e}") from None
    except (NotImplementedError, RuntimeError):
        return None  # the file checks still held; the real build is the plugin's own
    finally:
        _BUDGET.reset(token)


def _hp_summary(hp: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in hp.items())
    return text if len(text) <= 160 else text[:157] + "..."
