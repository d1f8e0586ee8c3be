"""Turn every error, expected or not, into a JSON body in the contract's shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.errors import VdiError
from broker.middleware import SECURITY_HEADERS
from broker.store.db_errors import BAD_VALUE, DATABASE_DOWN, bad_value, database_down, driver_error

log = logging.getLogger(__name__)


def _json(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status, headers=dict(headers or {}))


def vdi_error_response(exc: VdiError) -> JSONResponse:
    return _json(exc.status, exc.body(), exc.headers)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (no route, wrong method, ...) in the contract's shape."""
    code = {
        400: "invalid_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(exc.status_code, "http_error")
    return _json(exc.status_code, {"error": code, "message": str(exc.detail)}, exc.headers)


RETRY_AFTER_S = 5


def log_database_down(exc: Exception) -> None:
    log.warning("database unavailable: %s", type(driver_error(exc)).__name__)


def database_down_response(exc: Exception) -> JSONResponse:
    # The database is unreachable or restarting: a retryable 503, not a 500.
    log_database_down(exc)
    return _json(
        503,
        {"error": "unavailable", "message": "The database is not reachable; try again shortly."},
        {"Retry-After": str(RETRY_AFTER_S)},
    )


# The errors of the database layer database_error() answers (the portal's pages
# answer the first kind as a page: broker.web.access).
DATABASE_ERRORS: tuple[type[Exception], ...] = (*DATABASE_DOWN, *BAD_VALUE, DBAPIError)


async def database_error(_: Request, exc: Exception) -> JSONResponse:
    """A value the database refused (422), the database away (503), else a 500."""
    if bad_value(exc):
        # Input the checks in front let through and PostgreSQL refused; the
        # transaction rolled back, so nothing was stored. The value itself
        # is not logged: it may be anything a client sent.
        log.warning("the database refused a value: %s", type(exc).__name__)
        return _json(
            422,
            {"error": "invalid_request", "message": "A value in the request cannot be stored."},
        )
    if database_down(exc):
        return database_down_response(exc)
    raise exc  # anything else stays a 500 and is logged as one


def security_headers() -> dict[str, str]:
    """SecurityHeaders' headers, for an answer that leaves past that middleware."""
    return {name.decode(): value.decode() for name, value in SECURITY_HEADERS}


async def internal_error(_: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the exception after this answer. The answer leaves from
    # the outermost middleware, past SecurityHeaders, so it carries them itself.
    return _json(
        500,
        {"error": "internal", "message": "Something went wrong in the broker."},
        security_headers(),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, a JSON body in the contract's shape."""

    @app.exception_handler(VdiError)
    async def _vdi_error(_: Request, exc: VdiError) -> JSONResponse:
        return vdi_error_response(exc)

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
        return http_error_response(exc)

    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, database_error)

    app.add_exception_handler(Exception, internal_error)
