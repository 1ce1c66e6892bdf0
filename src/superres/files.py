"""File identity and hash-pinned downloads: the one sha256 helper and the one downloader.

Why one place: weights (zoo, LPIPS, VGG for the perceptual loss), exported models and training
checkpoints are all checked by sha256, and every download must be verified before it appears under its
final name. A second copy of either rule is a second place for it to be wrong.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from .errors import ModelLoadError
from .io.atomic import atomic_write

CHUNK = 1 << 20

__all__ = ["DownloadError", "download_pinned", "sha256_file"]


class DownloadError(ModelLoadError):
    """A download failed or did not match its pinned sha256 (one-line message)."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _stream(url: str, timeout: float) -> Iterator[bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - caller-chosen, pinned URL
        for chunk in iter(lambda: resp.read(CHUNK), b""):
            yield chunk


def download_pinned(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    sha256_prefix: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``; the file appears under its final name only if its sha256 is the
    pinned one (``sha256``) or starts with ``sha256_prefix`` (torchvision names carry only a prefix).

    Streams to a temporary file beside ``dest`` and renames it atomically, so an interrupted or corrupt
    download never leaves a file that looks complete. Raises :class:`DownloadError`.
    """
    if not sha256 and not sha256_prefix:
        raise ValueError(f"refusing an unpinned download of {url}: give sha256 or sha256_prefix")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest) as tmp:
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as f:
                for chunk in _stream(url, timeout):
                    h.update(chunk)
                    f.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = str(getattr(e, "reason", None) or e).strip() or type(e).__name__
            raise DownloadError(f"download of {url} failed: {reason.splitlines()[0]}") from None
        got = h.hexdigest()
        if sha256 and got != sha256.strip().lower():
            raise DownloadError(f"download of {url} has sha256 {got}, expected {sha256}; file discarded")
        if sha256_prefix and not got.startswith(sha256_prefix.lower()):
            raise DownloadError(
                f"download of {url} has sha256 {got}, expected prefix {sha256_prefix}; file discarded"
            )
    return dest
