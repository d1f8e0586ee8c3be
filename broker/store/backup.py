"""An online backup of the embedded SQLite database.

SQLite's backup API copies a consistent snapshot while the broker keeps
running (readers and writers are not stopped). PostgreSQL has pg_dump.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from broker.errors import InvalidInput
from broker.store.db import Database


def _copy(source: str, target: Path) -> None:
    # Claims the name (never overwrites) with the mode a copy of secrets needs.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
    except BaseException:
        # Half a backup looks like a whole one until it is needed.
        target.unlink(missing_ok=True)
        raise


async def backup_sqlite(db: Database, target: Path) -> Path:
    if not db.is_sqlite or not db.url.database:
        raise InvalidInput(
            "Online backup is for SQLite; back up PostgreSQL with pg_dump "
            "(see docs/operations.md).",
            code="not_sqlite",
        )
    try:
        await asyncio.to_thread(_copy, db.url.database, target)
    except FileExistsError as exc:
        raise InvalidInput(f"{target} exists already; choose a new file.", code="exists") from exc
    except OSError as exc:
        # No such directory, no permission, a read-only file system: the
        # operator's to fix, so their words, not a traceback.
        raise InvalidInput(
            f"Cannot write the backup to {target}: {exc.strerror or exc}.", code="backup_target"
        ) from exc
    except sqlite3.Error as exc:
        # A full disk or a file-size limit, met half-way through the copy.
        raise InvalidInput(
            f"The backup to {target} failed and was removed: {exc}.", code="backup_failed"
        ) from exc
    return target
