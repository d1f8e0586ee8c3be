"""One error base for the whole broker, and the handlers that turn errors into JSON.

Domain code raises a `VdiError` subclass; the HTTP layer answers
`{"error": CODE, "message": TEXT}` with the subclass's status. The CLI prints the
message and exits non-zero. Nothing else needs to know about HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


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


def _json(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status, headers=dict(headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, a JSON body in the contract's shape."""

    @app.exception_handler(VdiError)
    async def _vdi_error(_: Request, exc: VdiError) -> JSONResponse:
        return _json(exc.status, exc.body(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in err.get("loc", ())[1:]), "problem": err.get("msg")}
            for err in exc.errors()
        ]
        return _json(
            422,
            {
                "error": "invalid_request",
                "message": "The request is not valid.",
                "details": details,
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return _json(exc.status_code, {"error": code, "message": str(exc.detail)}, exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _db_down(_: Request, exc: DBAPIError) -> JSONResponse:
        # The database is unreachable or restarting: a retryable 503, not a 500.
        log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
        return _json(
            503,
            {
                "error": "unavailable",
                "message": "The database is not reachable; try again shortly.",
            },
            {"Retry-After": "5"},
        )
