"""SQLAlchemy's aiosqlite adapter, with as few trips to the driver thread as can be.

aiosqlite runs sqlite3 in a thread of its own; every call is a hand-over to that
thread and back, and on a busy two-core machine each hand-over costs about as
much as a simple indexed query (two context switches, and a cold cache for
whatever ran before). So this adapter:

- runs a statement in one trip, not the stock adapter's four (open a cursor,
  execute, fetch, close);
- holds a transaction's `BEGIN` back and sends it in the trip of the
  transaction's first statement;
- skips COMMIT and ROLLBACK where no transaction is open, as after a look-up in
  autocommit mode or when the pool resets a connection that has committed:
  sqlite3 would do nothing there anyway;
- runs a batch of statements (`run_each`) in one trip.

A login thus takes five trips instead of nine. It leans on the same aiosqlite
internals SQLAlchemy's own adapter uses (`Connection._conn`, the request queue
behind `Connection._execute`).
"""

from __future__ import annotations

import collections
import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

T = TypeVar("T")

# The statements SQLAlchemy (and our begin hook) send to open a transaction.
_BEGIN = re.compile(r"\s*BEGIN(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(\s+TRANSACTION)?\s*;?\s*", re.I)


class _Outcome(NamedTuple):
    """What one statement leaves behind."""

    description: Any
    rowcount: int
    lastrowid: int | None
    rows: list[Any]


_NOTHING = _Outcome(None, -1, None, [])


def _statement(conn: sqlite3.Connection, sql: str, params: Any, many: bool) -> _Outcome:
    """Runs in aiosqlite's thread: the whole life of one cursor."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        elif params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else []
        return _Outcome(cursor.description, cursor.rowcount, cursor.lastrowid, rows)
    finally:
        cursor.close()


def _each(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[list[Any]]:
    """Runs in aiosqlite's thread: one statement for each parameter set."""
    return [conn.execute(sql, a).fetchall() for a in args]


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement runs in one hand-over to the thread."""

    __slots__ = ("_outcome",)

    def __init__(self, adapt_connection: OneTripConnection) -> None:
        # No driver cursor is opened here (that would be a trip of its own).
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._outcome = _NOTHING

    @property
    def description(self) -> Any:
        return self._outcome.description

    @property
    def rowcount(self) -> int:
        return self._outcome.rowcount

    @property
    def lastrowid(self) -> int:
        return self._outcome.lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        return  # nothing is open between statements

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        conn: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        if not parameters and _BEGIN.fullmatch(operation):
            conn.hold_begin(operation)
            self._outcome = _NOTHING
            self._rows = collections.deque()
            return None
        return self._trip(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        return self._trip(operation, seq_of_parameters, many=True)

    def _trip(self, sql: str, params: Any, *, many: bool) -> None:
        conn: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        try:
            self._outcome = await_(conn.trip(lambda c: _statement(c, sql, params, many)))
        except Exception as error:
            conn._handle_exception(error)
        self._rows = collections.deque(self._outcome.rows)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_begin", "_in_transaction")
    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass, in fact

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._begin: str | None = None  # held back until the first statement
        # Whether sqlite3 had a transaction open after the last trip. True when
        # unknown (a trip failed), so that a ROLLBACK is never skipped wrongly.
        self._in_transaction = False

    def hold_begin(self, sql: str) -> None:
        self._begin = sql

    async def trip(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in aiosqlite's thread, after a held-back BEGIN if there is one."""
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        begin, self._begin = self._begin, None

        def run(conn: sqlite3.Connection) -> tuple[T, bool]:
            if begin is not None:
                conn.execute(begin)
            return work(conn), conn.in_transaction

        async with self._execute_mutex:
            self._in_transaction = True
            # aiosqlite's own queue: the call runs in its thread, in order.
            outcome: tuple[T, bool] = await driver._execute(run, driver._conn)  # type: ignore[no-untyped-call]
        result, self._in_transaction = outcome
        return result

    async def run_each(self, sql: str, args: Sequence[Any]) -> list[list[Any]]:
        """Rows of `sql` for each parameter set (driver-shaped), in one trip.
        Errors are sqlite3's own."""
        return await self.trip(lambda conn: _each(conn, sql, args))

    def commit(self) -> None:
        self._end("commit")

    def rollback(self) -> None:
        self._end("rollback")

    def _end(self, how: str) -> None:
        if not self._connection._connection:
            return  # closed: nothing to end (as the stock adapter does)
        if self._begin is not None:
            self._begin = None  # a transaction that never ran a statement
            return
        if not self._in_transaction:
            return
        try:
            await_(self.trip(lambda conn: getattr(conn, how)()))
        except Exception as error:
            self._handle_exception(error)


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to hand create_async_engine(module=...) for SQLite."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)
