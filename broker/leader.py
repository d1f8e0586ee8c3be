"""Which broker process runs the background jobs.

Several replicas may serve one database; the jobs (host health, session
lifecycle, spare desktops, audit retention) must run exactly once. The leader is
whoever holds a lock that dies with its holder:

- PostgreSQL: a session-level advisory lock on a connection of its own. When the
  leader dies (even kill -9) the server closes that connection and frees the
  lock; another replica takes it on its next round, so the jobs move within one
  or two job intervals. If the database restarts, the lock is lost with the
  connection and whoever reconnects first leads.
- SQLite (one host): an exclusive flock on a file in the data directory, which
  the kernel releases when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.store.db import Database

log = logging.getLogger(__name__)

# Any constant works; every broker process must use the same one.
JOBS_LOCK_ID = 0x76_64_69_02


class PostgresLeader:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: AsyncConnection | None = None
        self._leading = False

    async def is_leader(self) -> bool:
        try:
            if self._conn is None:
                self._conn = await self._db.engine.connect()
                # Autocommit: the lock belongs to the session, not to a transaction.
                await self._conn.execution_options(isolation_level="AUTOCOMMIT")
            if self._leading:
                await self._conn.execute(text("SELECT 1"))  # still connected, still ours
            else:
                got = await self._conn.scalar(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": JOBS_LOCK_ID}
                )
                if got:
                    log.info("this broker now runs the background jobs")
                self._leading = bool(got)
        except Exception as exc:  # the database is away: nobody can lead through us
            if self._leading:
                log.warning(
                    "lost the jobs lock with the database connection: %s", type(exc).__name__
                )
            await self._drop()
        return self._leading

    async def _drop(self) -> None:
        self._leading = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.invalidate()
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    async def release(self) -> None:
        if self._conn is not None and self._leading:
            with contextlib.suppress(Exception):
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": JOBS_LOCK_ID})
        await self._drop()


class FileLeader:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    async def is_leader(self) -> bool:
        if self._fd is not None:
            return True
        # A local lock file: opening it does not block the event loop for long.
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        log.info("this broker now runs the background jobs")
        return True

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def leader_for(db: Database, data_dir: Path) -> PostgresLeader | FileLeader:
    if db.is_sqlite:
        return FileLeader(data_dir / "jobs.lock")
    return PostgresLeader(db)
