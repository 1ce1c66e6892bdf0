"""The licence gate: architectures whose upstream code or weights forbid commercial use load only on request.

Why a gate and not a note: a user who drops a community ``.pth`` into a product pipeline should learn the
terms before the first pixel, not from a log line they never read. An :class:`~superres.archs.base.ArchSpec`
with ``noncommercial=True`` is refused with one line naming the architecture and its licence, unless
``$SUPERRES_ALLOW_NONCOMMERCIAL=1`` is set (the CLI's global ``--allow-noncommercial`` sets it, so the server,
batch workers and Ray workers started from it see it too). With the opt-in the licence is logged once per
architecture per process, as a warning the CLI shows on stderr.
"""

from __future__ import annotations

import functools
import logging
import os

from ..archs.base import ArchSpec
from ..errors import ModelLoadError

__all__ = ["ENV", "OPTION", "check_licence", "noncommercial_allowed", "worker_env"]

ENV = "SUPERRES_ALLOW_NONCOMMERCIAL"
OPTION = "--allow-noncommercial"
_YES = {"1", "true", "yes", "on"}

log = logging.getLogger(__name__)


def noncommercial_allowed() -> bool:
    """True when the user opted in to non-commercial architectures (``$SUPERRES_ALLOW_NONCOMMERCIAL``)."""
    return os.environ.get(ENV, "").strip().lower() in _YES


def worker_env() -> dict[str, str]:
    """The opt-in as environment for processes started elsewhere (Ray workers on other nodes)."""
    return {ENV: "1"} if noncommercial_allowed() else {}


def check_licence(spec: ArchSpec) -> None:
    """Refuse a non-commercial architecture without the opt-in; with it, say the licence (once)."""
    if not spec.noncommercial:
        return
    licence = spec.licence or "a non-commercial licence"
    if not noncommercial_allowed():
        raise ModelLoadError(
            f"{spec.name} ({spec.title}) is licensed {licence}: non-commercial use only; to accept, set "
            f"{ENV}=1 or add {OPTION} to the command"
        )
    _announce(spec.name, spec.title, licence)


@functools.lru_cache(maxsize=None)
def _announce(name: str, title: str, licence: str) -> None:
    # lru_cache makes this once per architecture per process; logging is thread-safe
    log.warning(
        "%s (%s) is licensed %s: non-commercial use only (accepted with %s)", name, title, licence, ENV
    )
