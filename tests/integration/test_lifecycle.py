"""The lifecycle job on SQLite and PostgreSQL: timeouts, schedule grace, resets, spares."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, update

from agent.protocol import PowerState, ProbeResult
from broker.clock import FakeClock
from broker.runtime import Runtime, open_runtime
from broker.sessions.lifecycle import run_lifecycle
from broker.store.tables import (
    Desktop,
    GatewayTunnel,
    Host,
    HostAction,
    Pool,
    Schedule,
    Session,
)
from tests.conftest import app_client, make_settings
from tests.support.fleet import FakeAgent, add_pool, ask, reporting_host, sign_in, staff
from tests.support.scrape import samples, value


async def setup(
    runtime: Runtime,
    client: httpx.AsyncClient,
    n: int = 2,
    power: PowerState = PowerState.RUNNING,
    **pool_settings: Any,
) -> FakeAgent:
    await add_pool(runtime)
    if pool_settings:
        async with runtime.db.write() as s:
            await s.execute(update(Pool).values(**pool_settings))
    return await reporting_host(runtime, client, n, power=power)


async def session(runtime: Runtime) -> Session:
    async with runtime.db.read() as s:
        return (await s.scalars(select(Session).order_by(Session.created_at.desc()))).first()  # type: ignore[return-value]


async def set_session(runtime: Runtime, **values: Any) -> None:
    async with runtime.db.write() as s:
        await s.execute(update(Session).values(**values))


async def queued(runtime: Runtime, kind: str) -> list[str]:
    async with runtime.db.read() as s:
        return list(
            (
                await s.scalars(
                    select(HostAction.desktop_name).where(
                        HostAction.kind == kind, HostAction.state == "queued"
                    )
                )
            ).all()
        )


async def test_disconnect_timeout(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, client, disconnect_timeout_s=600)
    await ask(client, await staff(runtime, "maria"))
    await set_session(runtime, state="disconnected", disconnected_at=clock.now())
    clock.advance(599)
    await run_lifecycle(runtime)
    assert (await session(runtime)).state == "disconnected"
    clock.advance(2)
    await run_lifecycle(runtime)
    ended = await session(runtime)
    assert (ended.state, ended.end_reason) == ("ended", "disconnect_timeout")
    assert len(await queued(runtime, "reset")) == 1


async def test_asking_for_a_ticket_restarts_the_disconnect_timeout(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """maria comes back just before her disconnected session would end and gets a
    fresh ticket: the session must not end in the seconds before her tunnel."""
    agent = await setup(runtime, client, disconnect_timeout_s=600)
    maria = await staff(runtime, "maria")
    sid = (await ask(client, maria)).json()["session"]["id"]
    await set_session(runtime, state="disconnected", disconnected_at=clock.now())
    clock.advance(590)
    await agent.report()
    fresh = await client.get(f"/api/v1/sessions/{sid}", headers=await sign_in(runtime, "maria"))
    assert fresh.json()["connect"]["ticket"]
    clock.advance(20)
    await run_lifecycle(runtime)
    assert (await session(runtime)).state == "disconnected"  # 610 s after the drop
    clock.advance(600)
    await run_lifecycle(runtime)
    assert (await session(runtime)).end_reason == "disconnect_timeout"


async def test_a_desktop_nobody_connects_to_is_freed_like_a_disconnected_one(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """maria asks for a desktop and never opens a tunnel: her session is active
    from the start but holds a licence for nothing, so the pool's disconnect
    timeout frees it. jonas's tunnel (on a live gateway) keeps his."""
    agent = await setup(runtime, client, disconnect_timeout_s=600)
    maria = (await ask(client, await staff(runtime, "maria"))).json()["session"]["id"]
    jonas = (await ask(client, await staff(runtime, "jonas"))).json()["session"]["id"]
    async with runtime.db.write() as s:
        await s.execute(
            insert(GatewayTunnel).values(
                id=uuid.uuid4().hex, session_id=jonas, replica="live", destination="10.0.0.1:3389",
                source_ip=None, opened_at=clock.now(), seen_at=clock.now(),
            )
        )  # fmt: skip

    async def round_after(seconds: float) -> dict[str, tuple[str, str | None]]:
        clock.advance(seconds)
        await agent.report()
        async with runtime.db.write() as s:
            await s.execute(update(GatewayTunnel).values(seen_at=clock.now()))  # heartbeat
        await run_lifecycle(runtime)
        async with runtime.db.read() as s:
            rows = (await s.execute(select(Session.id, Session.state, Session.end_reason))).all()
        return {sid: (state, reason) for sid, state, reason in rows}

    assert (await round_after(599))[maria] == ("active", None)
    states = await round_after(2)
    assert states[maria] == ("ended", "disconnect_timeout")
    assert states[jonas] == ("active", None)


async def test_the_disconnect_timeout_of_a_slow_start_counts_from_the_desktop_ready(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """maria's desktop takes 200 s to boot (the pending timeout is 300 s), in a pool
    that frees unconnected desktops after 120 s. The time to connect starts when
    the desktop is ready for her, not when she asked: her session must not be
    made active and ended as `disconnect_timeout` in the same round."""
    agent = await setup(runtime, client, n=1, power=PowerState.STOPPED, disconnect_timeout_s=120)
    assert (await ask(client, await staff(runtime, "maria"))).status_code == 202
    clock.advance(200)
    agent.set_power("vhost01-d000", PowerState.RUNNING)
    await agent.report()
    await run_lifecycle(runtime)
    ready = await session(runtime)
    assert (ready.state, ready.end_reason) == ("active", None)
    clock.advance(119)
    await run_lifecycle(runtime)
    assert (await session(runtime)).state == "active"
    clock.advance(2)
    await run_lifecycle(runtime)
    ended = await session(runtime)
    assert (ended.state, ended.end_reason) == ("ended", "disconnect_timeout")


async def test_a_started_desktop_without_a_console_endpoint_does_not_activate(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A desktop without a console endpoint is not handed out when it runs
    (placement's desktop_ready); one that was stopped, is started for maria and
    comes up without one is no more ready: her session stays pending, and ends
    as a start that timed out rather than an active session with nothing to
    connect to."""
    agent = await setup(runtime, client, n=1, power=PowerState.STOPPED)
    assert (await ask(client, await staff(runtime, "maria"))).status_code == 202
    clock.advance(30)
    agent.desktops["vhost01-d000"] = agent.desktops["vhost01-d000"].model_copy(
        update={"power_state": PowerState.RUNNING, "address": None, "port": None}
    )
    await agent.report()
    await run_lifecycle(runtime)
    assert (await session(runtime)).state == "pending"
    clock.advance(runtime.settings.pending_timeout_s)
    await run_lifecycle(runtime)
    assert (await session(runtime)).end_reason == "start_timeout"


async def test_maximum_session_time_and_idle_timeout(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    agent = await setup(runtime, client, max_session_s=3600, idle_timeout_s=900)
    await ask(client, await staff(runtime, "maria"))
    clock.advance(800)
    await set_session(runtime, last_activity_at=clock.now())  # the gateway saw traffic
    clock.advance(800)
    await run_lifecycle(runtime)
    assert (await session(runtime)).state == "active"
    clock.advance(200)
    await run_lifecycle(runtime)
    assert (await session(runtime)).end_reason == "idle_timeout"
    await agent.report()  # the host is still there
    assert (await ask(client, await staff(runtime, "felix"))).status_code == 201
    await set_session(runtime, last_activity_at=clock.now() + dt.timedelta(hours=9))
    clock.advance(3601)
    await run_lifecycle(runtime)
    assert (await session(runtime)).end_reason == "max_session_time"


async def test_console_in_use_keeps_the_session_active(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    agent = await setup(runtime, client, idle_timeout_s=900)
    sid = (await ask(client, await staff(runtime, "maria"))).json()["session"]
    await set_session(runtime, state="disconnected", disconnected_at=clock.now())
    clock.advance(1000)
    name = sid["desktop"]
    agent.desktops[name] = agent.desktops[name].model_copy(update={"connections": 1})
    await agent.report()
    await run_lifecycle(runtime)
    current = await session(runtime)
    assert (current.state, current.last_activity_at) == ("active", clock.now())


async def test_pending_timeout(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, client, n=1, power=PowerState.STOPPED)
    assert (await ask(client, await staff(runtime, "maria"))).status_code == 202
    clock.advance(runtime.settings.pending_timeout_s + 1)
    await run_lifecycle(runtime)
    assert (await session(runtime)).end_reason == "start_timeout"


@pytest.mark.parametrize("timeout_s", [300.0, 60.0])
async def test_a_launch_that_times_out_counts_as_slow_in_the_launch_histogram(
    tmp_path: Path, db_url: str, clock: FakeClock, timeout_s: float
) -> None:
    """Without it, a pool whose desktops never come up shows no launch at all and
    VdiSessionLaunchSlow stays silent. It counts above every bucket also when
    pending_timeout_s is below the alert's 120 s."""
    settings = make_settings(tmp_path, db_url, pending_timeout_s=timeout_s)
    runtime = await open_runtime(settings, clock=clock)
    try:
        async with app_client(runtime) as client:
            await setup(runtime, client, n=1, power=PowerState.STOPPED)
            assert (await ask(client, await staff(runtime, "maria"))).status_code == 202
            waited = timeout_s + 30
            clock.advance(waited)
            await run_lifecycle(runtime)
            assert (await session(runtime)).end_reason == "start_timeout"
            found = samples((await client.get("/metrics")).text)
            launches = "vdi_session_launch_duration_seconds"
            assert value(found, f"{launches}_count", pool="Finanzen") == 1
            recorded = value(found, f"{launches}_sum", pool="Finanzen")
            assert recorded == pytest.approx(max(waited, 300))
            assert value(found, f"{launches}_bucket", pool="Finanzen", le="300.0") == 0
            await run_lifecycle(runtime)  # an ended session is not counted again
            found = samples((await client.get("/metrics")).text)
            assert value(found, f"{launches}_count", pool="Finanzen") == 1
    finally:
        await runtime.close()


async def test_outside_schedule_after_the_grace(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, client)
    async with runtime.db.write() as s:  # Monday 07:00-11:00 Berlin; now is 10:00
        s.add(
            Schedule(
                scope="department",
                subject="Finanzen",
                days="mon",
                start="07:00",
                end="11:00",
                created_at=clock.now(),
            )
        )
    assert (await ask(client, await staff(runtime, "maria"))).status_code == 201
    clock.advance(3600 + runtime.settings.schedule_grace_s - 60)
    await run_lifecycle(runtime)
    assert (await session(runtime)).state == "active"  # still within the grace
    clock.advance(120)
    await run_lifecycle(runtime)
    assert (await session(runtime)).end_reason == "outside_schedule"


async def pool_capacity(client: httpx.AsyncClient) -> tuple[float, float]:
    """The pool's usable capacity and desktops out of service, as /metrics says."""
    found = samples((await client.get("/metrics")).text)
    return (
        value(found, "vdi_pool_capacity_sessions", pool="Finanzen"),
        value(found, "vdi_pool_desktops_out_of_service", pool="Finanzen"),
    )


async def test_failed_reset_is_tried_again_less_often_each_time(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A reset that fails is tried again after 30 s, then 60 s, and so on: a reset
    that can never work is not queued and failed every five seconds for good.
    Meanwhile the desktop is out of service, which capacity and the journal say."""
    from agent.protocol import ActionResult

    agent = await setup(runtime, client, n=1)
    me = await staff(runtime, "maria")
    sid = (await ask(client, me)).json()["session"]["id"]
    await client.delete(f"/api/v1/sessions/{sid}", headers=me)
    assert await pool_capacity(client) == (1, 0)  # a first reset is a matter of seconds
    for wait in (30, 60):
        action = (await agent.report())["actions"][0]
        agent.results.append(ActionResult(id=action["id"], ok=False, error="hypervisor busy"))
        with caplog.at_level(logging.WARNING, logger="broker.hosts.ingest"):
            await agent.report()
        assert "host vhost01: reset of vhost01-d000 (recycle) failed: hypervisor busy" in (
            caplog.text
        )
        assert await pool_capacity(client) == (0, 1)
        await run_lifecycle(runtime)
        assert await queued(runtime, "reset") == []
        clock.advance(wait - 1)
        await agent.report()
        await run_lifecycle(runtime)
        assert await queued(runtime, "reset") == []  # not yet
        clock.advance(1)
        await agent.report()
        await run_lifecycle(runtime)
        assert len(await queued(runtime, "reset")) == 1
        assert await pool_capacity(client) == (0, 1)  # the retry is not a success yet
    await agent.obey()
    async with runtime.db.read() as s:
        assert (await s.scalar(select(Desktop.needs_reset))) is False
    assert await pool_capacity(client) == (1, 0)


async def test_spare_desktops_are_started_and_surplus_stopped(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    agent = await setup(runtime, client, n=5, power=PowerState.STOPPED, spare_desktops=2)
    await run_lifecycle(runtime)
    assert len(await queued(runtime, "start")) == 2
    await run_lifecycle(runtime)  # already on their way: nothing more
    assert len(await queued(runtime, "start")) == 2
    await agent.obey()
    await run_lifecycle(runtime)
    assert await queued(runtime, "start") == []
    # Someone takes one: a new spare is started.
    await ask(client, await staff(runtime, "maria"))
    await run_lifecycle(runtime)
    assert len(await queued(runtime, "start")) == 1
    await agent.obey()
    # Fewer spares wanted: the surplus stops, but only after idling.
    async with runtime.db.write() as s:
        await s.execute(update(Pool).values(spare_desktops=0))
    await run_lifecycle(runtime)
    assert await queued(runtime, "stop") == []
    clock.advance(runtime.settings.spare_idle_stop_s + 1)
    await agent.report()
    await run_lifecycle(runtime)
    assert len(await queued(runtime, "stop")) == 2


async def test_only_desktops_ready_to_hand_out_count_as_spares(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A spare is there for a fast logon. One whose console refuses, or one on a
    drained host, serves none, so another is started where placement would use it."""
    agent = await setup(runtime, client, n=2, spare_desktops=2)
    other = await reporting_host(
        runtime, client, 3, name="vhost02", power=PowerState.STOPPED, prefix="b"
    )
    await run_lifecycle(runtime)
    assert await queued(runtime, "start") == []  # vhost01's two are the spares
    agent.set_console("vhost01-d000", ProbeResult(ok=False, error="refused"))
    await agent.report()
    await run_lifecycle(runtime)
    assert await queued(runtime, "start") == ["b000"]
    await other.obey()
    async with runtime.db.write() as s:
        await s.execute(update(Host).where(Host.name == "vhost01").values(state="draining"))
    await run_lifecycle(runtime)
    assert await queued(runtime, "start") == ["b001"]
    await other.obey()
    # Nothing of the broken or drained desktops is stopped as surplus: they are
    # not spares, and the two on vhost02 are exactly what the pool asks for.
    clock.advance(runtime.settings.spare_idle_stop_s + 1)
    await agent.report()
    await other.report()
    await run_lifecycle(runtime)
    assert await queued(runtime, "stop") == []
    assert await queued(runtime, "start") == []


async def test_a_spare_still_booting_is_on_its_way_not_missing(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A guest's RDP service answers only a minute or so after the start: until
    then the started spare is on its way, as a queued start is. Counted as missing,
    every lifecycle round would start more desktops for as long as guests boot (a
    boot storm). Only one still silent after pending_timeout_s is given up on."""
    agent = await setup(runtime, client, n=6, power=PowerState.STOPPED, spare_desktops=2)
    for name in list(agent.desktops):
        agent.set_console(name, ProbeResult(ok=False, error="refused"))  # booting
    await run_lifecycle(runtime)
    first = sorted(await queued(runtime, "start"))
    assert len(first) == 2
    await agent.obey()  # running now, consoles not answering yet
    for _ in range(3):
        clock.advance(runtime.settings.job_interval_s)
        await agent.report()
        await run_lifecycle(runtime)
        assert await queued(runtime, "start") == []
    # One guest came up; the other never does: after the wait a session would get
    # (pending_timeout_s), a replacement is started for it, and only for it.
    agent.set_console(first[0], ProbeResult(ok=True, latency_s=0.002))
    clock.advance(runtime.settings.pending_timeout_s)
    await agent.report()
    await run_lifecycle(runtime)
    assert len(await queued(runtime, "start")) == 1


async def test_sessions_on_a_vanished_desktop_end_after_the_grace(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    agent = await setup(runtime, client, max_sessions=1)
    maria = await staff(runtime, "maria")
    lost = (await ask(client, maria)).json()["session"]["desktop"]
    del agent.desktops[lost]  # the VM is undefined on the host
    await agent.report()
    grace = runtime.settings.desktop_lost_grace_s
    clock.advance(grace - 1)
    await agent.report()  # the host itself is fine
    await run_lifecycle(runtime)
    assert (await session(runtime)).state == "active"  # it may still come back
    clock.advance(2)
    await run_lifecycle(runtime)
    ended = await session(runtime)
    assert (ended.state, ended.end_reason) == ("ended", "desktop_lost")
    # The licence is free again, and maria gets a desktop that exists.
    again = (await ask(client, maria)).json()
    assert again["result"] == "assigned" and again["session"]["desktop"] != lost
    assert again["connect"]["desktop_port"] == agent.desktops[again["session"]["desktop"]].port
