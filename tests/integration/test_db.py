"""Database.scalar_each, the driver-level group write under agent reports, on
SQLite and PostgreSQL: results line up with their parameter sets, a batch is
all or nothing, and the database stays usable after a failed batch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from broker.clock import FakeClock
from broker.hosts import service as hosts
from broker.runtime import Runtime
from broker.store.db import Database
from broker.store.db_errors import database_down
from broker.store.tables import Host, table
from tests.support import postgres

_hosts = table(Host)

# Rename a host only if its current version matches; return its id.
RENAME = (
    update(_hosts)
    .where(_hosts.c.id == bindparam("host_id"), _hosts.c.agent_version == bindparam("expected"))
    .values(agent_version=bindparam("version"), last_report_at=bindparam("at"))
    .returning(_hosts.c.id)
)
# Give a host another token hash (unique: a clash fails the statement).
RETOKEN = (
    update(_hosts)
    .where(_hosts.c.id == bindparam("host_id"))
    .values(token_hash=bindparam("token_hash"))
    .returning(_hosts.c.id)
)


async def _host_ids(rt: Runtime, *names: str) -> list[int]:
    for name in names:
        await hosts.add(rt, name, "test")
    async with rt.db.read_conn() as conn:
        rows = (await conn.execute(select(_hosts.c.name, _hosts.c.id))).all()
    by_name = {n: i for n, i in rows}
    return [by_name[n] for n in names]


async def _versions(rt: Runtime) -> dict[int, str | None]:
    async with rt.db.read_conn() as conn:
        rows = (await conn.execute(select(_hosts.c.id, _hosts.c.agent_version))).all()
    return {i: v for i, v in rows}


async def test_each_run_gets_its_own_result_in_order(runtime: Runtime, clock: FakeClock) -> None:
    a, b = await _host_ids(runtime, "vhost01", "vhost02")
    now = clock.now()
    results = await runtime.db.scalar_each(
        RENAME,
        [
            {"host_id": a, "expected": None, "version": "1", "at": now},  # NULL never equals
            {"host_id": b, "expected": "x", "version": "1", "at": now},
        ],
    )
    assert results == [None, None]
    async with runtime.db.write_conn() as conn:
        await conn.execute(update(_hosts).values(agent_version="0"))

    results = await runtime.db.scalar_each(
        RENAME,
        [
            {"host_id": a, "expected": "0", "version": "1", "at": now},
            {"host_id": b, "expected": "9", "version": "1", "at": now},  # does not hold
            {"host_id": a, "expected": "1", "version": "2", "at": now},  # sees the first run
            {"host_id": b, "expected": "0", "version": "5", "at": now},
        ],
    )
    assert results == [a, None, a, b]
    assert await _versions(runtime) == {a: "2", b: "5"}
    async with runtime.db.read_conn() as conn:
        stored = await conn.scalar(select(_hosts.c.last_report_at).where(_hosts.c.id == a))
    assert stored == now


async def test_a_failing_run_stores_nothing_of_its_batch(runtime: Runtime) -> None:
    a, b, c = await _host_ids(runtime, "vhost01", "vhost02", "vhost03")
    with pytest.raises(IntegrityError):
        await runtime.db.scalar_each(
            RETOKEN,
            [
                {"host_id": a, "token_hash": "f" * 64},
                {"host_id": b, "token_hash": "f" * 64},  # the same hash again: unique
            ],
        )
    async with runtime.db.read_conn() as conn:
        hashes = (await conn.execute(select(_hosts.c.token_hash))).scalars().all()
    assert "f" * 64 not in hashes

    # The connection that failed is not handed out broken: the next batch works.
    results = await runtime.db.scalar_each(RETOKEN, [{"host_id": c, "token_hash": "e" * 64}])
    assert results == [c]


# A host's CPU count, an INTEGER column (32-bit on PostgreSQL).
SET_CPUS = (
    update(_hosts)
    .where(_hosts.c.id == bindparam("host_id"))
    .values(cpus=bindparam("cpus"))
    .returning(_hosts.c.id)
)


async def test_a_value_the_database_refuses_is_not_the_database_away(
    runtime: Runtime, clock: FakeClock
) -> None:
    """Answered 500 (or kept to its own report by the report batcher), never 503
    "database not reachable": retrying would not help, and a batch of other
    hosts' reports must not fail with it."""
    (a,) = await _host_ids(runtime, "vhost01")
    refused: list[tuple[Any, dict[str, Any]]] = [
        (RENAME, {"version": ["not", "text"]}),  # no driver sends a list as text
    ]
    if not runtime.db.is_sqlite:  # SQLite stores these
        refused += [(RENAME, {"version": "1.0\x00x"}), (SET_CPUS, {"cpus": 2**31})]
    for statement, values in refused:
        params = {"host_id": a, "expected": None, "at": clock.now(), **values}
        with pytest.raises(DBAPIError) as failed:
            await runtime.db.scalar_each(statement, [params])
        assert not database_down(failed.value), failed.value
    # The database is fine, and says so.
    assert await runtime.db.scalar_each(SET_CPUS, [{"host_id": a, "cpus": 8}]) == [a]


async def _state_of(db: Database, pid: int) -> str | None:
    """What pg_stat_activity says a backend is doing, asked on another connection."""
    async with db.read_conn() as conn:
        state = await conn.scalar(
            text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
    return str(state) if state is not None else None


@pytest.mark.postgres
async def test_a_look_up_on_postgresql_leaves_no_transaction_open(pg_database: str) -> None:
    # Autocommit: no BEGIN before the statement and no ROLLBACK after it, two
    # round trips saved on every login and agent-token look-up.
    db = Database(postgres.url(pg_database))
    backend = text("SELECT pg_backend_pid()")
    try:
        async with db.read_conn() as conn:
            assert await _state_of(db, await conn.scalar(backend)) == "idle"
        async with db.write_conn() as conn:
            # The check can tell the two apart.
            assert await _state_of(db, await conn.scalar(backend)) == "idle in transaction"
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_two_statements_at_once_on_one_connection_are_a_bug_not_an_outage(
    pg_database: str,
) -> None:
    """asyncpg refuses a second statement on a busy connection with the class it
    also uses for a closed one; a 503 "try again" would hide such a bug."""
    db = Database(postgres.url(pg_database))
    try:
        async with db.read_conn() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            slow = asyncio.ensure_future(raw.fetch("SELECT pg_sleep(0.2)"))
            await asyncio.sleep(0.05)
            with pytest.raises(DBAPIError) as busy:
                await conn.execute(text("SELECT 1"))
            await slow
        assert "another operation is in progress" in str(busy.value)
        assert not database_down(busy.value)
        # A connection that really is gone still reads as down.
        async with db.read_conn() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            await raw.close()
            with pytest.raises(DBAPIError) as closed:
                await conn.execute(text("SELECT 1"))
        assert database_down(closed.value), closed.value
    finally:
        await db.dispose()


async def test_errors_name_the_statement_not_its_parameters(runtime: Runtime) -> None:
    """Database errors reach the journal; parameters are hashes, ciphertexts and
    typed names. (PostgreSQL's own detail line still quotes a duplicate key.)"""
    a, b = await _host_ids(runtime, "vhost01", "vhost02")
    async with runtime.db.read_conn() as conn:
        taken = await conn.scalar(select(_hosts.c.token_hash).where(_hosts.c.id == b))
    with pytest.raises(IntegrityError) as failed:
        async with runtime.db.write_conn() as conn:
            await conn.execute(
                _hosts.update()
                .where(_hosts.c.id == a)
                .values(token_hash=taken, agent_version="geheim-42")
            )
    assert "[SQL:" in str(failed.value)
    assert "geheim-42" not in str(failed.value)


async def test_a_statement_the_database_cannot_run_is_not_the_database_away(
    runtime: Runtime,
) -> None:
    """A missing table or column, or a syntax error, is a bug (or a schema behind
    the code): a traceback finds it, not a 503 or a gateway's "cannot check
    tickets" with a log line that names only the error's class. PostgreSQL says
    these with a ProgrammingError; SQLite with an OperationalError, the class it
    also uses for a locked or unreadable file."""
    for sql in ("SELECT * FROM no_such_table", "SELECT no_such_column FROM hosts", "SELEC 1"):
        with pytest.raises(DBAPIError) as failed:
            async with runtime.db.read_conn() as conn:
                await conn.execute(text(sql))
        assert not database_down(failed.value), failed.value
    # A database that is there says so.
    async with runtime.db.read_conn() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1
