"""The server's private work folder: where uploads are spooled and job results wait to be fetched.

Why a folder of its own: ``--tmp-dir DIR`` is the user's folder. A server that wrote ``job-*`` files
straight into DIR and deleted every ``job-*`` on stop took the user's ``job-application.pdf`` with it,
and a second server sharing DIR deleted the first one's finished results. So each server makes
``DIR/superres-serve-<random>`` (mode 0700, ``tempfile.mkdtemp``), writes only there, and on stop deletes
only the names it writes there (``upload-*``, ``job-*`` and their hidden temporaries) and then the folder
if that left it empty. Nothing else in DIR is ever touched.

A server killed with ``kill -9`` cannot clean up. Its folder carries an owner marker (host, boot id,
pid and the process's start time); a later server starting on the same DIR sweeps a folder only when
the marker proves its owner dead: same host and pid namespace, and another boot, or no such pid, or a
pid since reused by a process that started at another time. A folder without a readable marker, of
another user, of another host or of another container's pid namespace is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..io.atomic import process_start_time

__all__ = ["OWNER_FILE", "PREFIX", "WorkDir", "sweep_dead"]

log = logging.getLogger(__name__)

#: Every server's folder is named ``PREFIX + random``; only such folders are ever swept.
PREFIX = "superres-serve-"
#: The owner marker inside it.
OWNER_FILE = "owner.json"
#: The names a server writes in its folder: spooled uploads, job results (and their atomic-write temporaries).
_OURS = ("upload-", "job-", ".job-")


@dataclass(frozen=True)
class Owner:
    """Who made a work folder: enough to prove later that this process is gone."""

    host: str
    boot: Optional[str]
    pid: int
    started: Optional[str]  # the process's start time in clock ticks since boot (Linux), if known
    pidns: Optional[str] = None  # the pid namespace: containers sharing a host name and a volume differ here

    @classmethod
    def me(cls) -> "Owner":
        pid = os.getpid()
        return cls(socket.gethostname(), _boot_id(), pid, _start_time(pid), _pid_namespace())

    def is_dead(self) -> bool:
        """True only when it can be proved: a marker of another host or pid namespace never is."""
        if self.host != socket.gethostname() or self.pidns != _pid_namespace():
            return False
        boot = _boot_id()
        if self.boot and boot and self.boot != boot:
            return True  # the machine restarted since: every process of that boot is gone
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's process (the pid was reused by another user)
        except OSError:
            return False
        started = _start_time(self.pid)
        return bool(self.started and started and started != self.started)  # the pid was reused


def _boot_id() -> Optional[str]:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _pid_namespace() -> Optional[str]:
    try:
        return os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError):
        return None


def _start_time(pid: int) -> Optional[str]:
    """The process's start time as the marker stores it (text); None where there is no /proc."""
    ticks = process_start_time(pid)
    return None if ticks is None else str(ticks)


def _read_owner(folder: Path) -> Optional[Owner]:
    try:
        with open(folder / OWNER_FILE, "rb") as f:
            raw = json.loads(f.read(4096))
        return Owner(str(raw["host"]), raw.get("boot"), int(raw["pid"]), raw.get("started"), raw.get("pidns"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_ours(folder: Path) -> list[str]:
    """Delete the names a server writes (never following links), then the marker and the folder if
    nothing else is left. Returns the names of anything left behind."""
    left: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name == OWNER_FILE:
            continue
        if entry.name.startswith(_OURS) and not entry.is_dir(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(entry.name)
        else:
            left.append(entry.name)
    if not left:
        try:
            (folder / OWNER_FILE).unlink(missing_ok=True)
            folder.rmdir()
        except OSError:
            left.append(".")
    return left


def _mine(entry: os.DirEntry[str]) -> bool:
    """A real folder (not a link) named like ours and owned by this user."""
    if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
        return False
    getuid = getattr(os, "getuid", None)
    return getuid is None or entry.stat(follow_symlinks=False).st_uid == getuid()


def sweep_dead(parent: Path) -> list[Path]:
    """Clean the folders in ``parent`` that servers killed without a stop left behind (see the module
    docstring for the proof asked of each); returns the folders removed."""
    swept: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return swept
    for entry in entries:
        try:
            if not _mine(entry):
                continue
        except OSError:
            continue
        folder = Path(entry.path)
        owner = _read_owner(folder)
        if owner is None or not owner.is_dead():
            continue
        left = _remove_ours(folder)
        if left:
            log.warning("left %s: it holds files a server does not write (%s)", folder, ", ".join(left[:5]))
        else:
            swept.append(folder)
    return swept


class WorkDir:
    """One server's private folder (see the module docstring). ``create`` makes it; ``remove`` deletes
    what the server wrote there, and the folder when that empties it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, parent: Optional[Path] = None) -> "WorkDir":
        """A new folder in ``parent`` (default: the system's temporary folder), after sweeping dead
        servers' leftovers there."""
        base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        swept = sweep_dead(base)
        if swept:
            log.info("removed %d folder(s) of servers that were killed: %s", len(swept),
                     ", ".join(p.name for p in swept))
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))  # mode 0700, a name nobody else has
        owner = Owner.me()
        fd = os.open(path / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(owner.__dict__, f)
        return cls(path)

    def remove(self) -> list[str]:
        """Delete what this server wrote and, if that empties it, the folder; returns what was left."""
        left = _remove_ours(self.path)
        if left:
            log.warning("left %s: it holds files the server did not write (%s)", self.path, ", ".join(left[:5]))
        return left
