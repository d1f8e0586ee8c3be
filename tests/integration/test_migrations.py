"""Migrations reach the models exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from broker.store import migrate
from broker.store.db import Database
from broker.store.tables import Base, ScheduleChange
from tests.support import postgres


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


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_schedule_changes_start_from_the_newest_window_of_each_subject(
    backend: str, tmp_path: Path
) -> None:
    """0010 fills schedule_changes from the windows already there: until then the
    newest window of a user or department told when their rules came into force."""
    name = await postgres.create_database() if backend == "postgres" else None
    db = Database(postgres.url(name) if name else f"sqlite+aiosqlite:///{tmp_path / 'v.sqlite3'}")
    try:
        await migrate.upgrade(db, "0009")
        older, newer = (
            dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
        )
        rows = [
            ("user", "anna", older), ("user", "anna", newer), ("department", "Bauamt", older),
        ]  # fmt: skip
        async with db.engine.begin() as conn:
            for scope, subject, created in rows:
                await conn.execute(
                    text(
                        'INSERT INTO schedules (scope, subject, days, start, "end", created_at) '
                        "VALUES (:scope, :subject, 'mon', '07:00', '18:00', :created)"
                    ),
                    {"scope": scope, "subject": subject, "created": created},
                )
        await migrate.upgrade(db)
        async with db.read() as s:
            changes = (
                await s.execute(select(ScheduleChange).order_by(ScheduleChange.scope))
            ).scalars()
            assert [(c.scope, c.subject, c.changed_at) for c in changes] == [
                ("department", "Bauamt", older),
                ("user", "anna", newer),
            ]
    finally:
        await db.dispose()
        if name:
            await postgres.drop_database(name)
