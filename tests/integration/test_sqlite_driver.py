"""The SQLite driver adapter (broker.store.sqlite_driver): each statement is one
trip to aiosqlite's thread, and everything SQLAlchemy reads from a cursor is
still right: rows, rowcount (conditional updates such as the TOTP replay rule
depend on it), lastrowid (ORM inserts), executemany, errors."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import aiosqlite
import pytest
from sqlalchemy import Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from broker.store.db import Database


class _Base(DeclarativeBase):
    pass


class _Thing(_Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


_meta = _Base.metadata
_things = cast(Table, _Thing.__table__)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with database.write_conn() as conn:
        await conn.run_sync(_meta.create_all)
    yield database
    await database.dispose()


async def test_rows_rowcount_and_executemany(db: Database) -> None:
    async with db.write_conn() as conn:
        await conn.execute(insert(_things), [{"name": f"t{i}", "n": i} for i in range(5)])
        moved = await conn.execute(update(_things).where(_things.c.n >= 3).values(n=0))
        assert moved.rowcount == 2
        missed = await conn.execute(update(_things).where(_things.c.name == "none").values(n=1))
        assert missed.rowcount == 0
    async with db.read_conn() as conn:
        rows = (await conn.execute(select(_things.c.name, _things.c.n).order_by("name"))).all()
    assert [tuple(r) for r in rows] == [("t0", 0), ("t1", 1), ("t2", 2), ("t3", 0), ("t4", 0)]


async def test_orm_insert_learns_the_new_id(db: Database) -> None:
    async with db.write() as session:
        first, second = _Thing(name="a"), _Thing(name="b")
        session.add(first)
        await session.flush()
        session.add(second)
        await session.flush()
        assert (first.id, second.id) == (1, 2)


async def test_errors_arrive_as_sqlalchemy_errors_and_roll_back(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.write_conn() as conn:
            await conn.execute(insert(_things), {"name": "dup"})
            await conn.execute(insert(_things), {"name": "dup"})
    with pytest.raises(OperationalError):
        async with db.read_conn() as conn:
            await conn.execute(select(func.count()).select_from(Table("nope", MetaData())))
    async with db.read_conn() as conn:
        assert await conn.scalar(select(func.count()).select_from(_things)) == 0


class _Trips:
    """Counts hand-overs to aiosqlite's thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = aiosqlite.Connection._execute

        async def counting(conn: aiosqlite.Connection, fn: object, *args: object) -> object:
            self.count += 1
            return await real(conn, fn, *args)  # type: ignore[no-untyped-call]

        monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)


@pytest.fixture
async def trips(db: Database, monkeypatch: pytest.MonkeyPatch) -> _Trips:
    """Counting from here on; the pool's connection is open already, so that
    counts do not include connecting."""
    async with db.read_conn() as conn:
        await conn.scalar(select(func.count()).select_from(_things))
    return _Trips(monkeypatch)


async def test_a_look_up_is_one_trip_and_returning_it_none(db: Database, trips: _Trips) -> None:
    async with db.read_conn() as conn:
        await conn.execute(select(_things).where(_things.c.n > 0))
        assert trips.count == 1
    assert trips.count == 1  # no ROLLBACK when the pool takes it back: nothing is open


async def test_begin_rides_with_the_first_statement(db: Database, trips: _Trips) -> None:
    async with db.write_conn() as conn:
        assert trips.count == 0
        await conn.execute(insert(_things), {"name": "a"})
        await conn.execute(update(_things).values(n=1))
        assert trips.count == 2
    assert trips.count == 3  # COMMIT, and no ROLLBACK from the pool after it

    async with db.write_conn():
        pass  # a transaction without a statement has nothing to send
    assert trips.count == 3


async def test_the_held_back_begin_still_takes_the_write_lock(db: Database, tmp_path: Path) -> None:
    async with db.write_conn() as conn:
        await conn.execute(select(func.count()).select_from(_things))  # a read, first
        other = sqlite3.connect(tmp_path / "driver.db", timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
        await conn.execute(insert(_things), {"name": "mine"})
    async with db.read_conn() as conn:
        assert await conn.scalar(select(func.count()).select_from(_things)) == 1


async def test_a_failed_statement_is_still_rolled_back(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.write_conn() as conn:
            await conn.execute(insert(_things), {"name": "kept?"})
            await conn.execute(insert(_things), {"name": "kept?"})  # unique: fails
    # The first insert went with the failed transaction, and the connection,
    # back in the pool, is not stuck in it.
    async with db.write_conn() as conn:
        await conn.execute(insert(_things), {"name": "next"})
    async with db.read_conn() as conn:
        names = (await conn.execute(select(_things.c.name))).scalars().all()
    assert names == ["next"]
