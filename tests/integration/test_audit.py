"""The audit log: what is recorded, escaping, the admin API, and no secrets anywhere."""

from __future__ import annotations

import sqlite3
import subprocess

import httpx
from sqlalchemy import select, text

from broker.audit import log as audit
from broker.domain import Role
from broker.runtime import Runtime
from broker.store.tables import AuditEvent
from tests.support.accounts import PASSWORD, add_user, code_now, login


async def admin_client(runtime: Runtime, client: httpx.AsyncClient) -> str:
    secret = await add_user(runtime, "root.admin", department="IT", role=Role.ADMIN)
    response = await login(client, "root.admin", code=code_now(runtime, secret or ""))
    assert response.status_code == 200
    return str(response.json()["csrf_token"])


async def test_login_attempts_are_audited_with_name_as_typed_address_and_agent(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime)
    await client.post(
        "/api/v1/auth/login",
        json={"username": "MARIA", "password": "wrong password!", "code": "123456"},
        headers={"user-agent": "Mozilla/5.0 (Tablet)"},
    )
    async with runtime.db.read() as s:
        event = (await s.scalars(select(AuditEvent).where(AuditEvent.event == "login"))).one()
    assert event.result == "invalid_credentials"
    assert event.username == "MARIA"
    assert event.source_ip == "192.0.2.10"
    assert event.user_agent == "Mozilla/5.0 (Tablet)"
    assert event.at.tzinfo is not None and event.at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert event.detail == {"reason": "wrong_password"}


async def test_control_characters_are_escaped(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await client.post(
        "/api/v1/auth/login",
        json={
            "username": "eve\n2026-01-01 login success admin",
            "password": "whatever!",
            "code": "123456",
        },
        headers={"user-agent": "bad\x1b[2Jagent"},
    )
    async with runtime.db.read() as s:
        event = (await s.scalars(select(AuditEvent))).one()
    assert event.username == "eve\\u000a2026-01-01 login success admin"
    assert event.user_agent == "bad\\u001b[2Jagent"


async def test_admin_audit_api_filters_and_pages(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await admin_client(runtime, client)
    for i in range(7):
        await login(client, f"ghost{i}", "wrong password!", "123456")
    page1 = await client.get(
        "/api/v1/admin/audit",
        params={"event": "login", "result": "invalid_credentials", "limit": 4},
    )
    assert page1.status_code == 200
    body = page1.json()
    assert [e["username"] for e in body["items"]] == ["ghost6", "ghost5", "ghost4", "ghost3"]
    page2 = await client.get(
        "/api/v1/admin/audit",
        params={
            "event": "login",
            "result": "invalid_credentials",
            "limit": 4,
            "before_id": body["next_before_id"],
        },
    )
    names = [e["username"] for e in page2.json()["items"]]
    assert names == ["ghost2", "ghost1", "ghost0"]
    assert page2.json()["next_before_id"] is None
    one = await client.get("/api/v1/admin/audit", params={"username": "ghost3"})
    assert [e["username"] for e in one.json()["items"]] == ["ghost3"]
    for bad_params in (
        {"limit": 0},
        {"before_id": 2**63},
        {"before_id": 10**20},
        # Numbers as pydantic alone would read them, not as they are written.
        {"limit": "4.0"},
        {"before_id": "+3"},
        # Valid times whose UTC lies outside the calendar.
        {"since": "0001-01-01T00:00:00+01:00"},
        {"until": "9999-12-31T23:59:59-05:00"},
    ):
        bad = await client.get("/api/v1/admin/audit", params=bad_params)
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"


async def test_the_user_filter_matches_any_case_and_odd_text_matches_nothing(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Logins record the name as typed; an administrator looking for bob means
    every spelling of it. A control character in a filter is text like any other
    (PostgreSQL refuses a NUL in a query: that must not be a 500)."""
    await admin_client(runtime, client)
    for typed in ("BOB", "bob", "Bob", "bobby", "eve\x1bx"):
        await login(client, typed, "wrong password!", "123456")
    for asked in ("bob", "BOB", "bOb"):
        found = await client.get("/api/v1/admin/audit", params={"username": asked})
        assert found.status_code == 200
        assert [e["username"] for e in found.json()["items"]] == ["Bob", "bob", "BOB"]
    # Found as it was typed, control character and all.
    odd = await client.get("/api/v1/admin/audit", params={"username": "EVE\x1bX"})
    assert [e["username"] for e in odd.json()["items"]] == ["eve\\u001bx"]
    for params in ({"event": "\x00"}, {"result": "login\x00"}, {"username": "bob\x00"}):
        none = await client.get("/api/v1/admin/audit", params=params)
        assert none.status_code == 200 and none.json()["items"] == [], params


async def test_the_user_filter_reads_its_index(runtime: Runtime) -> None:
    """The filter's lower(username) is the index's expression: a name with a long
    history is read from the index, newest first, not by scanning the log."""
    stmt = audit.statement(audit.AuditQuery(username="BOB", limit=20))
    sql = str(
        stmt.compile(dialect=runtime.db.engine.dialect, compile_kwargs={"literal_binds": True})
    )
    async with runtime.db.read() as s:
        if runtime.db.is_sqlite:
            plan = (await s.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
        else:
            # An empty table is read fastest whole; ask what it would do otherwise.
            await s.execute(text("SET LOCAL enable_seqscan = off"))
            plan = (await s.execute(text(f"EXPLAIN {sql}"))).all()
    shown = "\n".join(str(row) for row in plan)
    assert "ix_audit_events_username_lower" in shown, shown
    assert "TEMP B-TREE" not in shown and "Sort" not in shown, shown  # no sort step


async def test_audit_api_is_for_admins_only(runtime: Runtime, client: httpx.AsyncClient) -> None:
    secret = await add_user(runtime)
    await login(client, "maria", code=code_now(runtime, secret or ""))
    response = await client.get("/api/v1/admin/audit")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_no_secret_in_a_database_dump(runtime: Runtime, client: httpx.AsyncClient) -> None:
    """Log in, enrol, use a recovery code; then no secret may be found in a dump."""
    from tests.integration.test_enrolment import enrol

    secret, codes = await enrol(runtime, client)
    runtime.clock.advance(30)  # type: ignore[attr-defined]
    code = code_now(runtime, secret)
    response = await login(client, "maria", code=code)
    assert response.status_code == 200
    csrf = response.json()["csrf_token"]
    cookie = client.cookies["__Host-vdi_session"]
    await login(client, "maria", recovery_code=codes[0])
    await login(client, "maria", "wrong password!", "654321")

    url = runtime.db.url
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as conn:
            dump = "\n".join(conn.iterdump())
    else:
        dump = subprocess.run(
            ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", str(url.database)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert "maria" in dump  # the dump is real
    # (The 6-digit code itself is left out: it could occur by chance in a timestamp.)
    for needle in [
        PASSWORD,
        "wrong password!",
        secret,
        secret.lower(),
        cookie,
        csrf,
        *codes,
        *(c.replace("-", "") for c in codes),
    ]:
        assert needle not in dump, f"secret {needle[:4]}... found in the dump"
