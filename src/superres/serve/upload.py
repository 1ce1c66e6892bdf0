"""Streaming multipart upload: the image goes to a named temporary file while it arrives, with the
byte limit enforced on the way in.

Why not the framework's form parser: it has no total-size limit (a 10 GB upload is spooled to disk before
the handler can refuse it) and its spool files are anonymous, so nobody can check that they are gone.
Here the body is counted chunk by chunk (413 as soon as it is over the limit, or at once from
Content-Length), the single file part is written to ``upload-<random>.part`` in the server's temp folder,
and a ``finally`` removes that file on every failure path, client disconnects included. Small text
fields are kept in memory with their own caps.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ApiError
from .filenames import parse_ext_value

__all__ = ["FILE_FIELD", "Upload", "receive_upload"]

FILE_FIELD = "file"
_MAX_FIELD_BYTES = 1024
_MAX_PARTS = 16
_EXT_FILENAME = re.compile(r"(?:^|;)\s*filename\*\s*=\s*([^;\s]+)", re.IGNORECASE)
_DRAIN_EXTRA = 16 << 20  # read (and drop) this much of an oversize body so the client sees the 413


@dataclass
class Upload:
    """A received request: the spooled image (owned by the caller once returned) and the text fields."""

    path: Optional[Path]
    filename: str = "upload"
    content_type: str = ""
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        """Remove the spooled file (idempotent)."""
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.path = None


class _Collector:
    """python-multipart callbacks that route the ``file`` part to disk and other parts to ``fields``."""

    def __init__(self, tmp_dir: Path, upload: Upload) -> None:
        self.tmp_dir = tmp_dir
        self.upload = upload
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.kind = "skip"  # file | field | skip
        self.name = ""
        self.value = bytearray()
        self.fd: Optional[int] = None
        self.parts = 0

    # header callbacks
    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > _MAX_PARTS:
            raise ApiError(422, "invalid_request", f"too many form fields (at most {_MAX_PARTS})")
        self.headers, self.header_field, self.header_value = {}, b"", b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.strip().lower()] = self.header_value.strip()
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        raw = self.headers.get(b"content-disposition", b"")
        _, params = parse_options_header(raw)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self.name, self.value = name, bytearray()
        if name == FILE_FIELD and self.upload.path is None:
            self.kind = "file"
            # browsers send the name as raw UTF-8; some clients send RFC 5987 filename*=UTF-8''%..
            # (python-multipart drops that parameter), which wins when present
            ext = _EXT_FILENAME.search(raw.decode("latin-1"))
            filename = (parse_ext_value(ext.group(1)) if ext
                        else params.get(b"filename", b"upload").decode("utf-8", "replace"))
            self.upload.filename = Path(filename.replace("\\", "/")).name or "upload"
            self.upload.content_type = self.headers.get(b"content-type", b"").decode("latin-1")
            path = self.tmp_dir / f"upload-{secrets.token_hex(8)}.part"
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self.upload.path = path
        elif name and name != FILE_FIELD:
            self.kind = "field"
        else:
            self.kind = "skip"

    # data callbacks
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.kind == "file":
            assert self.fd is not None
            view = memoryview(chunk)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            self.upload.size += len(chunk)
        elif self.kind == "field":
            self.value += chunk
            if len(self.value) > _MAX_FIELD_BYTES:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"form field {self.name!r} is longer than {_MAX_FIELD_BYTES} bytes",
                )

    def on_part_end(self) -> None:
        if self.kind == "file":
            self.close()
        elif self.kind == "field":
            self.upload.fields[self.name] = self.value.decode("utf-8", "replace")
        self.kind = "skip"

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def callbacks(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in (
                "on_part_begin",
                "on_header_field",
                "on_header_value",
                "on_header_end",
                "on_headers_finished",
                "on_part_data",
                "on_part_end",
            )
        }


async def _drain(request: Any, already: int) -> None:
    """Read and drop the rest of an oversize body (bounded) so an ordinary client gets the response."""
    read = already
    try:
        async for chunk in request.stream():
            read += len(chunk)
            if read > _DRAIN_EXTRA:
                return
    except Exception:
        return


async def receive_upload(request: Any, tmp_dir: Path, max_bytes: int) -> Upload:
    """Parse a ``multipart/form-data`` request (a Starlette ``Request``) with the image in field ``file``.

    Raises :class:`ApiError` 413 (body over ``max_bytes``), 415 (not multipart) or 422 (malformed, no
    file). On any exception, the client going away included, the spooled file is removed."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send multipart/form-data with the image in the field {FILE_FIELD!r}",
        )
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise ApiError(422, "invalid_request", "multipart/form-data without a valid boundary")
    too_large = ApiError(413, "request_too_large", f"request body is over the limit of {max_bytes:,} bytes")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(422, "invalid_request", "Content-Length is not a number")
        if int(length) > max_bytes:
            if int(length) <= _DRAIN_EXTRA:
                await _drain(request, 0)
            raise too_large
    upload = Upload(path=None)
    collector = _Collector(tmp_dir, upload)
    parser = MultipartParser(boundary, collector.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                collector.close()
                upload.discard()
                await _drain(request, received)
                raise too_large
            if chunk:
                parser.write(chunk)
        parser.finalize()
        if collector.fd is not None:
            raise ApiError(422, "invalid_request", "multipart body ends inside the file part")
        if upload.path is None:
            raise ApiError(422, "missing_file", f"no form field {FILE_FIELD!r} with the image")
        return upload
    except MultipartParseError as e:
        collector.close()
        upload.discard()
        raise ApiError(422, "invalid_request", f"malformed multipart body ({e})") from None
    except BaseException:
        collector.close()
        upload.discard()
        raise
