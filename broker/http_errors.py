"""Turn every error, expected or not, into a JSON body in the contract's shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.errors import VdiError

log = logging.getLogger(__name__)


def _json(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status, headers=dict(headers or {}))


def vdi_error_response(exc: VdiError) -> JSONResponse:
    return _json(exc.status, exc.body(), exc.headers)


def database_down_response(exc: DBAPIError) -> JSONResponse:
    # The database is unreachable or restarting: a retryable 503, not a 500.
    log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
    return _json(
        503,
        {"error": "unavailable", "message": "The database is not reachable; try again shortly."},
        {"Retry-After": "5"},
    )


# Errors that mean "the database is not there right now".
DATABASE_DOWN = (OperationalError, InterfaceError)


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
        code = {
            400: "invalid_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        return _json(exc.status_code, {"error": code, "message": str(exc.detail)}, exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _db_down(_: Request, exc: DBAPIError) -> JSONResponse:
        return database_down_response(exc)
