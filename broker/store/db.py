"""Engine and transaction scopes.

`Database.write()` opens a transaction that may write; `Database.read()` one that
only reads. On SQLite the difference matters: a write transaction starts with
`BEGIN IMMEDIATE`, so it takes the single write lock up front and waits for it
(busy timeout) instead of failing half-way when it upgrades from a read. That is
SQLite's half of "no double assignment"; PostgreSQL's half is row locking.

Both give an ORM `AsyncSession`. Hot paths (every login, every agent report)
use `read_conn()` and `write_conn()` instead, which give a Core
`AsyncConnection`: the ORM session machinery costs about as much CPU as the
statements themselves. `read_conn()` runs each statement on its own (no
BEGIN on SQLite), so use it for single-statement look-ups only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000

# What helpers that only run statements accept: an ORM session or a Core connection.
Executor = AsyncSession | AsyncConnection


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url: URL = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            _tune_sqlite(self.engine)
            self.write_engine = self.engine.execution_options(vdi_write=True)
            self._lookup_engine = self.engine.execution_options(vdi_autocommit=True)
        else:
            self.write_engine = self.engine
            self._lookup_engine = self.engine
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)

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

    async def dispose(self) -> None:
        await self.engine.dispose()


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
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("vdi_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif not options.get("vdi_autocommit"):
            conn.exec_driver_sql("BEGIN")
