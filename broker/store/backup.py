"""An online backup of the embedded SQLite database.

SQLite's backup API copies a consistent snapshot while the broker keeps
running (readers and writers are not stopped). PostgreSQL has pg_dump.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from broker.errors import InvalidInput
from broker.store.db import Database


def _copy(source: str, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


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
    return target
