"""One error base for the whole broker.

Domain code raises a `VdiError` subclass; the HTTP layer (broker.http_errors)
answers `{"error": CODE, "message": TEXT}` with the subclass's status. The CLI
prints the message and exits non-zero. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class VdiError(Exception):
    """Base of every error the broker answers on purpose."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class InvalidInput(VdiError):
    status, code = 422, "invalid_request"


class NotFound(VdiError):
    status, code = 404, "not_found"


class Conflict(VdiError):
    status, code = 409, "conflict"


class Unauthorized(VdiError):
    status, code = 401, "unauthorized"


class Forbidden(VdiError):
    status, code = 403, "forbidden"


class Locked(VdiError):
    status, code = 423, "locked"


class RateLimited(VdiError):
    status, code = 429, "rate_limited"


class Unavailable(VdiError):
    status, code = 503, "unavailable"
