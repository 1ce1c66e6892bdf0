"""Checkpoints a crash cannot half-write, and that say clearly when they are damaged.

A checkpoint is a folder ``RUN/checkpoints/iter_<N>/`` holding

* ``generator.safetensors`` and ``ema.safetensors`` (and ``discriminator.safetensors`` for GAN runs):
  plain weights with ``arch``/``hyperparams`` metadata, usable directly by ``superres upscale -m``;
* ``state.pt``: everything else a resumed run needs (optimisers, AMP scaler, EMA counter, RNG states of
  torch/CUDA/numpy/python, iteration, elapsed time), loadable with ``torch.load(weights_only=True)``
  (no pickled code);
* ``manifest.json``: size and sha256 of each file, checked on load (a flipped bit or a truncated copy is
  reported, never trained on).

The folder is written under a hidden temporary name and renamed into place, so a kill at any moment
leaves either the complete checkpoint or none; the previous ones stay until the new one is in place.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SuperresError
from ..files import sha256_file
from ..io.atomic import fsync_path

__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "save_weights",
    "set_rng_state",
]

_PREFIX = "iter_"


class CheckpointError(SuperresError):
    """A checkpoint or run folder that is missing, incomplete or corrupt."""


def rng_state() -> dict[str, Any]:
    """Global RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_weights(path: Path, sd: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(path), metadata=meta)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temporary folders are ignored)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(
    run_dir: Path,
    iteration: int,
    weights: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    meta: dict[str, str],
    *,
    keep: int = 2,
) -> Path:
    """Write ``iter_<iteration>`` atomically; keep the newest ``keep`` checkpoints. Returns its folder."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{_PREFIX}*.tmp"):  # left by a writer that was killed (one writer per run)
        shutil.rmtree(stale, ignore_errors=True)
    final = folder / f"{_PREFIX}{iteration:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder))
    try:
        for name, sd in weights.items():
            save_weights(tmp / f"{name}.safetensors", sd, meta)
        torch.save(state, tmp / "state.pt")
        manifest = {"iteration": iteration,
                    "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                              for p in sorted(tmp.iterdir())}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        for p in tmp.iterdir():
            fsync_path(p)
        if final.exists():  # same iteration written again (e.g. interrupt right after a periodic save)
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_path(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A run folder (its newest checkpoint) or a checkpoint folder -> the checkpoint folder."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"nothing to resume at '{p}' (give a run folder or one of its checkpoints/iter_* folders)")
    if (p / "manifest.json").is_file() or (p / "state.pt").exists():
        return p
    latest = latest_checkpoint(p)
    if latest is None:
        raise CheckpointError(f"'{p}' has no checkpoints (expected {p}/checkpoints/iter_*/); "
                              "the run stopped before its first checkpoint")
    return latest


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[Path, dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Verify and read a checkpoint: ``(folder, {name: state_dict}, state)``. Any damage is a
    :class:`CheckpointError` naming the file, with the older checkpoints to fall back on."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_checkpoint(path)
    others = [c.name for c in list_checkpoints(folder.parent.parent) if c != folder]
    hint = f" (older checkpoints to resume from instead: {', '.join(others)})" if others else ""

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint '{folder}' is corrupt: {why}{hint}")

    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise bad("manifest.json is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise bad(f"manifest.json is unreadable ({type(e).__name__})") from None
    for name, info in files.items():
        p = folder / name
        if not p.is_file():
            raise bad(f"{name} is missing")
        if p.stat().st_size != info.get("bytes"):
            raise bad(f"{name} has {p.stat().st_size} bytes, expected {info.get('bytes')} (truncated?)")
        if sha256_file(p) != info.get("sha256"):
            raise bad(f"{name} does not match its recorded sha256 (damaged file)")
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for name in files:
        if name.endswith(".safetensors"):
            try:
                weights[name[: -len(".safetensors")]] = load_file(str(folder / name))
            except (SafetensorError, OSError, ValueError) as e:
                raise bad(f"{name} is not a valid safetensors file ({e})") from None
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise bad(f"state.pt cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if not isinstance(state, dict) or "iteration" not in state:
        raise bad("state.pt holds no training state")
    return folder, weights, state
