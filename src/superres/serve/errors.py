"""The one exception the HTTP layer turns into a response: a status, a short machine-readable code and
a sentence for people. Every error body is ``{"error": code, "detail": sentence}``."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel

__all__ = ["ApiError", "ErrorBody"]


class ErrorBody(BaseModel):
    """What every non-2xx answer carries (documented in the OpenAPI spec)."""

    error: str
    detail: str


class ApiError(Exception):
    """Raised anywhere in request handling or in a worker thread; rendered by the app's handler."""

    def __init__(
        self, status: int, error: str, detail: str, headers: Optional[dict[str, str]] = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.error, "detail": self.detail}
