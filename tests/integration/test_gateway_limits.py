"""What a client cannot leave behind or pile up: a link lost while a tunnel opens
leaves no tunnel open, and tunnels per connection and per session are capped."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import asyncssh
import psutil
import pytest
from sqlalchemy import func, select

from broker.clock import FakeClock
from broker.store.tables import GatewayTunnel
from tests.support.gateway import (
    Rig,
    echo,
    gateway_rig,
    gateway_settings,
    rig_fixture,
    ssh_client,
    until,
)

rig = pytest.fixture(rig_fixture)


async def _rows(rig: Rig) -> int:
    async with rig.rt.db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(GatewayTunnel)) or 0)


def _desktop_sockets(port: int) -> list[Any]:
    """This process's connections to the desktop port still held open (the
    simulated desktops and the gateway live in the test process)."""
    held = (psutil.CONN_ESTABLISHED, psutil.CONN_CLOSE_WAIT)
    return [
        c
        for c in psutil.Process(os.getpid()).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status in held
    ]


async def test_a_link_lost_while_a_tunnel_opens_leaves_nothing_open(rig: Rig) -> None:
    """The client's link drops right after it asked for a channel (a lost Wi-Fi):
    whenever that happens during the open, the tunnel closes, no row is left, the
    session becomes disconnected (its disconnect timeout runs) and no socket to
    the desktop stays open."""
    answer = await rig.desktop_for("maria")
    c = answer["connect"]
    address, port = c["desktop_address"], c["desktop_port"]
    async with ssh_client(rig.port, c["user"], c["ticket"]) as conn:
        reader, writer = await conn.open_connection(address, port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.close()
    assert await until(lambda: rig.is_state(answer, "disconnected"))

    for delay in (0.0, 0.0, 0.0, 0.001, 0.002, 0.005, 0.01, 0.02):
        ticket = (await rig.fresh(answer))["connect"]["ticket"]
        conn = await ssh_client(rig.port, c["user"], ticket)
        opening = asyncio.ensure_future(conn.open_connection(address, port))
        await asyncio.sleep(delay)
        conn._transport.abort()  # type: ignore[attr-defined]  # a drop: no goodbye
        await asyncio.gather(opening, return_exceptions=True)

    async def all_closed() -> bool:
        return (
            await _rows(rig) == 0
            and len(rig.gateway.tunnels) == 0
            and await rig.is_state(answer, "disconnected")
            and not _desktop_sockets(port)
        )

    await until(all_closed, timeout=15, step=0.2)
    assert rig.rt.telemetry.gateway_tunnels == 0
    got = await rig.client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    if got.status_code == 200:  # the scrape itself, where the rig's address may read it
        assert "vdi_gateway_tunnels 0" in got.text


async def test_tunnels_beyond_the_cap_are_refused_without_a_trace(
    tmp_path: Path, sqlite_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A client asking for many channels at once gets as many as the cap, the rest
    are refused as a resource shortage: no audit row for them, one log line
    without a traceback. Closing one makes room for the next."""
    settings = gateway_settings(
        tmp_path,
        sqlite_url,
        gateway_max_tunnels_per_connection=4,
        gateway_max_tunnels_per_session=6,
    )
    caplog.set_level(logging.INFO, logger="broker.gateway")
    async with gateway_rig(settings, clock) as r:
        answer = await r.desktop_for("maria")
        c = answer["connect"]
        address, port = c["desktop_address"], c["desktop_port"]
        async with ssh_client(r.port, c["user"], c["ticket"]) as conn:
            got = await asyncio.gather(
                *(conn.open_connection(address, port) for _ in range(40)), return_exceptions=True
            )
            opened = [g for g in got if isinstance(g, tuple)]
            refused = [g for g in got if isinstance(g, asyncssh.ChannelOpenError)]
            assert len(opened) == 4 and len(refused) == 36, got
            assert {e.code for e in refused} == {asyncssh.OPEN_RESOURCE_SHORTAGE}
            assert await _rows(r) == 4
            # Refusals at the cap write nothing (no audit row: a flood costs no writes).
            assert len(await r.audit("tunnel_opened")) == 4
            assert await r.audit("tunnel_refused") == []

            # The per-session cap holds across the session's connections.
            ticket = (await r.fresh(answer))["connect"]["ticket"]
            async with ssh_client(r.port, c["user"], ticket) as second:
                more = await asyncio.gather(
                    *(second.open_connection(address, port) for _ in range(5)),
                    return_exceptions=True,
                )
                assert sum(isinstance(g, tuple) for g in more) == 2, more
                for g in more:
                    if isinstance(g, tuple):
                        g[1].close()

            # Room again once one closes.
            opened[0][1].close()
            await until(lambda: _fewer_rows(r, 4))
            reader, writer = await conn.open_connection(address, port)
            writer.write(b"again")
            assert await reader.readexactly(5) == b"again"
            for _, w in opened[1:]:
                w.close()
            writer.close()

        cap_lines = [rec for rec in caplog.records if "as many as it may have" in rec.message]
        assert len(cap_lines) == 1, [rec.message for rec in cap_lines]
        assert all(rec.exc_info is None for rec in caplog.records)
        assert await until(lambda: r.is_state(answer, "disconnected"))
        # The real OpenSSH client still gets its tunnel after all that.
        async with r.forward(await r.fresh(answer)) as f:
            assert await echo(f.local_port, b"ok") == b"ok"


async def _fewer_rows(r: Rig, than: int) -> bool:
    return await _rows(r) < than
