"""superres: deep-learning image super-resolution.

``superres.load_model(name_or_path)`` returns an :class:`~superres.inference.upscaler.Upscaler` that
upscales numpy arrays, PIL images and tensors. Heavy or optional parts are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .inference.upscaler import Upscaler


def load_model(name_or_path: str, **kwargs: Any) -> "Upscaler":
    """Load a zoo model by name (``superres models`` lists them), any supported weights file or an exported
    model; ``backend=`` picks what runs it (:func:`superres.loading.backend_names`)."""
    from .loading import load_model as _load

    return _load(name_or_path, **kwargs)


def list_models() -> list[str]:
    from .zoo.registry import list_models as _list

    return _list()


__all__ = ["__version__", "load_model", "list_models"]
