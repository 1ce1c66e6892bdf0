"""All-or-nothing file writes.

An upscale can take minutes and a crash, a full disk or Ctrl-C halfway through must never leave a
half-written image or video where the user expects a finished one (and must never destroy the old
file it was replacing). Everything is written to a hidden temporary file in the destination folder
(same filesystem, so the final rename is atomic), flushed to disk, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "fsync_path", "owner_tag", "remove_stale_temps", "TEMP_MARKER"]

#: Every temporary name contains this, so a rerun can find what a killed run (kill -9) left behind.
TEMP_MARKER = ".superres-tmp-"
#: Leftovers of another machine (a shared folder) whose owner cannot be asked are removed after this long.
FOREIGN_STALE_S = 24 * 3600


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    tmp_suffix: str = ".tmp",
    make_parents: bool = True,
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path`` atomically.

    The temporary file is named ``.<name>.superres-tmp-<owner>-<random><tmp_suffix>`` so it is hidden,
    recognisable and tells whose it is (:func:`owner_tag`, :func:`remove_stale_temps`);
    callers whose writer picks a format from the suffix (video muxers) pass e.g. ``".tmp.mp4"``.
    If the block raises (anything, KeyboardInterrupt included) the temporary file is removed and the
    exception propagates unchanged; the target is then untouched. Errors are plain ``OSError``s
    (``FileExistsError`` when ``overwrite`` is false and the target exists) so each caller can turn
    them into its own one-line message.
    """
    target = Path(path)
    parent = target.parent
    if not overwrite and target.exists():
        raise FileExistsError(17, "file exists (refusing to overwrite)", str(target))
    created = _missing_folders(parent) if make_parents else []
    if created:
        parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARKER}{owner_tag()}-", suffix=tmp_suffix, dir=parent)
    except BaseException:
        _remove_empty(created)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        _copy_permissions(tmp, target)
        if not overwrite and target.exists():  # someone else finished first
            raise FileExistsError(17, "file exists (refusing to overwrite)", str(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _remove_empty(created)
        raise
    fsync_path(parent)


def owner_tag(pid: int | None = None) -> str:
    """``<host>.<pid>.<start time>``: who owns a temporary file. The start time (from /proc) tells a live
    owner from a later process that reused its pid; the host keeps machines sharing a folder apart."""
    pid = os.getpid() if pid is None else pid
    return f"{_host()}.{pid}.{process_start_time(pid) or 0}"


def _host() -> str:
    import hashlib
    import socket

    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None where it cannot be read: with
    the pid it names one process, so a later process that reused the pid is told apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(4096)
        return int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22; the name may contain spaces
    except (OSError, ValueError, IndexError):
        return None


_OWNER = re.compile(r"^([0-9a-f]{6})\.(\d{1,10})\.(\d{1,20})-")


def _owner_alive(name: str, marker_at: int, mtime: float) -> bool:
    """Whether the process that made temporary file ``name`` may still be writing it."""
    m = _OWNER.match(name[marker_at + len(TEMP_MARKER):])
    if m is None:  # made before owners were recorded: only a killed run of an older version leaves these
        return False
    host, pid, started = m.group(1), int(m.group(2)), int(m.group(3))
    if host != _host():  # another machine on a shared folder: its processes cannot be asked
        return time.time() - mtime < FOREIGN_STALE_S
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists, someone else's
        pass
    now = process_start_time(pid)
    return now is None or started == 0 or now == started


def remove_stale_temps(folder: str | os.PathLike[str], *, recursive: bool = True, name: str = "") -> list[Path]:
    """Delete temporary files that an earlier, killed run left in ``folder``; returns what was removed.

    Only names made by ``atomic_write`` (hidden, with ``TEMP_MARKER``) are touched, never through a
    symbolic link, and only when their owner (:func:`owner_tag`) is gone: a batch still writing into the
    same folder keeps its temporary files. ``name`` limits it to the temporaries of one target."""
    root = Path(folder)
    if not root.is_dir():
        return []
    pattern = f".{glob.escape(name)}{TEMP_MARKER}*" if name else f".*{TEMP_MARKER}*"
    found = root.rglob(pattern) if recursive else root.glob(pattern)
    removed = []
    for p in sorted(found):
        try:
            st = p.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or _owner_alive(p.name, p.name.index(TEMP_MARKER), st.st_mtime):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def _missing_folders(folder: Path) -> list[Path]:
    """The folders mkdir(parents=True) would create, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Undo the folders made for a write that failed (only while they are still empty)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _fsync_file(path: Path) -> None:
    """Make the bytes durable before the rename, so a power cut can't leave an empty renamed file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder (persists a rename in it), to disk; best effort (not possible on Windows
    or some network filesystems)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_permissions(tmp: Path, target: Path) -> None:
    """mkstemp creates 0600 files; give the result the permissions a normal ``open()`` would (or the
    replaced file's), so outputs stay readable by the people they were made for."""
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def _umask() -> int:
    """Read the process umask without the set-and-restore race of ``os.umask`` (Linux exposes it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
