"""Which errors mean "the database is not there right now".

The HTTP layer answers them with a retryable 503 (broker.http_errors); the
command line with one line on stderr instead of a traceback (broker.cli).
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLAlchemy's wrapped errors, and what asyncpg and the OS raise when a new
# connection cannot be made (SQLAlchemy does not wrap those) or the server is
# still starting.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
)


def database_down(exc: BaseException) -> bool:
    """Whether `exc` means the database is not there right now."""
    if isinstance(exc, DATABASE_DOWN):
        return True
    if isinstance(exc, DBAPIError):
        # A connection lost in the middle of a statement reaches us as a plain
        # DBAPIError from SQLAlchemy's asyncpg adapter; the driver's own error
        # is the cause of the adapter's.
        driver = exc.orig.__cause__ if exc.orig is not None else None
        return exc.connection_invalidated or isinstance(driver, DATABASE_DOWN)
    return False
