"""Sessions and their tunnels: an ended or revoked session loses its tunnels within
seconds; idle tunnels close; traffic counts as activity; tunnel counts hold across
replicas on one database, and a dead replica's tunnels are cleaned up."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from broker.app import create_app
from broker.clock import FakeClock
from broker.domain import Role
from broker.gateway.service import purge_stale_tunnels
from broker.ports import free_port
from broker.runtime import open_runtime
from broker.sessions.lifecycle import run_lifecycle
from broker.store.tables import Desktop, GatewayTunnel, Host, Session
from tests.support.fleet import staff
from tests.support.gateway import (
    Rig,
    TcpProxy,
    echo,
    gateway_rig,
    gateway_settings,
    rig_fixture,
    ssh_client,
    until,
)

rig = pytest.fixture(rig_fixture)


async def test_an_admin_revoke_closes_the_tunnel_within_five_seconds(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    admin = await staff(rig.rt, "admin", department="IT", role=Role.ADMIN)
    async with rig.forward(answer) as f:
        reader, writer = await asyncio.open_connection("127.0.0.1", f.local_port)
        writer.write(b"working")
        assert await reader.readexactly(7) == b"working"
        sid = answer["session"]["id"]
        started = time.monotonic()
        revoked = await rig.client.delete(f"/api/v1/sessions/{sid}", headers=admin)
        assert revoked.status_code == 200
        assert revoked.json()["session"]["end_reason"] == "admin_end"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the desktop is gone
        assert time.monotonic() - started < 5
        # The gateway hung up the whole SSH connection: ssh -N ends.
        await asyncio.wait_for(f.proc.wait(), 5)
        writer.close()
    closed = await until(lambda: rig.audit("tunnel_closed"))
    assert closed[0].result == "session_ended"
    assert await rig.state(answer) == "ended"  # not overwritten by "disconnected"


async def test_a_dropped_client_is_audited_as_such(rig: Rig) -> None:
    """A client whose network drops (Wi-Fi change, sleep) leaves its tunnel as
    client_disconnected, as docs/gateway.md says, not as an ordinary close: the
    channels learnt of the loss before the connection did, and said "closed"."""
    answer = await rig.desktop_for("maria")
    proxy = await TcpProxy(rig.port).start()
    try:
        c = answer["connect"]
        conn = await ssh_client(proxy.port, c["user"], c["ticket"])
        reader, writer = await conn.open_connection(c["desktop_address"], c["desktop_port"])
        writer.write(b"working")
        assert await reader.readexactly(7) == b"working"
        proxy.drop()
        closed = await until(lambda: rig.audit("tunnel_closed"))
        assert closed[0].result == "client_disconnected"
        conn.close()
    finally:
        await proxy.close()
    # Closed by the client, the tunnel is just that.
    answer = await rig.fresh(answer)
    c = answer["connect"]
    async with ssh_client(rig.port, c["user"], c["ticket"]) as conn:
        reader, writer = await conn.open_connection(c["desktop_address"], c["desktop_port"])
        writer.write(b"done")
        assert await reader.readexactly(4) == b"done"
        writer.close()

        async def both() -> list[str]:
            return [e.result for e in await rig.audit("tunnel_closed")][1:]

        assert await until(both) == ["closed"]


async def test_idle_tunnels_close(tmp_path: Path, sqlite_url: str, clock: FakeClock) -> None:
    settings = gateway_settings(tmp_path, sqlite_url, gateway_idle_timeout_s=1.5)
    async with gateway_rig(settings, clock) as r:
        answer = await r.desktop_for("maria")
        async with r.forward(answer) as f:
            reader, writer = await asyncio.open_connection("127.0.0.1", f.local_port)
            # Traffic keeps it open past the timeout ...
            for _ in range(4):
                writer.write(b"typing")
                assert await reader.readexactly(6) == b"typing"
                await asyncio.sleep(0.6)
            # ... silence closes it.
            assert await asyncio.wait_for(reader.read(), 6) == b""
            writer.close()
        closed = await until(lambda: r.audit("tunnel_closed"))
        assert closed[0].result == "idle_timeout"
        assert await until(lambda: r.is_state(answer, "disconnected"))


async def test_traffic_refreshes_last_activity(
    tmp_path: Path, sqlite_url: str, clock: FakeClock
) -> None:
    settings = gateway_settings(tmp_path, sqlite_url, gateway_activity_interval_s=0.5)
    async with gateway_rig(settings, clock) as r:
        answer = await r.desktop_for("maria")
        async with r.forward(answer) as f:
            # One connection held open throughout: closing it would end the
            # tunnel, whose close also writes the session's last activity.
            reader, writer = await asyncio.open_connection("127.0.0.1", f.local_port)
            try:

                async def exchange(payload: bytes) -> bytes:
                    writer.write(payload)
                    await writer.drain()
                    return await asyncio.wait_for(reader.readexactly(len(payload)), 30)

                assert await exchange(b"hello") == b"hello"  # the tunnel is open and recorded
                clock.advance(600)
                later = clock.now()
                assert await exchange(b"still here") == b"still here"

                async def touched() -> bool:
                    async with r.rt.db.read() as s:
                        seen = await s.scalar(
                            select(Session.last_activity_at).where(
                                Session.id == answer["session"]["id"]
                            )
                        )
                    return seen == later

                await until(touched, timeout=5)
                async with r.rt.db.read() as s:
                    rows = (await s.scalars(select(GatewayTunnel))).all()
                assert len(rows) == 1 and rows[0].seen_at == later  # marked alive too
            finally:
                writer.close()


async def test_a_previous_agent_report_does_not_undo_a_disconnect(rig: Rig) -> None:
    """The host's last report saw the tunnel's console connection; the tunnel closed
    after it. The lifecycle job must not make the session active again from that
    old report, only from a newer one."""
    answer = await rig.desktop_for("maria")
    desktop = answer["session"]["desktop"]
    async with rig.rt.db.write() as s:
        await s.execute(update(Desktop).where(Desktop.name == desktop).values(connections=1))
        await s.execute(update(Host).values(last_report_at=rig.rt.clock.now()))
    async with rig.forward(answer) as f:
        assert await echo(f.local_port, b"hi") == b"hi"
    assert await until(lambda: rig.is_state(answer, "disconnected"))
    await run_lifecycle(rig.rt)
    assert await rig.state(answer) == "disconnected"
    rig.rt.clock.advance(10)  # type: ignore[attr-defined]
    async with rig.rt.db.write() as s:
        await s.execute(update(Host).values(last_report_at=rig.rt.clock.now()))
    await run_lifecycle(rig.rt)
    assert await rig.state(answer) == "active"


async def test_two_replicas_count_tunnels_together(
    tmp_path: Path, db_url: str, clock: FakeClock
) -> None:
    """Two brokers on one database, each with its gateway; one tunnel of the same
    session through each. Closing one leaves the session active; closing the
    other makes it disconnected."""
    async with gateway_rig(gateway_settings(tmp_path, db_url), clock) as r:
        answer = await r.desktop_for("maria")
        other_settings = r.rt.settings.model_copy(update={"gateway_port": free_port()})
        other_rt = await open_runtime(other_settings, clock=clock, migrate_schema=False)
        other_app = create_app(other_settings, runtime=other_rt)
        try:
            async with other_app.router.lifespan_context(other_app):
                other_gateway = other_app.state.gateway
                assert other_gateway.replica != r.gateway.replica
                c = answer["connect"]
                first = await ssh_client(r.port, "maria", c["ticket"])
                fresh = await r.fresh(answer)
                second = await ssh_client(other_gateway.port, "maria", fresh["connect"]["ticket"])
                streams = []
                for conn in (first, second):
                    reader, writer = await conn.open_connection(
                        c["desktop_address"], c["desktop_port"]
                    )
                    writer.write(b"x")
                    assert await reader.readexactly(1) == b"x"
                    streams.append(writer)
                async with r.rt.db.read() as s:
                    rows = (await s.scalars(select(GatewayTunnel.replica))).all()
                assert sorted(rows) == sorted([r.gateway.replica, other_gateway.replica])
                first.close()
                await until(lambda: _tunnel_rows(r, 1))
                assert await r.state(answer) == "active"
                second.close()
                await until(lambda: _tunnel_rows(r, 0))
                assert await r.state(answer) == "disconnected"
        finally:
            await other_rt.close()


async def _tunnel_rows(rig: Rig, n: int) -> bool:
    async with rig.rt.db.read() as s:
        return len((await s.scalars(select(GatewayTunnel.id))).all()) == n


async def test_tunnels_of_a_dead_replica_are_cleaned_up(
    tmp_path: Path, db_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica died with a tunnel open: its row is not marked alive any more. After
    four activity intervals the lifecycle job deletes it and the session becomes
    disconnected; a live replica's row stays."""
    async with gateway_rig(gateway_settings(tmp_path, db_url), clock) as r:
        dead = await r.desktop_for("maria")
        alive = await r.desktop_for("jonas")
        now = clock.now()
        interval = r.rt.settings.gateway_activity_interval_s
        async with r.rt.db.write() as s:
            for answer, replica, seen in (
                (dead, "deadbeef", now - dt.timedelta(seconds=4 * interval + 1)),
                (alive, "cafe", now - dt.timedelta(seconds=interval)),
            ):
                await s.execute(
                    insert(GatewayTunnel).values(
                        id=uuid.uuid4().hex, session_id=answer["session"]["id"], replica=replica,
                        destination="127.0.0.1:1", source_ip=None, opened_at=now, seen_at=seen,
                    )
                )  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="broker.gateway.service"):
            assert await purge_stale_tunnels(r.rt) == 1
        assert "1 tunnel(s) of a broker replica that stopped" in caplog.text
        assert await r.state(dead) == "disconnected"
        assert await r.state(alive) == "active"
        lost = await r.audit("tunnels_lost")
        assert (lost[0].detail or {})["replicas"] == ["deadbeef"]
        async with r.rt.db.read() as s:
            assert (await s.scalars(select(GatewayTunnel.replica))).all() == ["cafe"]
        # The lifecycle job runs the same clean-up.
        clock.advance(4 * interval + 1)
        await run_lifecycle(r.rt)
        assert await r.state(alive) == "disconnected"
