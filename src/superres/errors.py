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


def one_line(e: BaseException) -> str:
    """An exception as one line of at most 160 characters (its type name when it says nothing)."""
    text = " ".join(str(e).split())
    return (text if len(text) <= 160 else text[:157] + "...") or type(e).__name__


def did_you_mean(word: str, choices: "Iterable[str]") -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to a misspelt ``word``, else ``""``.

    A list of every valid name makes the reader find the typo; naming the likely one does it for them."""
    import difflib

    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def install_hint(extra: str) -> str:
    """How to get an optional part: the released package and, in a source checkout, the project's setup
    script or an editable install. The brackets are literal text (the CLI prints messages without rich
    markup), so ``[video]`` reaches the user intact."""
    return (f"pip install 'superres[{extra}]' (in a checkout: bash scripts/setup.sh {extra}, "
            f"or pip install -e '.[{extra}]')")
