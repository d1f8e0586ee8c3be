"""SQLite's WAL checkpoints, off the request path.

In WAL mode SQLite copies the log back into the database file (a checkpoint)
by itself once the log has grown by 1,000 pages, inside whichever commit
crosses that line. Under a steady stream of session requests that was about
every fiftieth request, and that request took several milliseconds longer: the
slow percent of every latency figure. The broker's SQLite connections leave the
checkpoint to `Checkpointer` instead, a task of the serving process that runs a
PASSIVE checkpoint (one that waits for no reader and no writer) every second,
in its own connection's thread. The connections keep the automatic checkpoint
at a larger size (`SQLITE_AUTOCHECKPOINT_PAGES`) as a safety net: for processes
without the task, such as the CLI, and for a task that falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from broker.logthrottle import LogThrottle
from broker.store.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpointed:
    """What one checkpoint found (SQLite's own three numbers)."""

    busy: bool  # it could not finish because another connection held the log
    log_frames: int  # frames in the log
    copied_frames: int  # of those, now in the database file


class Checkpointer:
    """Checkpoints an SQLite database's log every `interval_s` seconds."""

    def __init__(self, db: Database, interval_s: float) -> None:
        self.db = db
        self.interval_s = interval_s
        self.last: Checkpointed | None = None
        self._task: asyncio.Task[None] | None = None
        self._quiet = LogThrottle(log, every_s=300)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> Checkpointed:
        async with self.db.engine.connect() as conn:
            row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one()
        busy, frames, copied = tuple(row)
        self.last = Checkpointed(bool(busy), int(frames), int(copied))
        return self.last

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except Exception as exc:  # the next round tries again; SQLite's own net holds
                self._quiet.log(
                    logging.WARNING,
                    "checkpoint_failed",
                    "SQLite checkpoint failed (%s); the next one is in %.0f s",
                    type(exc).__name__,
                    self.interval_s,
                )
