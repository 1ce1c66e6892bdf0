"""The one user cache folder: converted zoo weights, downloads, LPIPS/VGG/NIQE files, exported models.

``$SUPERRES_CACHE_DIR`` if set (tests and CI point it at a temporary folder), else the platform's user
cache directory for superres. Every part of the package asks here, so one variable moves all of it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """The cache root, or the sub-folder ``parts`` below it (not created here)."""
    env = os.environ.get("SUPERRES_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("superres"))
    return root.joinpath(*parts)
