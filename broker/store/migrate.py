"""Run the Alembic migrations from inside the broker (serve, demo, `db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from broker.store.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same in every broker process.
MIGRATION_LOCK_ID = 0x76_64_69_01


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe when several replicas start at once."""
    cfg = alembic_config()

    def _run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Replicas starting together queue here instead of racing on DDL.
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_ID})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with db.write_engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision(db: Database) -> str | None:
    def _get(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(_get)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
