"""Assignment through the API on SQLite and PostgreSQL: assign, reconnect, pending,
log off and recycle, refusals, and no double assignment under concurrency."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from agent.protocol import PowerState
from broker.app import create_app
from broker.clock import FakeClock
from broker.domain import PoolType, WorkMode
from broker.runtime import Runtime, open_runtime
from broker.store.tables import Desktop, HostAction, Session
from broker.users import service as users
from tests.support.audit import audit_events
from tests.support.fleet import add_host, add_pool, ask, reporting_host, staff


async def count(rt: Runtime, model: type, *where: object) -> int:
    async with rt.db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_assign_then_reconnect_to_the_same_desktop(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_pool(runtime)
    await reporting_host(runtime, client, 3)
    maria = await staff(runtime, "maria")
    first = await ask(client, maria)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["result"] == "assigned"
    session = body["session"]
    assert (session["state"], session["pool"], session["host"]) == ("active", "Finanzen", "vhost01")
    connect = body["connect"]
    assert connect["user"] == "maria" and len(connect["ticket"]) >= 43
    assert connect["protocol"] == "rdp" and connect["local_port"] == 13389
    assert connect["ssh_command"] == (
        f"ssh -N -L 127.0.0.1:13389:127.0.0.1:{connect['desktop_port']} "
        f"-p {runtime.settings.gateway_port} maria@127.0.0.1"
    )

    clock.advance(5)
    again = await ask(client, maria)
    assert again.status_code == 200
    assert again.json()["result"] == "reconnected"
    assert again.json()["session"]["id"] == session["id"]
    assert again.json()["session"]["desktop"] == session["desktop"]
    assert again.json()["connect"]["ticket"] != connect["ticket"]

    # Reconnect also after a broker restart: the session lives in the database.
    other = await open_runtime(runtime.settings, clock=clock)
    try:
        app = create_app(other.settings, runtime=other)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://testserver"
        ) as c2:
            after = await ask(c2, maria)
        assert after.json()["session"]["id"] == session["id"]
    finally:
        await other.close()


async def test_get_and_log_off_recycles_a_floating_desktop(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime)
    agent = await reporting_host(runtime, client, 1)
    maria = await staff(runtime, "maria")
    sid = (await ask(client, maria)).json()["session"]["id"]
    got = await client.get(f"/api/v1/sessions/{sid}", headers=maria)
    assert got.status_code == 200 and got.json()["session"]["state"] == "active"
    assert got.json()["connect"]["ticket"]

    no_csrf = await client.delete(f"/api/v1/sessions/{sid}", headers={"cookie": maria["cookie"]})
    assert no_csrf.status_code == 403
    ended = await client.delete(f"/api/v1/sessions/{sid}", headers=maria)
    assert ended.json()["session"]["state"] == "ended"
    assert ended.json()["session"]["end_reason"] == "user_logoff"

    # The desktop is dirty until the agent has reset it.
    felix = await staff(runtime, "felix")
    busy = await ask(client, felix)
    assert busy.status_code == 503 and busy.json()["error"] == "capacity_full"
    actions = await agent.obey()
    assert [a["kind"] for a in actions] == ["reset"]
    assert (await ask(client, felix)).status_code == 201


async def test_stopped_desktop_is_started_and_the_session_is_pending_until_ready(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime)
    agent = await reporting_host(runtime, client, 2, power=PowerState.STOPPED)
    maria = await staff(runtime, "maria")
    response = await ask(client, maria)
    assert response.status_code == 202
    assert response.json()["result"] == "pending"
    assert response.json()["connect"] is None
    sid = response.json()["session"]["id"]
    still = await client.get(f"/api/v1/sessions/{sid}", headers=maria)
    assert still.status_code == 202
    actions = await agent.obey()
    assert [a["kind"] for a in actions] == ["start"]
    ready = await client.get(f"/api/v1/sessions/{sid}", headers=maria)
    assert ready.status_code == 200
    assert ready.json()["session"]["state"] == "active"
    assert ready.json()["connect"]["ticket"]
    # Another user gets the other stopped desktop, not the one starting.
    felix = await staff(runtime, "felix")
    other = await ask(client, felix)
    assert other.status_code == 202
    assert other.json()["session"]["desktop"] != ready.json()["session"]["desktop"]


@pytest.mark.parametrize(
    ("pool_type", "power", "status"),
    [
        (PoolType.FLOATING, PowerState.RUNNING, 201),
        (PoolType.FLOATING, PowerState.STOPPED, 202),
        (PoolType.PERSISTENT, PowerState.RUNNING, 201),
    ],
)
async def test_the_answer_to_an_assignment_is_what_is_stored(
    runtime: Runtime,
    client: httpx.AsyncClient,
    pool_type: PoolType,
    power: PowerState,
    status: int,
) -> None:
    """The answer is built from what the assignment wrote, not read back: it must
    match what a look-up of the same session reads from the database."""
    await add_pool(runtime, type=pool_type)
    await reporting_host(runtime, client, 2, power=power)
    maria = await staff(runtime, "maria")
    answer = await ask(client, maria)
    assert answer.status_code == status, answer.text
    session = answer.json()["session"]
    looked_up = await client.get(f"/api/v1/sessions/{session['id']}", headers=maria)
    assert looked_up.json()["session"] == session
    assert session["host"] == "vhost01" and session["desktop"]
    connect, again = answer.json()["connect"], looked_up.json()["connect"]
    if status == 202:
        assert connect is None and again is None
    else:
        assert (connect["desktop_address"], connect["desktop_port"]) == (
            again["desktop_address"],
            again["desktop_port"],
        )


async def test_refusals_are_coded_and_readable(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_pool(runtime, departments=["Bauamt"], max_sessions=1)
    await add_pool(runtime, "Außendienst", field=True)
    await reporting_host(runtime, client, 2)
    maria = await staff(runtime, "maria")
    refused = await ask(client, maria)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "not_entitled",
        "message": "Sie sind für den Pool Finanzen nicht freigeschaltet.",
    }
    english = await ask(client, maria, headers={"accept-language": "en-GB,en;q=0.9"})
    assert english.json()["message"] == "You are not entitled to use pool Finanzen."
    field_pool = await ask(client, maria, pool="Außendienst")
    assert field_pool.json()["error"] == "not_entitled"
    unknown = await ask(client, maria, pool="Gibtsnicht")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": "unknown_pool",
        "message": "Es gibt keinen Pool Gibtsnicht.",
    }
    unknown_en = await ask(client, maria, pool="Gibtsnicht", headers={"accept-language": "en"})
    assert unknown_en.json()["message"] == "There is no pool Gibtsnicht."
    # A pool name as copied, with a space around it, is the pool's name.
    padded = await ask(client, maria, pool=" Außendienst\n")
    assert (padded.status_code, padded.json()["error"]) == (403, "not_entitled")
    blank = await ask(client, maria, pool="  ")
    assert (blank.status_code, blank.json()["error"]) == (422, "invalid_request")

    kurt = await staff(runtime, "kurt", department="Bauamt")
    assert (await ask(client, kurt)).status_code == 201
    erna = await staff(runtime, "erna", department="Bauamt")
    full = await ask(client, erna)
    assert full.status_code == 409
    assert full.json()["message"] == "Die einzige Lizenz des Pools Finanzen ist belegt."
    bad = await client.post("/api/v1/sessions", json={"pool": ""}, headers=erna)
    assert bad.status_code == 422
    assert await count(runtime, Session) == 1
    # Every refusal is audited, though the request's own transaction rolls back.
    refusals = await audit_events(runtime, "session_refused")
    assert [(e.username, e.result, e.detail["pool"]) for e in refusals] == [
        ("maria", "not_entitled", "Finanzen"),
        ("maria", "not_entitled", "Finanzen"),
        ("maria", "not_entitled", "Außendienst"),
        ("maria", "not_entitled", "Außendienst"),  # the name with spaces around it
        ("erna", "licence_limit", "Finanzen"),
    ]


async def test_host_unavailable_when_the_pools_hosts_are_out(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_pool(runtime)
    await reporting_host(runtime, client, 2)
    clock.advance(runtime.settings.report_interval * 3 + 1)
    response = await ask(client, await staff(runtime, "maria"))
    assert response.status_code == 503
    assert response.json()["error"] == "host_unavailable"
    assert response.headers["retry-after"] == "60"


async def test_persistent_pool_keeps_a_users_desktop(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime, "Planung", type=PoolType.PERSISTENT)
    await reporting_host(runtime, client, 3, pool="Planung")
    maria = await staff(runtime, "maria")
    first = await ask(client, maria, pool="Planung")
    desktop = first.json()["session"]["desktop"]
    await client.delete(f"/api/v1/sessions/{first.json()['session']['id']}", headers=maria)
    assert await count(runtime, HostAction) == 0  # persistent desktops are not reset
    # Others never get it, the owner always does.
    for name in ("a", "b"):
        taken = await ask(client, await staff(runtime, name), pool="Planung")
        assert taken.json()["session"]["desktop"] != desktop
    assert (await ask(client, maria, pool="Planung")).json()["session"]["desktop"] == desktop


async def test_field_work_mode(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_pool(runtime, "Außendienst", field=True)
    await reporting_host(runtime, client, 2, pool="Außendienst")
    felix = await staff(runtime, "felix", work_mode=WorkMode.FIELD)
    response = await ask(client, felix, pool="Außendienst")
    assert response.status_code == 201
    assert response.json()["session"]["work_mode"] == "field"


async def test_a_direct_duplicate_insert_fails(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await add_pool(runtime)
    await reporting_host(runtime, client, 1)
    await ask(client, await staff(runtime, "maria"))
    async with runtime.db.read() as s:
        existing = (await s.scalars(select(Session))).one()
    now = runtime.clock.now()
    other_user = await staff(runtime, "felix")
    del other_user
    with pytest.raises(IntegrityError):
        async with runtime.db.write() as s:  # the same desktop, another session
            s.add(
                Session(
                    id=str(uuid.uuid4()),
                    user_id=existing.user_id + 1,
                    pool_id=existing.pool_id,
                    desktop_id=existing.desktop_id,
                    state="pending",
                    work_mode="home",
                    created_at=now,
                )
            )
    with pytest.raises(IntegrityError):
        async with runtime.db.write() as s:  # the same user and pool, another desktop
            s.add(
                Session(
                    id=str(uuid.uuid4()),
                    user_id=existing.user_id,
                    pool_id=existing.pool_id,
                    desktop_id=None,
                    state="pending",
                    work_mode="home",
                    created_at=now,
                )
            )


async def test_200_concurrent_requests_50_desktops_exactly_50_assignments(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime, max_sessions=500)
    agents = [await add_host(runtime, client, f"vhost{i}") for i in range(1, 3)]
    for agent in agents:
        agent.add(25, pool="Finanzen")
        await agent.report()
    people = [await staff(runtime, f"user{i:03d}") for i in range(200)]
    responses = await asyncio.gather(*(ask(client, p) for p in people))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 50, statuses
    assert statuses.count(503) == 150
    assert {r.json()["error"] for r in responses if r.status_code == 503} == {"capacity_full"}
    async with runtime.db.read() as s:
        sessions = (await s.scalars(select(Session))).all()
    assert len(sessions) == 50
    assert len({x.desktop_id for x in sessions}) == 50
    assert len({x.user_id for x in sessions}) == 50
    assert await count(runtime, Desktop) == 50


async def test_locking_a_user_ends_their_desktop_sessions(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime)
    await reporting_host(runtime, client, 2)
    maria = await staff(runtime, "maria")
    assert (await ask(client, maria)).status_code == 201
    await users.set_locked(runtime, "maria", True, "admin")
    async with runtime.db.read() as s:
        session = (await s.scalars(select(Session))).one()
    assert (session.state, session.end_reason) == ("ended", "user_locked")
    assert (await client.get("/api/v1/me", headers=maria)).status_code == 401


async def test_no_ticket_for_a_desktop_missing_from_its_hosts_reports(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_pool(runtime)
    agent = await reporting_host(runtime, client, 2)
    maria = await staff(runtime, "maria")
    mine = (await ask(client, maria)).json()["session"]
    vm = agent.desktops.pop(mine["desktop"])  # its host no longer lists it
    clock.advance(10)
    await agent.report()
    # Within the grace the session stays (the desktop may come back), but its
    # endpoint is gone: a coded refusal, not a ticket for a dead port.
    again = await ask(client, maria)
    assert (again.status_code, again.json()["error"]) == (503, "host_unavailable")
    assert "nicht zu finden" in again.json()["message"]
    looked_up = await client.get(f"/api/v1/sessions/{mine['id']}", headers=maria)
    assert looked_up.status_code == 200 and looked_up.json()["connect"] is None
    # Back in the report: reconnected as before.
    agent.desktops[vm.name] = vm
    clock.advance(10)
    await agent.report()
    back = await ask(client, maria)
    assert back.json()["result"] == "reconnected" and back.json()["connect"] is not None


async def test_a_running_desktop_without_a_console_is_not_handed_out(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A guest with no console endpoint (libvirt's test domain has no <graphics>)
    used to be assigned: an active session with nothing to connect to, holding a
    licence until a timeout. It is passed over, also when it is first by name."""
    await add_pool(runtime)
    agent = await reporting_host(runtime, client, 2)
    first = min(agent.desktops)
    agent.desktops[first] = agent.desktops[first].model_copy(
        update={"address": None, "port": None, "probe": None}
    )
    await agent.report()
    got = await ask(client, await staff(runtime, "maria"))
    assert got.status_code == 201, got.text
    assert got.json()["session"]["desktop"] != first and got.json()["connect"] is not None
    refused = await ask(client, await staff(runtime, "jonas"))
    assert (refused.status_code, refused.json()["error"]) == (503, "capacity_full")
