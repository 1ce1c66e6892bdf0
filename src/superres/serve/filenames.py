"""File names on the wire: the name a result downloads under, and the ``Content-Disposition`` header
that carries it.

Why a module: HTTP headers are Latin-1, and a header built as ``filename="猫.png"`` made Starlette raise
``UnicodeEncodeError`` — a 500 for every upload with a Chinese, Japanese or Cyrillic name, and a finished
job whose result could never be downloaded. :func:`content_disposition` follows RFC 6266 with RFC 5987's
``filename*``: an ASCII ``filename="..."`` for old clients, and the exact name, UTF-8 percent-encoded,
for every browser since 2011. Every route that names a download calls it (the study's CSV export may too).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import quote, unquote

__all__ = ["content_disposition", "out_name", "parse_ext_value"]

_MAX_STEM = 100  # characters of the upload's stem kept in a download name
# RFC 5987 attr-char besides letters and digits: everything else is percent-encoded
_ATTR_CHAR = "!#$&+-.^_`|~"


def _keep(ch: str) -> bool:
    """Characters a download name keeps: ASCII letters, digits and ``-_.``, and non-ASCII letters, marks,
    digits and symbols (so 猫, Жук and 🐱 survive). Separators, controls, bidi overrides and path or shell
    characters become ``_``."""
    if ch.isascii():
        return ch.isalnum() or ch in "-_."
    return unicodedata.category(ch)[0] in "LMNS"


def out_name(filename: str, suffix: str, model_scale: str) -> str:
    """A safe download name: the upload's stem, the model or scale, the output suffix."""
    stem = Path(filename).stem or "image"
    safe = "".join(ch if _keep(ch) else "_" for ch in stem)[:_MAX_STEM]
    return f"{safe}_{model_scale}{suffix}"


def _ascii_fallback(name: str) -> str:
    """``name`` for clients that ignore ``filename*``: accents dropped (é -> e), each run of other
    non-ASCII characters as one ``_``; no quote, backslash, percent sign or control character."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFKD", name):
        if unicodedata.combining(ch):
            continue
        if ch.isascii() and ch.isprintable() and ch not in '"\\%':
            out.append(ch)
        elif not out or out[-1] != "_":
            out.append("_")
    text = re.sub("__+", "_", "".join(out))
    p = Path(text)
    if not p.stem.strip("_ ."):  # nothing readable left: a neutral stem, the suffix kept
        text = "download" + (p.suffix if p.suffix.isascii() else "")
    return text


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """``attachment; filename="ascii"; filename*=UTF-8''percent-encoded`` (RFC 6266 / RFC 5987).

    The value is pure ASCII, so it is a valid header whatever ``filename`` holds; the ``filename*`` part
    is added only when the fallback differs from the name."""
    if disposition not in ("attachment", "inline"):
        raise ValueError(f"disposition must be 'attachment' or 'inline', not {disposition!r}")
    name = "".join(ch for ch in filename if unicodedata.category(ch)[0] != "C") or "download"
    fallback = _ascii_fallback(name)
    header = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        header += f"; filename*=UTF-8''{quote(name, safe=_ATTR_CHAR, encoding='utf-8')}"
    return header


def parse_ext_value(value: str) -> str:
    """The name in an RFC 5987 ``filename*`` value (``UTF-8''%E7%8C%AB.png``); undecodable bytes become
    U+FFFD, an unknown charset is read as UTF-8."""
    charset, _, rest = value.strip().strip('"').partition("'")
    _lang, _, encoded = rest.partition("'")
    try:
        return unquote(encoded, encoding=charset or "utf-8", errors="replace")
    except LookupError:
        return unquote(encoded, encoding="utf-8", errors="replace")
