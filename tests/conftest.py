"""Shared fixtures: settings, databases (SQLite and the local PostgreSQL), a runtime
with a fake clock, and an HTTP client talking to the real app."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from broker.app import create_app
from broker.clock import FakeClock
from broker.config import Settings, load_settings
from broker.runtime import Runtime, open_runtime
from broker.store import migrate
from broker.store.db import Database
from broker.store.tables import Base
from tests.support import postgres

# A Monday morning, 5 s into a TOTP step, so "the previous step" is well defined.
START = dt.datetime(2026, 3, 2, 9, 0, 5, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not pick up the VDI_* settings of a developer's own broker."""
    for key in list(os.environ):
        if key.startswith("VDI_"):
            monkeypatch.delenv(key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One database for the test run, migrated once; tests empty it before use."""
    name = asyncio.run(postgres.create_database())

    async def _migrate() -> None:
        db = Database(postgres.url(name))
        try:
            await migrate.upgrade(db)
        finally:
            await db.dispose()

    try:
        asyncio.run(_migrate())
        yield name
    finally:
        asyncio.run(postgres.drop_database(name))


async def _truncate(name: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    conn = await asyncpg.connect(f"{postgres.SERVER}/{name}")
    try:
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'vdi.sqlite3'}"
    name = request.getfixturevalue("pg_database")
    asyncio.run(_truncate(name))
    return postgres.url(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'vdi.sqlite3'}"


def make_settings(tmp_path: Path, db_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": db_url,
        "login_rate_limit": 10_000,
        "gateway_enabled": False,
        "jobs_enabled": False,  # tests run jobs themselves, at the times they choose
        # The in-process client calls from TEST-NET-1: here, that is the
        # monitoring network (the default is tested in test_metrics).
        "metrics_networks": ["192.0.2.0/24"],
    }
    values.update(overrides)
    return load_settings(None, **values)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture
async def runtime(settings: Settings, clock: FakeClock) -> AsyncIterator[Runtime]:
    rt = await open_runtime(settings, clock=clock)
    try:
        yield rt
    finally:
        await rt.close()


@asynccontextmanager
async def app_client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the real app of `rt` (in process, over ASGI), as
    https://testserver, calling from 192.0.2.10."""
    app = create_app(rt.settings, runtime=rt)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            yield c


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(runtime) as c:
        yield c
