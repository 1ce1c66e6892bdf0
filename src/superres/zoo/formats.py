"""Read weights files the way users have them, without ever executing pickled code.

Accepted: ``.safetensors``; ``.pth``/``.pt``/``.ckpt``/``.bin`` loaded with ``torch.load(weights_only=True)``
in the common layouts (``params_ema`` preferred over ``params``, ``state_dict``, ``model``, bare dicts,
``module.`` prefixes from DataParallel/DDP); ncnn ``.param`` (+ ``.bin`` beside it); and the old ESRGAN
key layout (``model.0.weight`` ...), which is renamed to the RRDBNet keys.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from .weight_limits import (
    check_legacy_pth,
    check_state_dict,
    check_tensor_count,
    check_value_count,
    check_zip_archive,
    max_weights_params,
    max_weights_tensors,
)

StateDict = dict[str, torch.Tensor]
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net_g", "generator",
                 "sd")  # sd: LIIF checkpoints ({"model": {"name", "args", "sd"}})
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".param")


def read_weights_file(path: str | Path) -> tuple[StateDict, dict[str, str]]:
    """Return ``(state_dict, metadata)`` from a weights file; raise :class:`ModelLoadError` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"weights file not found: '{p}'")
    if p.stat().st_size == 0:
        raise ModelLoadError(f"weights file is empty: '{p}'")
    suffix = p.suffix.lower()
    if suffix == ".param":
        return _read_ncnn(p)
    if suffix == ".safetensors":
        return _read_safetensors(p)
    return _read_torch(p)


def _read_safetensors(p: Path) -> tuple[StateDict, dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    limit = max_weights_params()
    _check_safetensors_header_size(p, limit)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
            # Shapes from the header, summed before any tensor is read (the library has checked that
            # each tensor's bytes are in the file).
            check_tensor_count(len(f.keys()), p, limit)
            check_value_count(sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys()), p, limit)
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"'{p}' is not a valid safetensors file ({_first_line(e)})") from None
    return normalise_state_dict(sd, p), meta


def _check_safetensors_header_size(p: Path, limit: int) -> None:
    """A safetensors header is JSON of ~100-150 bytes a tensor plus metadata; the library parses up to
    100 MB of it before a key can be counted, so its length (the file's first 8 bytes) is checked first
    against room for the tensor limit's worth of entries and 1 MiB of metadata."""
    cap = 256 * max_weights_tensors(limit) + (1 << 20)
    with open(p, "rb") as f:
        head = f.read(8)
    if len(head) == 8:
        size = int.from_bytes(head, "little")
        if size > cap:
            raise ModelLoadError(f"'{p}' declares a {size:,}-byte safetensors header, more than the {cap:,} "
                                 f"that {max_weights_tensors(limit):,} tensors need; if the file is trusted, "
                                 "raise the limit with superres --max-weights-params N <command> or "
                                 "SUPERRES_MAX_WEIGHTS_PARAMS=N")


def _read_torch(p: Path) -> tuple[StateDict, dict[str, str]]:
    # Sized from the zip directory / the legacy storage declarations before torch inflates or allocates.
    if zipfile.is_zipfile(p):
        check_zip_archive(p)
    else:
        check_legacy_pth(p)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(
            f"'{p}' holds pickled Python objects, which are never executed here; "
            f"re-save it as a plain dict of tensors or as .safetensors ({_first_line(e)[:120]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise ModelLoadError(
            f"'{p}' is not a readable PyTorch checkpoint (expected .pth/.safetensors weights): {_first_line(e)[:160]}"
        ) from None
    return normalise_state_dict(obj, p), {}


def _read_ncnn(p: Path) -> tuple[StateDict, dict[str, str]]:
    from .ncnn import convert, split_post_resize

    bin_path = p.with_suffix(".bin")
    if not bin_path.is_file():
        raise ModelLoadError(f"ncnn model '{p}' needs its weights file '{bin_path}' beside it")
    try:
        arch, hp, sd = convert(p, bin_path)
    except ModelLoadError:
        raise
    except Exception as e:  # the reader raises ValueError/KeyError on malformed files
        raise ModelLoadError(f"cannot convert ncnn model '{p}': {_first_line(e)}") from None
    # x2/x3 animevideov3 files are the x4 network plus a bicubic resize; the network is returned and the
    # resize is left to the engine (``--outscale``), as upstream does.
    hp, post = split_post_resize(hp)
    meta = {"arch": arch, "hyperparams": repr(hp), **{k: str(v) for k, v in (post or {}).items()}}
    return dict(sd), meta


def normalise_state_dict(obj: Any, where: Path | str = "<memory>") -> StateDict:
    """Unwrap checkpoint containers and strip parallel-training prefixes."""
    for _ in range(3):  # nested containers such as {"state_dict": {"params_ema": ...}}
        if isinstance(obj, dict) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise ModelLoadError(f"'{where}' holds no state dict (expected a dict of tensors, or params/params_ema)")
    # thop's profiler leaves per-module counters (``total_ops`` / ``total_params``) in some checkpoints
    # (OmniSR's among them): never weights, and no architecture has parameters of those names
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)
          and not (isinstance(k, str) and k.rsplit(".", 1)[-1] in ("total_ops", "total_params"))}
    if not sd:
        raise ModelLoadError(f"'{where}' holds no tensors (expected a dict of tensors, or params/params_ema)")
    check_state_dict(sd, where)  # before .float(), which would materialise a stretched view
    for prefix in ("module.", "model.module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    if _looks_like_old_esrgan(sd):
        sd = _rename_old_esrgan(sd)
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def _is_tensor_dict(d: dict[Any, Any]) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# ---- old ESRGAN layout: model.0 (conv_first), model.1.sub.{i}.RDB{j}.conv{k}.0, model.1.sub.{n} (conv_body),
# model.3 / model.6 (upconvs), model.8 (conv_hr), model.10 (conv_last). --------------------------------------

_OLD_RDB = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")


def _looks_like_old_esrgan(sd: StateDict) -> bool:
    return "model.0.weight" in sd and any(_OLD_RDB.match(k) for k in sd)


def _rename_old_esrgan(sd: StateDict) -> StateDict:
    n_blocks = 1 + max(int(m.group(1)) for k in sd if (m := _OLD_RDB.match(k)))
    fixed = {"model.0": "conv_first", f"model.1.sub.{n_blocks}": "conv_body", "model.3": "conv_up1",
             "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    out: StateDict = {}
    for k, v in sd.items():
        m = _OLD_RDB.match(k)
        if m:
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = v
            continue
        stem, _, leaf = k.rpartition(".")
        if stem in fixed:
            out[f"{fixed[stem]}.{leaf}"] = v
        else:
            raise ModelLoadError(f"unexpected key {k!r} in an old-style ESRGAN checkpoint")
    return out
