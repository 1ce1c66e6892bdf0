"""The study owner's secret: what ``GET /v1/study/votes.csv`` asks for, since the votes name the models.

It lives in the study folder as ``owner.token`` (created with the study, or by the first
``superres serve --study`` of an older folder; readable by the owner only, mode 0600). Whoever can read
the study folder can already read every vote from ``votes.sqlite``, so the folder is the boundary: the
token only extends it to the owner's HTTP client. Raters never see it.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Optional

__all__ = ["OWNER_TOKEN", "owner_token", "is_owner"]

OWNER_TOKEN = "owner.token"


def owner_token(root: Path) -> str:
    """The study's owner token, created (atomically, mode 0600) when the folder has none."""
    path = Path(root) / OWNER_TOKEN
    try:
        text = path.read_text().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{OWNER_TOKEN}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        try:
            os.link(tmp, path)  # never replaces a token another process wrote meanwhile
        except FileExistsError:
            return path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return token


def is_owner(root: Path, presented: Optional[str]) -> bool:
    """Whether ``presented`` is the owner token (compared in constant time)."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), owner_token(root).encode())
