"""Policies set through the service and the admin API, on SQLite and PostgreSQL:
department caps, telework schedules, priority classes; bad input changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.domain import Role
from broker.errors import Conflict, InvalidInput, NotFound
from broker.policy import store
from broker.runtime import Runtime
from broker.store.tables import AuditEvent
from tests.support.fleet import staff

URL = "/api/v1/admin/policies"


async def admin(rt: Runtime) -> dict[str, str]:
    return await staff(rt, "chef", department="IT", role=Role.ADMIN)


async def policy_events(rt: Runtime) -> list[tuple[str | None, dict[str, Any] | None]]:
    async with rt.db.read() as s:
        rows = (
            await s.scalars(
                select(AuditEvent)
                .where(AuditEvent.event == "policy_changed")
                .order_by(AuditEvent.id)
            )
        ).all()
    return [(r.result, r.detail) for r in rows]


async def test_department_cap_set_list_remove(runtime: Runtime, client: httpx.AsyncClient) -> None:
    chef = await admin(runtime)
    for name in ("a", "b", "c", "d", "e"):
        await staff(runtime, name, department="Bauamt")
    put = await client.put(f"{URL}/departments/Bauamt", json={"remote_cap": 2}, headers=chef)
    assert put.status_code == 200, put.text
    assert put.json()["remote_cap"] == 2 and put.json()["limit"] == 2
    share = await client.put(f"{URL}/departments/Bauamt", json={"remote_share": 0.5}, headers=chef)
    assert (share.json()["remote_cap"], share.json()["remote_share"]) == (None, 0.5)
    assert (share.json()["staff"], share.json()["limit"]) == (5, 2)  # rounded down
    listed = (await client.get(URL, headers=chef)).json()
    assert set(listed) == {"departments", "schedules", "priority_classes"}
    assert [(d["department"], d["limit"]) for d in listed["departments"]] == [("Bauamt", 2)]

    removed = await client.put(
        f"{URL}/departments/Bauamt", json={"remote_cap": None, "remote_share": None}, headers=chef
    )
    assert removed.json() == {"department": "Bauamt", "remote_cap": None, "remote_share": None}
    assert await store.list_department_caps(runtime) == []
    assert [r for r, _ in await policy_events(runtime)] == [
        "department_cap_set",
        "department_cap_set",
        "department_cap_removed",
    ]
    assert (await policy_events(runtime))[0][1] == {
        "department": "Bauamt",
        "remote_cap": 2,
        "remote_share": None,
    }
    # Removing what is not there changes nothing and records nothing.
    assert (
        await store.set_department_cap(
            runtime, "Bauamt", max_sessions=None, share=None, actor="test"
        )
        is None
    )
    assert len(await policy_events(runtime)) == 3


@pytest.mark.parametrize(
    ("department", "body"),
    [
        ("Bauamt", {"remote_cap": 2, "remote_share": 0.5}),
        ("Bauamt", {"remote_cap": -1}),
        ("Bauamt", {"remote_cap": "2"}),
        ("Bauamt", {"remote_cap": 2.5}),
        ("Bauamt", {"remote_share": 0}),
        ("Bauamt", {"remote_share": 1.5}),
        ("Bauamt", {"remote_share": "0.5"}),
        ("Bauamt", {"remote_cap": 2, "minimum_presence": 3}),
        ("-Bauamt", {"remote_cap": 2}),
    ],
)
async def test_bad_caps_give_422_and_change_nothing(
    runtime: Runtime, client: httpx.AsyncClient, department: str, body: dict[str, Any]
) -> None:
    chef = await admin(runtime)
    await store.set_department_cap(runtime, "Bauamt", max_sessions=4, share=None, actor="test")
    before = await store.overview(runtime)
    response = await client.put(f"{URL}/departments/{department}", json=body, headers=chef)
    assert response.status_code == 422, response.text
    assert response.json()["error"] in {"invalid_cap", "invalid_request", "invalid_name"}
    assert await store.overview(runtime) == before
    assert len(await policy_events(runtime)) == 1


async def test_schedules_add_list_remove(runtime: Runtime, client: httpx.AsyncClient) -> None:
    chef = await admin(runtime)
    await staff(runtime, "maria", department="Ordnungsamt")
    added = await client.post(
        f"{URL}/schedules",
        json={
            "scope": "department",
            "subject": "Ordnungsamt",
            "days": "Wed,mon-tue",
            "start": "7:00",
            "end": "18:00",
        },
        headers=chef,
    )
    assert added.status_code == 201, added.text
    body = added.json()
    assert {k: body[k] for k in ("scope", "subject", "days", "start", "end")} == {
        "scope": "department",
        "subject": "Ordnungsamt",
        "days": "mon,tue,wed",
        "start": "07:00",
        "end": "18:00",
    }
    weekend = await store.add_schedule(runtime, "user", "MARIA", "sat-sun", "06:00", "24:00", "t")
    listed = (await client.get(URL, headers=chef)).json()["schedules"]
    assert [(s["id"], s["scope"], s["subject"], s["days"], s["end"]) for s in listed] == [
        (body["id"], "department", "Ordnungsamt", "mon,tue,wed", "18:00"),
        (weekend, "user", "maria", "sat,sun", "00:00"),
    ]
    gone = await client.delete(f"{URL}/schedules/{body['id']}", headers=chef)
    assert gone.status_code == 200 and gone.json()["subject"] == "Ordnungsamt"
    again = await client.delete(f"{URL}/schedules/{body['id']}", headers=chef)
    assert again.status_code == 404 and again.json()["error"] == "unknown_schedule"
    huge = await client.delete(f"{URL}/schedules/{10**20}", headers=chef)
    assert huge.status_code == 422 and huge.json()["error"] == "invalid_request"
    # Not a schedule's number as written: nothing is removed, not even weekend's.
    for written in (f"{weekend}.0", f"+{weekend}", f"%20{weekend}", f"{weekend}_0"):
        odd = await client.delete(f"{URL}/schedules/{written}", headers=chef)
        assert (odd.status_code, odd.json()["error"]) == (422, "invalid_request"), written
    assert [s["id"] for s in await store.list_schedules(runtime)] == [weekend]
    assert [r for r, _ in await policy_events(runtime)] == [
        "schedule_added",
        "schedule_added",
        "schedule_removed",
    ]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            {"scope": "team", "subject": "A", "days": "mon", "start": "07:00", "end": "18:00"},
            422,
            "invalid_scope",
        ),
        (
            {"scope": "user", "subject": "nobody", "days": "mon", "start": "07:00", "end": "18:00"},
            422,
            "unknown_user",
        ),
        (
            {
                "scope": "department",
                "subject": "IT",
                "days": "montag",
                "start": "07:00",
                "end": "18:00",
            },
            422,
            "invalid_schedule",
        ),
        (
            {
                "scope": "department",
                "subject": "IT",
                "days": "mon",
                "start": "7 Uhr",
                "end": "18:00",
            },
            422,
            "invalid_schedule",
        ),
        (
            {"scope": "department", "subject": "IT", "days": "mon", "start": "07:00"},
            422,
            "invalid_request",
        ),
        (
            {
                "scope": "department",
                "subject": "IT",
                "days": "mon",
                "start": "07:00",
                "end": "18:00",
                "timezone": "UTC",
            },
            422,
            "invalid_request",
        ),
        # The same window as the one already stored.
        (
            {
                "scope": "department",
                "subject": "IT",
                "days": "mon-fri",
                "start": "7:00",
                "end": "16:00",
            },
            409,
            "exists",
        ),
    ],
)
async def test_bad_schedules_change_nothing(
    runtime: Runtime, client: httpx.AsyncClient, body: dict[str, Any], status: int, error: str
) -> None:
    chef = await admin(runtime)
    await store.add_schedule(runtime, "department", "IT", "mon-fri", "07:00", "16:00", "test")
    before = await store.overview(runtime)
    response = await client.post(f"{URL}/schedules", json=body, headers=chef)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert await store.overview(runtime) == before
    with pytest.raises(NotFound):
        await store.remove_schedule(runtime, 999, "test")
    assert await store.overview(runtime) == before


async def test_priority_classes_add_list_remove(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    chef = await admin(runtime)
    await staff(runtime, "olaf", department="Ordnungsamt", priority_class="Krisenstab")
    created = await client.put(f"{URL}/priority-classes/Krisenstab", headers=chef)
    assert created.status_code == 201 and created.json() == {"name": "Krisenstab", "created": True}
    same = await client.put(f"{URL}/priority-classes/Krisenstab", headers=chef)
    assert same.status_code == 200 and same.json()["created"] is False
    assert await store.add_priority_class(runtime, "Sozialleistungen", "test") is True
    listed = (await client.get(URL, headers=chef)).json()["priority_classes"]
    assert [(c["name"], c["users"]) for c in listed] == [("Krisenstab", 1), ("Sozialleistungen", 0)]
    removed = await client.delete(f"{URL}/priority-classes/Krisenstab", headers=chef)
    assert removed.status_code == 200
    again = await client.delete(f"{URL}/priority-classes/Krisenstab", headers=chef)
    assert again.status_code == 404 and again.json()["error"] == "unknown_priority_class"
    before = await store.overview(runtime)
    bad = await client.put(f"{URL}/priority-classes/%20", headers=chef)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_name"
    assert await store.overview(runtime) == before
    assert [c["name"] for c in before["priority_classes"]] == ["Sozialleistungen"]
    assert [r for r, _ in await policy_events(runtime)] == [
        "priority_class_added",
        "priority_class_added",
        "priority_class_removed",
    ]


async def test_service_errors_are_domain_errors(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput):
        await store.set_department_cap(runtime, "Bauamt", max_sessions=1, share=0.1, actor="t")
    with pytest.raises(InvalidInput):
        await store.add_schedule(runtime, "user", "ghost", "mon", "07:00", "08:00", "t")
    await store.add_schedule(runtime, "department", "Bauamt", "mon", "07:00", "08:00", "t")
    with pytest.raises(Conflict):
        await store.add_schedule(runtime, "department", "Bauamt", "mon", "7:00", "8:00", "t")
    with pytest.raises(NotFound):
        await store.remove_priority_class(runtime, "Krisenstab", "t")
    # Ids no column holds (`vdi-broker policy schedule remove` takes any 64-bit
    # number): before, a driver error and a traceback on either database.
    for schedule_id in (0, -1, 2**31, 2**63 - 1, 2**63):
        with pytest.raises(NotFound):
            await store.remove_schedule(runtime, schedule_id, "t")
    assert len(await store.list_schedules(runtime)) == 1
    assert await store.list_department_caps(runtime) == []
    assert await store.list_priority_classes(runtime) == []


async def test_only_administrators_change_policies(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    maria = await staff(runtime, "maria")
    chef = await admin(runtime)
    anonymous = await client.get(URL)
    assert anonymous.status_code == 401
    assert (await client.get(URL, headers=maria)).status_code == 403
    attempts = [
        ("PUT", f"{URL}/departments/Finanzen", {"remote_cap": 1}),
        (
            "POST",
            f"{URL}/schedules",
            {
                "scope": "department",
                "subject": "Finanzen",
                "days": "mon",
                "start": "07:00",
                "end": "09:00",
            },
        ),
        ("PUT", f"{URL}/priority-classes/Krisenstab", None),
    ]
    for method, url, body in attempts:
        as_staff = await client.request(method, url, json=body, headers=maria)
        assert as_staff.status_code == 403 and as_staff.json()["error"] == "forbidden"
        no_csrf = await client.request(method, url, json=body, headers={"cookie": chef["cookie"]})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf_failed"
    assert await store.overview(runtime) == {
        "departments": [],
        "schedules": [],
        "priority_classes": [],
    }
    await store.add_priority_class(runtime, "Krisenstab", "t")
    sid = await store.add_schedule(runtime, "department", "IT", "mon", "07:00", "09:00", "t")
    for url in (f"{URL}/priority-classes/Krisenstab", f"{URL}/schedules/{sid}"):
        assert (await client.delete(url, headers=maria)).status_code == 403
        assert (await client.delete(url, headers={"cookie": chef["cookie"]})).status_code == 403
    assert len((await store.overview(runtime))["schedules"]) == 1
    assert len((await store.overview(runtime))["priority_classes"]) == 1
