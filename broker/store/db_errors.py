"""What a database error means: the database is not there right now, or a
value it cannot store.

The HTTP layer answers the first with a retryable 503 and the second with a
422 (broker.http_errors); the command line says the first in one line on
stderr instead of a traceback (broker.cli).
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator

import asyncpg
from asyncpg.exceptions._base import DataError as _ArgumentError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# What asyncpg raises for an argument it cannot send (an int beyond int32 for an
# INTEGER column) before the statement reaches the server. It derives from
# asyncpg's InterfaceError, but it is a bad value, not a lost connection; asyncpg
# does not export it under its own name.
ArgumentError = _ArgumentError

# SQLAlchemy's wrapped errors, and what asyncpg and the OS raise when a new
# connection cannot be made (SQLAlchemy does not wrap those: a refused or lost
# connection, a host name that does not resolve) or the server is still starting.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    socket.gaierror,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
)


# What PostgreSQL refuses to store (SQLSTATE class 22: NUL in text, a number
# beyond its column, a string longer than its column), and what asyncpg refuses
# to send (an int beyond int4 for an int4 parameter). SQLite stores all of it,
# so input checks made on SQLite alone can miss these; whatever reaches the
# database anyway is bad input, not an outage. asyncpg's client-side kind is an
# InterfaceError, which would otherwise read as "down".
BAD_VALUE: tuple[type[Exception], ...] = (asyncpg.exceptions.DataError, ArgumentError)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the driver error SQLAlchemy wraps, and that error's own cause."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return
        yield seen
        orig = getattr(seen, "orig", None)
        seen = orig if isinstance(orig, BaseException) else seen.__cause__


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own error that SQLAlchemy wraps, else `exc`: what to name in
    a log line or a message."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def bad_value(exc: BaseException) -> bool:
    """Whether the database refused a value it was given, not a connection."""
    return any(isinstance(e, BAD_VALUE) for e in _causes(exc))


def sqlite_statement_error(exc: BaseException) -> bool:
    """Whether SQLite could not run the statement itself (no such table or
    column, a syntax error): a bug, or a schema behind the code. SQLite raises
    the same OperationalError for that as for a locked or unreadable file; its
    result code, SQLITE_ERROR, tells them apart (PostgreSQL's own kind for
    these, a ProgrammingError, is not "down" anyway)."""
    # Errors of Python's own module (a parameter it cannot bind) carry no code.
    codes = (
        getattr(e, "sqlite_errorcode", None) for e in _causes(exc) if isinstance(e, sqlite3.Error)
    )
    return any(code is not None and code & 0xFF == sqlite3.SQLITE_ERROR for code in codes)


# asyncpg's words for two statements on one connection at once: a bug in the
# broker, not an outage. As "down" it would be a retryable 503 that hides it; its
# class is InterfaceError, like a closed connection's, so only its words tell.
_CONCURRENT_USE = "another operation is in progress"


def concurrent_use(exc: BaseException) -> bool:
    """Whether asyncpg refused a statement because its connection was busy."""
    return any(
        isinstance(e, asyncpg.exceptions.InterfaceError) and _CONCURRENT_USE in str(e)
        for e in _causes(exc)
    )


def database_down(exc: BaseException) -> bool:
    """Whether `exc` means the database is not there right now."""
    if bad_value(exc) or sqlite_statement_error(exc) or concurrent_use(exc):
        return False
    if isinstance(exc, DATABASE_DOWN):
        return True
    if isinstance(exc, DBAPIError):
        # A connection lost in the middle of a statement reaches us as a plain
        # DBAPIError from SQLAlchemy's asyncpg adapter; the driver's own error
        # is the cause of the adapter's.
        driver = exc.orig.__cause__ if exc.orig is not None else None
        return exc.connection_invalidated or isinstance(driver, DATABASE_DOWN)
    return False


# What PostgreSQL answers a connection it will not let in: no such role, a wrong
# password, a pg_hba rule, no such database. A setting to correct, not an outage
# to wait out, so it is not "down"; the command line says it in one line.
LOGIN_REFUSED: tuple[type[Exception], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidCatalogNameError,
)


def login_refused(exc: BaseException) -> bool:
    """Whether the database refused to let the broker in."""
    return any(isinstance(e, LOGIN_REFUSED) for e in _causes(exc))
