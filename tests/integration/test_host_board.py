"""Placement ranks hosts by the board a process keeps for a moment
(broker.sessions.host_board), on SQLite and PostgreSQL: its own assignments count
on it at once, and nothing that may not be handed out is read from it."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from broker.clock import FakeClock
from broker.runtime import HOST_BOARD_TTL_S, Runtime
from broker.store.tables import Host
from tests.support.fleet import add_pool, ask, reporting_host, staff


async def host_of(client: httpx.AsyncClient, who: dict[str, str]) -> str:
    response = await ask(client, who)
    assert response.status_code == 201, response.text
    return str(response.json()["session"]["host"])


async def test_a_logon_storm_through_one_broker_spreads_over_the_hosts(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime)
    for name in ("vhost01", "vhost02", "vhost03"):
        await reporting_host(runtime, client, 4, name=name)
    # One request after another, the clock standing still: all but the first
    # rank by the board, which must count each new logon on its host.
    hosts = [await host_of(client, await staff(runtime, f"u{i}")) for i in range(6)]
    assert hosts[:3] == ["vhost01", "vhost02", "vhost03"]
    assert Counter(hosts) == {"vhost01": 2, "vhost02": 2, "vhost03": 2}


@pytest.mark.parametrize(
    "change",
    [
        {"state": "draining"},
        {"state": "maintenance"},
        # Its agent fell silent a day ago (as another broker's monitor sees it).
        {"last_report_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
    ],
    ids=["draining", "maintenance", "silent"],
)
async def test_a_host_that_stopped_taking_sessions_gets_none_while_the_board_holds_it(
    runtime: Runtime, client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    await add_pool(runtime)
    await reporting_host(runtime, client, 3, name="vhost01")
    busy = await reporting_host(runtime, client, 0, name="vhost02")
    busy.cpu = 0.7  # ranked after vhost01 even when vhost01 has a logon
    busy.add(3, pool="Finanzen")
    await busy.report()
    assert await host_of(client, await staff(runtime, "maria")) == "vhost01"

    # Changed behind this process's back: another broker, or the CLI.
    async with runtime.db.write() as s:
        await s.execute(update(Host).where(Host.name == "vhost01").values(**change))

    assert await host_of(client, await staff(runtime, "erna")) == "vhost02"


async def test_the_board_is_read_again_after_its_time(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_pool(runtime)
    first = await reporting_host(runtime, client, 3, name="vhost01")
    await reporting_host(runtime, client, 3, name="vhost02")
    assert await host_of(client, await staff(runtime, "a")) == "vhost01"
    assert await host_of(client, await staff(runtime, "b")) == "vhost02"
    # Equal now, by name vhost01 would be next; its agent reports it busy.
    first.cpu = 0.9
    await first.report()
    clock.advance(HOST_BOARD_TTL_S)
    assert await host_of(client, await staff(runtime, "c")) == "vhost02"
