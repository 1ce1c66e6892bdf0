"""What made each output: a small record in the output folder, so a rerun skips only what the same
settings made.

Why: a batch skips outputs that exist (resumable after Ctrl-C or ``kill -9``). Without a record, a rerun with
another model or scale into the same folder would keep the old files and report success. Each finished
output appends one JSON line to ``<output folder>/.superres-outputs.jsonl`` (``O_APPEND``: concurrent
batches and the Ray driver may append to one folder); the last line for a file wins. A file with no line
(made before records existed, or by another tool) has *unknown* settings and is never taken as current.

What counts as a setting: what changes the output's pixels or format beyond rounding: the model (name,
architecture, scale, a digest of its weights), ``--outscale`` / ``--width`` / ``--height``, the alpha mode,
the JPEG/WebP quality (for lossy outputs only) and whatever the caller adds (``--denoise``, ensembles and
the quality gate's fallback). Left out on purpose: tile size and overlap (tiling is seam-free and chosen
from free memory, so it varies between machines), device, precision and backend (differences at the
level of float rounding): counting them would call every rerun on another machine "other settings".
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RECORD_NAME", "OutputRecords", "describe", "fingerprint", "guard_settings", "settings_of",
           "weights_digest"]

RECORD_NAME = ".superres-outputs.jsonl"
#: A record file larger than this is not read (every output then counts as "unknown settings").
MAX_RECORD_BYTES = 64 << 20
_MAX_LINE = 64 << 10
_LOSSY = (".jpg", ".jpeg", ".webp", ".avif", ".heic", ".heif")


def weights_digest(net: Any) -> str:
    """sha256 (16 hex) of a network's tensors, or "" when they are not in memory (a runtime session's
    network lives on the 'meta' device): the identity of the weights, whatever file they came from."""
    try:
        import torch

        state = net.state_dict()
        h = hashlib.sha256()
        for key, t in sorted(state.items()):
            if t.device.type == "meta":
                return ""
            h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy())
        return h.hexdigest()[:16]
    except Exception:  # noqa: BLE001 - a record without a digest still names the model
        return ""


def settings_of(upscaler: Any, *, outscale: float | None = None, width: int | None = None,
                height: int | None = None, quality: int = 95, alpha: str | None = None,
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings that decide an output made by ``upscaler`` with these options (see the module doc)."""
    d = upscaler.descriptor
    net = getattr(upscaler, "network", None)
    settings: dict[str, Any] = {
        "model": upscaler.name, "arch": d.arch, "scale": int(d.scale),
        "weights": weights_digest(net) if net is not None else "",
        "outscale": None if outscale is None else float(outscale), "width": width, "height": height,
        "alpha": alpha or getattr(getattr(upscaler, "options", None), "alpha", "model"),
        "quality": int(quality),
    }
    for key, value in (extra or {}).items():
        if value not in (None, False, 0, (), [], ""):
            settings[key] = value
    return settings


def guard_settings(self_ensemble: bool = False, mc_dropout: int = 0, ensemble_with: Any = (),
                   fallback: str | None = None, niqe_tolerance: float = 1.0,
                   max_uncertainty_p99: float | None = 12.0, **_: Any) -> dict[str, Any]:
    """The ensemble and quality-gate choices (``GuardChoices`` fields) that change the pixels written; the
    gate's thresholds only count when a fallback replaces flagged outputs."""
    out: dict[str, Any] = {"self_ensemble": bool(self_ensemble), "mc_dropout": int(mc_dropout or 0),
                           "ensemble_with": list(ensemble_with or ()), "fallback": fallback}
    if fallback:
        out["gate"] = [niqe_tolerance, max_uncertainty_p99]
    return out


def _for_output(settings: Mapping[str, Any], dst: Path) -> dict[str, Any]:
    """Quality changes nothing in a lossless file: left out there, so a PNG rerun with --quality 80 matches."""
    own = dict(settings)
    if dst.suffix.lower() not in _LOSSY:
        own.pop("quality", None)
    return own


def fingerprint(settings: Mapping[str, Any], dst: Path) -> str:
    text = json.dumps(_for_output(settings, dst), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(settings: Mapping[str, Any]) -> str:
    """``span-x4 x4, -s 5``: the settings a user would recognise, for one-line notices."""
    parts = [f"{settings.get('model', '?')} x{settings.get('scale', '?')}"]
    if settings.get("outscale") is not None:
        parts.append(f"-s {settings['outscale']:g}")
    for key in ("width", "height"):
        if settings.get(key):
            parts.append(f"--{key} {settings[key]}")
    if settings.get("alpha") not in (None, "model"):
        parts.append(f"--alpha {settings['alpha']}")
    for key in ("denoise", "self_ensemble", "mc_dropout", "ensemble_with", "fallback"):
        if settings.get(key) not in (None, False, 0, (), [], ""):
            value = settings[key]
            parts.append(f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}"))
    return ", ".join(parts)


class OutputRecords:
    """The record file of one output folder: read once at plan time, appended to as outputs finish."""

    def __init__(self, out_root: Path) -> None:
        self.root = Path(out_root)
        self.path = self.root / RECORD_NAME
        self._by_output: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        try:
            if not self.path.is_file() or self.path.is_symlink() or self.path.stat().st_size > MAX_RECORD_BYTES:
                return
            lines = 0
            with open(self.path, "rb") as f:
                while line := f.readline(_MAX_LINE):
                    lines += 1
                    try:
                        entry = json.loads(line)
                        self._by_output[str(entry["output"])] = dict(entry["settings"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line (kill -9), or a line too long: that output is unknown
        except OSError:
            return
        if lines > 2 * len(self._by_output) + 1000:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the record with one line per output (reruns with --overwrite append a line each time), so
        it never grows past what :data:`MAX_RECORD_BYTES` reads. A line another batch appends meanwhile may
        be lost: its output then has unknown settings, which is never taken as current."""
        from ..io.atomic import atomic_write

        text = "".join(json.dumps({"output": k, "settings": v}, default=str) + "\n"
                       for k, v in sorted(self._by_output.items()))
        try:
            with atomic_write(self.path) as tmp:
                tmp.write_text(text, encoding="utf-8")
        except OSError:
            pass

    def _key(self, dst: Path) -> str:
        try:
            return Path(dst).relative_to(self.root).as_posix()
        except ValueError:
            return Path(dst).as_posix()

    def recorded(self, dst: Path) -> dict[str, Any] | None:
        """The settings that made ``dst``, or None when nothing recorded them."""
        return self._by_output.get(self._key(dst))

    def matches(self, dst: Path, settings: Mapping[str, Any]) -> bool:
        old = self.recorded(dst)
        return old is not None and fingerprint(old, dst) == fingerprint(settings, dst)

    def why_not(self, dst: Path, settings: Mapping[str, Any]) -> str:
        """One line for an existing output that these settings did not make."""
        old = self.recorded(dst)
        if old is None:
            return "made with unknown settings (no record of this run's model and scale)"
        return f"made with other settings ({describe(old)}; now {describe(settings)})"

    def add(self, dst: Path, settings: Mapping[str, Any]) -> None:
        """Record that ``settings`` made ``dst`` (after its atomic rename). One ``O_APPEND`` write per line,
        so lines of concurrent batches do not interleave; a failure to record is not a failed output."""
        key = self._key(dst)
        line = json.dumps({"output": key, "settings": _for_output(settings, dst)}, default=str) + "\n"
        self._by_output[key] = dict(settings)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError:
            return
        try:
            os.write(fd, line.encode())
        except OSError:
            pass
        finally:
            os.close(fd)
