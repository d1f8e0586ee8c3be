"""Migrations reach the models exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from broker.store import migrate
from broker.store.db import Database
from broker.store.tables import Base


# SQLite's reflection cannot read expression indexes (the audit log's
# lower(username)), so there they are left out of the comparison;
# test_audit.test_the_user_filter_reads_its_index finds that one in use.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
async def test_upgrade_reaches_head_and_matches_the_models(db_url: str) -> None:
    db = Database(db_url)
    try:
        await migrate.upgrade(db)
        await migrate.upgrade(db)  # a second run is a no-op
        assert await migrate.current_revision(db) == migrate.head_revision()

        def _diff(conn: Connection) -> list[object]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))

        def _indexes(conn: Connection) -> set[str]:
            return {i["name"] for i in inspect(conn).get_indexes("sessions") if i["name"]}

        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            assert {"uq_sessions_open_desktop", "uq_sessions_open_user_pool"} <= (
                await conn.run_sync(_indexes)
            )
    finally:
        await db.dispose()
