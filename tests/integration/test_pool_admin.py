"""Pool administration through the service and the admin API, on SQLite and
PostgreSQL: settings, entitlements, persistent desktop assignments."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agent.protocol import PowerState
from broker.domain import PoolType, Role
from broker.errors import Conflict, InvalidInput, NotFound
from broker.pools import service as pools
from broker.runtime import Runtime
from broker.store.tables import AuditEvent, Desktop, HostAction, User
from tests.support.fleet import FakeAgent, add_pool, ask, reporting_host, staff

URL = "/api/v1/admin/pools"


async def admin(rt: Runtime) -> dict[str, str]:
    return await staff(rt, "chef", department="IT", role=Role.ADMIN)


async def pool_row(rt: Runtime, name: str = "Finanzen") -> dict[str, Any]:
    return next(p for p in await pools.list_all(rt) if p["name"] == name)


async def owners(rt: Runtime) -> dict[str, str | None]:
    """Desktop name -> owner's user name."""
    async with rt.db.read() as s:
        rows = (
            await s.execute(
                select(Desktop.name, User.name).outerjoin(User, User.id == Desktop.assigned_user_id)
            )
        ).all()
    return {d: u for d, u in rows}


async def events(rt: Runtime, event: str) -> list[dict[str, Any] | None]:
    async with rt.db.read() as s:
        rows = await s.scalars(
            select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
        )
        return [e.detail for e in rows.all()]


async def test_settings_round_trip(runtime: Runtime, client: httpx.AsyncClient) -> None:
    chef = await admin(runtime)
    await add_pool(runtime)
    expected = {
        "max_sessions": 20,
        "priority_reserve": 0.1,
        "spare_desktops": 2,
        "disconnect_timeout_s": 900,
        "max_session_s": 36000,
        "idle_timeout_s": 1800,
        "field": True,
    }
    changed = await client.patch(f"{URL}/Finanzen", json=expected, headers=chef)
    assert changed.status_code == 200, changed.text
    assert {k: changed.json()[k] for k in expected} == expected
    # Only what is sent changes; null means "none".
    cleared = await client.patch(
        f"{URL}/Finanzen", json={"spare_desktops": None, "idle_timeout_s": None}, headers=chef
    )
    assert cleared.status_code == 200
    listed = (await client.get(URL, headers=chef)).json()["items"]
    assert {k: listed[0][k] for k in expected} == {
        **expected,
        "spare_desktops": None,
        "idle_timeout_s": None,
    }
    assert (await events(runtime, "pool_changed"))[-1] == {
        "pool": "Finanzen",
        "changes": {
            "spare_desktops": {"from": 2, "to": None},
            "idle_timeout_s": {"from": 1800, "to": None},
        },
    }


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("Finanzen", {}, 422),
        ("Finanzen", {"max_sessions": -1}, 422),
        ("Finanzen", {"max_sessions": None}, 422),
        ("Finanzen", {"max_sessions": "20"}, 422),
        ("Finanzen", {"priority_reserve": 1}, 422),
        ("Finanzen", {"priority_reserve": " 0.1 "}, 422),
        ("Finanzen", {"spare_desktops": -2}, 422),
        ("Finanzen", {"disconnect_timeout_s": 30}, 422),
        ("Finanzen", {"max_session_s": 0}, 422),
        ("Finanzen", {"idle_timeout_s": 59.5}, 422),
        ("Finanzen", {"field": "yes"}, 422),
        ("Finanzen", {"field": None}, 422),
        ("Finanzen", {"colour": "blue"}, 422),
        # A valid change with a bad one: neither is stored.
        ("Finanzen", {"max_sessions": 10, "idle_timeout_s": 5}, 422),
        ("Gibtsnicht", {"max_sessions": 10}, 404),
    ],
)
async def test_bad_settings_change_nothing(
    runtime: Runtime, client: httpx.AsyncClient, name: str, body: dict[str, Any], status: int
) -> None:
    chef = await admin(runtime)
    await add_pool(runtime)
    before = await pools.list_all(runtime)
    response = await client.patch(f"{URL}/{name}", json=body, headers=chef)
    assert response.status_code == status, response.text
    assert set(response.json()) >= {"error", "message"}
    assert await pools.list_all(runtime) == before
    assert await events(runtime, "pool_changed") == []


async def test_entitlements_by_department_and_user(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    chef = await admin(runtime)
    await add_pool(runtime)
    await staff(runtime, "maria")
    dept = await client.post(
        f"{URL}/Finanzen/entitlements",
        json={"kind": "department", "value": "Kämmerei"},
        headers=chef,
    )
    assert dept.status_code == 201, dept.text
    user = await client.post(
        f"{URL}/Finanzen/entitlements", json={"kind": "user", "value": "Maria"}, headers=chef
    )
    assert (user.json()["departments"], user.json()["users"]) == (["Kämmerei"], ["maria"])
    before = await pool_row(runtime)
    for body, status, error in (
        ({"kind": "user", "value": "maria"}, 409, "exists"),
        ({"kind": "user", "value": "ghost"}, 422, "unknown_user"),
        ({"kind": "team", "value": "A"}, 422, "invalid_entitlement"),
        ({"kind": "department", "value": "  "}, 422, "invalid_name"),
        ({"kind": "department"}, 422, "invalid_request"),
    ):
        bad = await client.post(f"{URL}/Finanzen/entitlements", json=body, headers=chef)
        assert (bad.status_code, bad.json()["error"]) == (status, error), body
    assert await pool_row(runtime) == before

    revoked = await client.delete(f"{URL}/Finanzen/entitlements/user/maria", headers=chef)
    assert revoked.status_code == 200 and revoked.json()["users"] == []
    missing = await client.delete(f"{URL}/Finanzen/entitlements/user/maria", headers=chef)
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_entitlement"
    bad_kind = await client.delete(f"{URL}/Finanzen/entitlements/team/A", headers=chef)
    assert bad_kind.status_code == 422
    # The last one gone, the pool is open to everybody again: only when asked for.
    last_url = f"{URL}/Finanzen/entitlements/department/Kämmerei"
    kept = await pool_row(runtime)
    for query in ("", "?open_to_all=false", "?open_to_all=maybe"):
        refused = await client.delete(last_url + query, headers=chef)
        assert refused.status_code in (409, 422), query
        if refused.status_code == 409:
            assert refused.json()["error"] == "last_entitlement"
            assert "open to everybody" in refused.json()["message"]
        assert await pool_row(runtime) == kept, query
    last = await client.delete(last_url + "?open_to_all=true", headers=chef)
    assert last.status_code == 200, last.text
    assert (last.json()["departments"], last.json()["users"]) == ([], [])
    assert [d["value"] for d in await events(runtime, "pool_entitled")] == ["Kämmerei", "maria"]  # type: ignore[index]
    revoked_events = await events(runtime, "pool_revoked")
    assert [d.get("open_to_everybody") for d in revoked_events] == [None, True]  # type: ignore[union-attr]


async def persistent_fleet(rt: Runtime, client: httpx.AsyncClient, desktops: int = 3) -> FakeAgent:
    await add_pool(rt, "Planung", type=PoolType.PERSISTENT)
    return await reporting_host(rt, client, desktops, pool="Planung")


async def test_assign_and_unassign_persistent_desktops(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    chef = await admin(runtime)
    await persistent_fleet(runtime, client)
    await staff(runtime, "maria")
    await staff(runtime, "felix")
    named = await client.post(
        f"{URL}/Planung/assignments",
        json={"user": "maria", "desktop": "vhost01-d001"},
        headers=chef,
    )
    assert named.status_code == 201, named.text
    assert named.json() == {
        "pool": "Planung",
        "user": "maria",
        "desktop": "vhost01-d001",
        "host": "vhost01",
    }
    # Without a name: a free one nobody owns (the first by name).
    free = await client.post(f"{URL}/Planung/assignments", json={"user": "felix"}, headers=chef)
    assert free.json()["desktop"] == "vhost01-d000"
    assert await owners(runtime) == {
        "vhost01-d000": "felix",
        "vhost01-d001": "maria",
        "vhost01-d002": None,
    }
    # Naming the desktop one has already is no change.
    same = await client.post(
        f"{URL}/Planung/assignments",
        json={"user": "maria", "desktop": "vhost01/vhost01-d001"},
        headers=chef,
    )
    assert same.status_code == 201 and same.json()["desktop"] == "vhost01-d001"

    unassigned = await client.delete(f"{URL}/Planung/assignments/maria", headers=chef)
    assert unassigned.status_code == 200 and unassigned.json()["desktop"] == "vhost01-d001"
    assert (await owners(runtime))["vhost01-d001"] is None
    # The desktop is reset before anyone else gets it.
    async with runtime.db.read() as s:
        action = (await s.scalars(select(HostAction))).one()
        desktop = (await s.scalars(select(Desktop).where(Desktop.name == "vhost01-d001"))).one()
    assert (action.kind, action.reason, action.desktop_name) == ("reset", "unassign", desktop.name)
    assert desktop.needs_reset
    again = await client.delete(f"{URL}/Planung/assignments/maria", headers=chef)
    assert again.status_code == 404 and again.json()["error"] == "not_assigned"
    assert len(await events(runtime, "desktop_assigned")) == 2
    assert len(await events(runtime, "desktop_unassigned")) == 1


async def test_a_paused_desktop_is_reset_before_its_next_owner_gets_it(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A paused VM keeps its user's logon in memory: after unassign and assign, the
    next owner may only have it once the agent has reset it."""
    agent = await persistent_fleet(runtime, client, desktops=1)
    alice = await staff(runtime, "alice")
    first = (await ask(client, alice, pool="Planung")).json()["session"]
    await client.delete(f"/api/v1/sessions/{first['id']}", headers=alice)  # her logon stays
    agent.set_power(first["desktop"], PowerState.PAUSED)  # e.g. storage full, virsh suspend
    await agent.report()
    await pools.unassign_desktop(runtime, "Planung", "alice", "test")
    async with runtime.db.read() as s:
        action = (await s.scalars(select(HostAction))).one()
        assert (action.kind, action.reason) == ("reset", "unassign")
        assert (await s.scalars(select(Desktop))).one().needs_reset
    bob = await staff(runtime, "bob")
    await pools.assign_desktop(runtime, "Planung", "bob", None, "test")
    agent.set_power(first["desktop"], PowerState.RUNNING)  # resumed, alice's logon in RAM
    await agent.report()
    waiting = await ask(client, bob, pool="Planung")
    assert (waiting.status_code, waiting.json()["error"]) == (503, "host_unavailable")
    assert [a["kind"] for a in await agent.obey()] == ["reset"]
    assert (await ask(client, bob, pool="Planung")).status_code == 201


@pytest.mark.parametrize(
    ("power", "reset"),
    [(state, state is not PowerState.STOPPED) for state in PowerState],
)
async def test_unassign_resets_in_every_power_state_that_may_hold_a_logon(
    runtime: Runtime, client: httpx.AsyncClient, power: PowerState, reset: bool
) -> None:
    agent = await persistent_fleet(runtime, client, desktops=1)
    await staff(runtime, "maria")
    await pools.assign_desktop(runtime, "Planung", "maria", None, "test")
    agent.set_power("vhost01-d000", power)
    await agent.report()
    await pools.unassign_desktop(runtime, "Planung", "maria", "test")
    async with runtime.db.read() as s:
        kinds = (await s.scalars(select(HostAction.kind))).all()
        dirty = (await s.scalars(select(Desktop.needs_reset))).one()
    # A stopped guest holds no logon; a reset there would have nothing to do.
    assert (kinds, dirty) == ((["reset"], True) if reset else ([], False))


async def test_assignment_refusals_change_nothing(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    chef = await admin(runtime)
    await persistent_fleet(runtime, client, desktops=2)
    await add_pool(runtime, "Finanzen")
    await add_pool(runtime, "Bauplanung", type=PoolType.PERSISTENT, departments=["Bauamt"])
    await staff(runtime, "maria")
    felix = await staff(runtime, "felix")
    await pools.assign_desktop(runtime, "Planung", "felix", "vhost01-d000", "test")
    # jan's first session makes the other desktop his own.
    jan = await ask(client, await staff(runtime, "jan"), pool="Planung")
    assert jan.json()["session"]["desktop"] == "vhost01-d001"
    before = await owners(runtime)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("Planung", {"user": "maria", "desktop": "vhost01-d000"}, 409, "desktop_taken"),
        ("Planung", {"user": "maria", "desktop": "vhost01-d001"}, 409, "desktop_taken"),
        ("Planung", {"user": "maria", "desktop": "nope"}, 422, "unknown_desktop"),
        ("Planung", {"user": "ghost"}, 422, "unknown_user"),
        ("Planung", {"user": "maria"}, 409, "no_free_desktop"),
        ("Planung", {"user": "felix", "desktop": "vhost01-d001"}, 409, "already_assigned"),
        ("Planung", {"user": "felix"}, 409, "already_assigned"),
        ("Finanzen", {"user": "maria"}, 409, "not_persistent"),
        ("Bauplanung", {"user": "maria"}, 409, "not_entitled"),
        ("Gibtsnicht", {"user": "maria"}, 404, "unknown_pool"),
        ("Planung", {"user": "maria", "seat": "1"}, 422, "invalid_request"),
    ]
    for pool, body, status, error in cases:
        response = await client.post(f"{URL}/{pool}/assignments", json=body, headers=chef)
        assert (response.status_code, response.json()["error"]) == (status, error), body
    assert await owners(runtime) == before
    # felix uses his desktop: it cannot be taken from him meanwhile.
    assert (await ask(client, felix, pool="Planung")).status_code == 201
    busy = await client.delete(f"{URL}/Planung/assignments/felix", headers=chef)
    assert (busy.status_code, busy.json()["error"]) == (409, "session_open")
    assert await owners(runtime) == before


async def test_a_desktop_in_another_users_session_is_not_assigned(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await persistent_fleet(runtime, client, desktops=1)
    await staff(runtime, "maria")
    jan = await staff(runtime, "jan")
    assert (await ask(client, jan, pool="Planung")).status_code == 201
    # An administrator took the desktop from jan while he works (a direct change
    # of the store, as a repair would): it still may not go to maria.
    async with runtime.db.write() as s:
        desktop = (await s.scalars(select(Desktop))).one()
        desktop.assigned_user_id = None
    with pytest.raises(Conflict) as busy:
        await pools.assign_desktop(runtime, "Planung", "maria", "vhost01-d000", "test")
    assert busy.value.code == "desktop_busy"
    with pytest.raises(Conflict) as none_free:
        await pools.assign_desktop(runtime, "Planung", "maria", None, "test")
    assert none_free.value.code == "no_free_desktop"
    assert await owners(runtime) == {"vhost01-d000": None}


async def test_a_desktop_name_on_two_hosts_needs_the_host(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime, "Planung", type=PoolType.PERSISTENT)
    for host in ("vhost01", "vhost02"):
        await reporting_host(runtime, client, 1, pool="Planung", name=host, prefix="pc")
    await staff(runtime, "maria")
    with pytest.raises(InvalidInput) as ambiguous:
        await pools.assign_desktop(runtime, "Planung", "maria", "pc000", "test")
    assert "vhost01, vhost02" in ambiguous.value.message
    done = await pools.assign_desktop(runtime, "Planung", "maria", "vhost02/pc000", "test")
    assert (done.host, done.desktop) == ("vhost02", "pc000")
    with pytest.raises(NotFound):
        await pools.unassign_desktop(runtime, "Planung", "ghost", "test")


async def test_only_administrators_manage_pools(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await persistent_fleet(runtime, client, desktops=1)
    maria = await staff(runtime, "maria")
    chef = await admin(runtime)
    assert (await client.get(URL)).status_code == 401
    assert (await client.get(URL, headers=maria)).status_code == 403
    before = (await pools.list_all(runtime), await owners(runtime))
    attempts = [
        ("PATCH", f"{URL}/Planung", {"max_sessions": 1}),
        ("POST", f"{URL}/Planung/entitlements", {"kind": "user", "value": "maria"}),
        ("POST", f"{URL}/Planung/assignments", {"user": "maria"}),
    ]
    for method, url, body in attempts:
        as_staff = await client.request(method, url, json=body, headers=maria)
        assert as_staff.status_code == 403 and as_staff.json()["error"] == "forbidden"
        no_csrf = await client.request(method, url, json=body, headers={"cookie": chef["cookie"]})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf_failed"
    await pools.entitle(runtime, "Planung", "user", "maria", "test")
    await pools.assign_desktop(runtime, "Planung", "maria", None, "test")
    before = (await pools.list_all(runtime), await owners(runtime))
    for url in (f"{URL}/Planung/entitlements/user/maria", f"{URL}/Planung/assignments/maria"):
        assert (await client.delete(url, headers=maria)).status_code == 403
        assert (await client.delete(url, headers={"cookie": chef["cookie"]})).status_code == 403
    assert (await pools.list_all(runtime), await owners(runtime)) == before
