"""Errors a user can act on. Each message is one line that says what was expected; the CLI prints it
without a traceback and exits non-zero."""

from __future__ import annotations

from typing import Iterable


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


def did_you_mean(word: str, choices: "Iterable[str]") -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to a misspelt ``word``, else ``""``.

    A list of every valid name makes the reader find the typo; naming the likely one does it for them."""
    import difflib

    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""
