"""Engine and transaction scopes.

`Database.write()` opens a transaction that may write; `Database.read()` one that
only reads. On SQLite the difference matters: a write transaction starts with
`BEGIN IMMEDIATE`, so it takes the single write lock up front and waits for it
(busy timeout) instead of failing half-way when it upgrades from a read. That is
SQLite's half of "no double assignment"; PostgreSQL's half is row locking.

Both give an ORM `AsyncSession`. Hot paths (every login, every agent report)
use `read_conn()` and `write_conn()` instead, which give a Core
`AsyncConnection`: the ORM session machinery costs about as much CPU as the
statements themselves. `read_conn()` runs each statement on its own, in
autocommit mode: no BEGIN and no ROLLBACK around it, which on PostgreSQL saves
two of a look-up's three round trips. Use it for single-statement look-ups
only.

`scalar_each()` runs one statement for many parameter sets in one transaction
(group commit), straight on the driver: on PostgreSQL pipelined, so BEGIN, a
round trip per statement and COMMIT become one round trip for the whole batch;
on SQLite in one hop to aiosqlite's thread for the whole batch, with none of
SQLAlchemy's per-statement work (compiling parameters, building results).
Either way a report's write costs a fraction of what it does through
SQLAlchemy. (Statements through SQLAlchemy on SQLite take one hop each too, and
BEGIN rides along with the first: see broker.store.sqlite_driver.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import Select, Table, UpdateBase, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Compiled, Connection, Dialect, make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from broker.dirs import ensure_dir
from broker.store.db_errors import ArgumentError
from broker.store.sqlite_driver import OneTripConnection, OneTripDbapi

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Log pages after which a commit checkpoints by itself: about 40 MB at SQLite's
# 4 KiB page, SQLite's default being 1,000. The serving process checkpoints in
# the background every second (broker.store.checkpoint), far below this.
SQLITE_AUTOCHECKPOINT_PAGES = 10_000

# What helpers that only run statements accept: an ORM session or a Core connection.
Executor = AsyncSession | AsyncConnection


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite database URL; None for another database or memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url: URL = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # Statement parameters (hashes, ciphertexts, typed user names) stay out of
        # error messages and tracebacks, which end up in the journal.
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.is_sqlite:
            path = sqlite_file(url)
            if path is not None:
                ensure_dir(path.parent, "the database's directory")
            kwargs["module"] = OneTripDbapi()
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            _tune_sqlite(self.engine)
            self.write_engine = self.engine.execution_options(vdi_write=True)
            self._lookup_engine = self.engine.execution_options(vdi_autocommit=True)
        else:
            self.write_engine = self.engine
            self._lookup_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._prepared: dict[UpdateBase, _Prepared] = {}
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)

    def upsert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """An INSERT into `table` in this database's dialect, which can take an
        ON CONFLICT clause (both dialects spell it `on_conflict_do_update`)."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work (it is rolled back at the end)."""
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that commits on success and rolls back on any error."""
        async with self._write() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read_conn(self) -> AsyncIterator[AsyncConnection]:
        """A connection for single-statement look-ups."""
        async with self._lookup_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write_conn(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a write transaction (commit on success)."""
        async with self.write_engine.begin() as conn:
            yield conn

    async def scalar_each(
        self, statement: UpdateBase, params: Sequence[Mapping[str, Any]]
    ) -> list[Any]:
        """For each parameter set, what `statement` (a DML statement returning one
        column) returns, or None where it returns no row; all in one transaction,
        so a failure stores nothing of the batch."""
        plan = self._prepared.get(statement)
        if plan is None:
            plan = self._prepared[statement] = _Prepared.of(statement, self.engine.dialect)
        args = [plan.args(p) for p in params]
        if self.is_sqlite:
            async with self.write_conn() as conn:
                adapted = (await conn.get_raw_connection()).dbapi_connection
                assert isinstance(adapted, OneTripConnection)
                try:
                    # One trip to aiosqlite's thread for the whole batch, with
                    # the parameters already in the driver's shape.
                    rows = await adapted.run_each(plan.sql, args)
                except sqlite3.Error as exc:
                    raise _wrapped(exc, plan.sql) from exc
            return [r[0][0] if r else None for r in rows]
        async with self.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            try:
                # asyncpg's fetchmany sends every run before one Sync: a single
                # round trip, and atomic like executemany.
                found = await raw.fetchmany(plan.sql, args)  # type: ignore[union-attr]
            except BaseException as exc:
                # SQLAlchemy did not see this call fail, so it would pool the
                # connection again whatever state it is in.
                await conn.invalidate()
                if isinstance(exc, asyncpg.PostgresError | ArgumentError):
                    raise _wrapped(exc, plan.sql) from exc
                raise
        return [row[0] for row in found]

    async def dispose(self) -> None:
        await self.engine.dispose()


@dataclass(frozen=True)
class _Prepared:
    """A DML statement compiled once for the driver, with positional arguments.

    On PostgreSQL it is wrapped so that every run yields exactly one row (its
    RETURNING value or NULL): pipelined runs then line up with their parameter
    sets.
    """

    sql: str
    compiled: Compiled
    order: Sequence[str]
    processors: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def of(cls, statement: UpdateBase, dialect: Dialect) -> _Prepared:
        runnable: UpdateBase | Select[Any] = statement
        if dialect.name == "postgresql":
            run = statement.cte("run")
            runnable = select(select(run).scalar_subquery())
        compiled = runnable.compile(dialect=dialect)
        processors = {}
        for key, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[key] = processor
        assert compiled.positiontup is not None, "the drivers take positional parameters"
        return cls(compiled.string, compiled, compiled.positiontup, processors)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = self.compiled.construct_params(params)
        assert values is not None
        out = []
        for key in self.order:
            value = values[key]
            processor = self.processors.get(key)
            out.append(processor(value) if processor is not None else value)
        return out


def _wrapped(exc: sqlite3.Error | asyncpg.PostgresError | ArgumentError, sql: str) -> DBAPIError:
    """A driver's error as SQLAlchemy's kind, so callers and the HTTP error
    handlers need not know which path a statement took: a constraint is an
    IntegrityError, a value the database cannot take (NUL in text, a number out
    of the column's range) a DataError, a value SQLite's driver cannot bind a
    ProgrammingError, anything else the server refused (locked file, shutdown,
    deadlock) an OperationalError, which is answered 503, try again."""
    if isinstance(exc, sqlite3.IntegrityError | asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(sql, None, exc)
    if isinstance(exc, sqlite3.DataError | asyncpg.exceptions.DataError | ArgumentError):
        return DataError(sql, None, exc)
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return ProgrammingError(sql, None, exc)
    return OperationalError(sql, None, exc)


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (below) instead of the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("vdi_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif not options.get("vdi_autocommit"):
            conn.exec_driver_sql("BEGIN")
