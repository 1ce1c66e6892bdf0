"""Evaluation rows on disk as they finish, so a killed run loses nothing and a rerun resumes.

Why a JSON-lines file: a long evaluation (a zoo on Urban100 and DIV2K) takes hours; appending one line per
scored image, flushed and fsynced, costs nothing and survives ``kill -9``. The first line records the
settings that change the numbers (self-ensemble, precision, tile, backend, device kind); a rerun with other
settings is refused rather than mixing rows. A half-written last line (the run died mid-write) is cut off on
open. Rows are reused only when they hold every requested metric; others are recomputed and appended (the
last line for an image wins).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import SuperresError

__all__ = ["RowLog"]

_FORMAT = "superres-eval-rows/1"
_Key = tuple[str, str, int, str]


class RowLog:
    """Append-only per-image rows of one evaluation, keyed by (model, dataset, scale, image)."""

    def __init__(self, path: Path, handle: Any, kept: dict[_Key, tuple[dict[str, float | None], float]],
                 columns: Sequence[str]) -> None:
        self.path = path
        self._f = handle
        self._kept = kept
        self._columns = list(columns)

    @classmethod
    def open(cls, path: str | os.PathLike[str], settings: dict[str, Any], columns: Sequence[str]) -> RowLog:
        """Open (or create) the file; rows of an earlier run with the same ``settings`` become reusable."""
        p = Path(path)
        header = {"format": _FORMAT, "settings": settings}
        kept: dict[_Key, tuple[dict[str, float | None], float]] = {}
        try:
            if p.is_file() and p.stat().st_size:
                data = p.read_bytes()
                whole = data[: data.rfind(b"\n") + 1]
                lines = whole.decode("utf-8").splitlines()
                first = json.loads(lines[0]) if lines else None
                if not isinstance(first, dict) or first.get("format") != _FORMAT:
                    raise SuperresError(f"'{p}' is not an evaluation rows file; give a new file name")
                if first.get("settings") != settings:
                    raise SuperresError(f"'{p}' holds rows made with other settings ({first.get('settings')}); "
                                        "give a new file name or rerun with those settings")
                for line in lines[1:]:
                    row = json.loads(line)
                    key = (row["model"], row["dataset"], int(row["scale"]), row["image"])
                    kept[key] = ({k: (None if v is None else float(v)) for k, v in row["scores"].items()},
                                 float(row["seconds"]))
                if len(whole) != len(data):  # a torn last line: cut it off before appending
                    with open(p, "r+b") as f:
                        f.truncate(len(whole))
                handle = open(p, "a", encoding="utf-8")
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                handle = open(p, "w", encoding="utf-8")
                handle.write(json.dumps(header) + "\n")
                handle.flush()
        except (OSError, UnicodeDecodeError) as e:
            raise SuperresError(f"cannot use the rows file '{p}': {getattr(e, 'strerror', None) or e}") from None
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise SuperresError(f"'{p}' is not a readable evaluation rows file ({type(e).__name__}: {e}); "
                                "give a new file name") from None
        return cls(p, handle, kept, columns)

    def get(self, model: str, dataset: str, scale: int, image: str) -> tuple[dict[str, float | None], float] | None:
        """(scores, seconds) of a finished row holding every requested metric, else None."""
        found = self._kept.get((model, dataset, scale, image))
        if found is None or any(c not in found[0] for c in self._columns):
            return None
        return {c: found[0][c] for c in self._columns}, found[1]

    def append(self, model: str, dataset: str, scale: int, image: str, scores: dict[str, float | None],
               seconds: float) -> None:
        clean = {k: (None if v is None or not math.isfinite(v) else v) for k, v in scores.items()}
        row = {"model": model, "dataset": dataset, "scale": scale, "image": image, "scores": clean,
               "seconds": seconds}
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
