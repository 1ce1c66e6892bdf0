"""Third-party additions: metrics, runtime backends and architectures from other installed packages.

A package adds to superres by declaring an entry point in the group ``superres.plugins``::

    [project.entry-points."superres.plugins"]
    mymetrics = "mypackage.superres_plugin"

The named module (or a callable, which is then called) registers what it brings with
:func:`superres.metrics.registry.register_metric`, :func:`superres.loading.register_backend` or
:func:`superres.archs.register`. Plugins are found once per process, the first time a registry is
listed or asked for a name. A plugin that fails to import is skipped with a logged warning, so a broken
extra never breaks upscaling.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Generic, TypeVar

__all__ = ["GROUP", "Registry", "load_plugins"]

T = TypeVar("T")

GROUP = "superres.plugins"
log = logging.getLogger(__name__)
_lock = threading.RLock()
_loaded: list[str] | None = None


def load_plugins() -> list[str]:
    """Import every ``superres.plugins`` entry point once; returns the names that loaded."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        _loaded = []  # set first: a plugin that lists a registry while loading does not recurse
        from importlib.metadata import entry_points

        for ep in entry_points(group=GROUP):
            try:
                obj = ep.load()
                if callable(obj):
                    obj()
            except Exception as e:  # noqa: BLE001 - a broken plugin must not break the tool
                log.warning("superres plugin %r (%s) failed to load: %s", ep.name, ep.value, e)
                continue
            _loaded.append(ep.name)
        return _loaded


class Registry(Generic[T]):
    """Named entries (metrics, backends) in registration order; reading it loads the plugins first, so
    third-party entries are listed and found like built-in ones. ``conflicts(new, old)`` says why a new
    entry may not join (a name, or another unique field, already taken); ``None`` lets it in."""

    def __init__(self, kind: str, name_of: Callable[[T], str],
                 conflicts: Callable[[T, T], str | None] | None = None) -> None:
        self.kind, self._name_of = kind, name_of
        self._conflicts = conflicts or (lambda new, old: "name" if name_of(new) == name_of(old) else None)
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()

    def register(self, item: T) -> T:
        from .errors import SuperresError

        with self._lock:
            for old in self._items.values():
                why = self._conflicts(item, old)
                if why:
                    raise SuperresError(
                        f"{self.kind} {self._name_of(item)!r} is already registered ({why} of {self._name_of(old)!r})"
                    )
            self._items[self._name_of(item)] = item
        return item

    def table(self) -> dict[str, T]:
        load_plugins()
        return self._items

    def names(self) -> tuple[str, ...]:
        return tuple(self.table())

    def get(self, name: str, *, option: str) -> T:
        """The entry called ``name`` (case and spaces ignored); else a one-line error naming ``option``."""
        from .errors import SuperresError, did_you_mean

        table = self.table()
        key = name.strip().lower()
        if key not in table:
            raise SuperresError(
                f"unknown {self.kind} {name!r}{did_you_mean(key, table)}; {option} takes {', '.join(table)}"
            )
        return table[key]
