"""Errors a user can act on. Each message is one line that says what was expected; the CLI prints it
without a traceback and exits non-zero."""

from __future__ import annotations


class SuperresError(Exception):
    """Base class for every error meant for the user, not the developer."""


class ImageReadError(SuperresError):
    """A file that is missing, empty, truncated, too large or not an image."""


class ImageWriteError(SuperresError):
    """An output that cannot be written (unwritable folder, full disk, unsupported format)."""


class ModelLoadError(SuperresError):
    """An unknown model name, or a weights file that is not what was expected."""


class DatasetError(SuperresError):
    """A dataset folder that is missing, empty or malformed."""
