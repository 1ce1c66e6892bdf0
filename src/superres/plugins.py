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

__all__ = ["GROUP", "load_plugins"]

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
