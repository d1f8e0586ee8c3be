"""Login against a real OpenLDAP server (slapd started by the test), on SQLite and
PostgreSQL: search-then-bind, group mapping, lockout, local users alongside,
LDAPS and StartTLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from broker.app import create_app
from broker.clock import FakeClock
from broker.runtime import Runtime, open_runtime
from broker.store.tables import AuditEvent, LoginFailure, User
from tests.conftest import make_settings
from tests.support.accounts import add_user, code_now, login
from tests.support.slapd import SERVICE_DN, SERVICE_PASSWORD, Person, Slapd, group_dn

PEOPLE = [
    Person("anna", "Anna-Passwort-2026", ("vdi-staff", "krisenstab"), "Bürgerbüro"),
    Person("bert", "Bert-Passwort-2026", ("vdi-staff", "aussendienst", "dept-bauhof")),
    Person("carla", "Carla-Passwort-2026", ("vdi-admins",), "IT"),
    Person("dieter", "Dieter-Passwort-2026", ("kantine",), "Kantine"),
]
GROUPS = ["vdi-staff", "vdi-admins", "aussendienst", "krisenstab", "dept-bauhof", "kantine"]


@pytest.fixture(scope="module")
def directory() -> Iterator[Slapd]:
    slapd = Slapd(PEOPLE, GROUPS)
    try:
        yield slapd
    finally:
        slapd.close()


def ldap_settings(directory: Slapd, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    secret = tmp_path / "ldap-bind"
    secret.write_text(SERVICE_PASSWORD)
    values: dict[str, Any] = {
        "url": directory.url,
        "bind_dn": SERVICE_DN,
        "bind_password_file": str(secret),
        "user_base": "ou=people,dc=musterstadt,dc=de",
        "user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
        "staff_groups": [group_dn("vdi-staff")],
        "admin_groups": [group_dn("vdi-admins")],
        "field_groups": [group_dn("aussendienst")],
        "priority_groups": {group_dn("krisenstab"): "Krisenstab"},
        "team_groups": {group_dn("krisenstab"): "Stab"},
        "department_groups": {group_dn("dept-bauhof"): "Bauhof"},
    }
    values.update(overrides)
    return values


async def runtime_with(
    tmp_path: Path, db_url: str, clock: FakeClock, ldap: dict[str, Any]
) -> Runtime:
    return await open_runtime(make_settings(tmp_path, db_url, ldap=ldap), clock=clock)


@pytest.fixture
async def rt(
    tmp_path: Path, db_url: str, clock: FakeClock, directory: Slapd
) -> AsyncIterator[Runtime]:
    runtime = await runtime_with(tmp_path, db_url, clock, ldap_settings(directory, tmp_path))
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
async def web(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(rt.settings, runtime=rt)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def row(rt: Runtime, name: str) -> User | None:
    async with rt.db.read() as s:
        return await s.scalar(select(User).where(User.name == name))


async def enrol(web: httpx.AsyncClient, rt: Runtime, name: str, password: str) -> str:
    first = await login(web, name, password, "123456")
    assert first.status_code == 403, first.text
    token = first.json()["enrolment_token"]
    secret = (await web.post("/api/v1/auth/totp/enroll", json={"enrolment_token": token})).json()[
        "secret"
    ]
    confirmed = await web.post(
        "/api/v1/auth/totp/confirm", json={"enrolment_token": token, "code": code_now(rt, secret)}
    )
    assert confirmed.status_code == 200
    rt.clock.advance(30)  # type: ignore[attr-defined]
    return str(secret)


async def test_directory_user_logs_in_with_broker_totp(web: httpx.AsyncClient, rt: Runtime) -> None:
    secret = await enrol(web, rt, "anna", "Anna-Passwort-2026")
    user = await row(rt, "anna")
    assert user is not None
    assert (user.auth_source, user.password_hash) == ("ldap", None)
    assert (user.department, user.role, user.work_mode) == ("Bürgerbüro", "staff", "home")
    assert (user.priority_class, user.team) == ("Krisenstab", "Stab")
    ok = await login(web, "Anna", "Anna-Passwort-2026", code_now(rt, secret))
    assert ok.status_code == 200, ok.text
    assert ok.json()["user"]["department"] == "Bürgerbüro"


async def test_groups_decide_role_work_mode_and_department(
    web: httpx.AsyncClient, rt: Runtime
) -> None:
    await enrol(web, rt, "bert", "Bert-Passwort-2026")
    bert = await row(rt, "bert")
    assert bert is not None and (bert.department, bert.work_mode) == ("Bauhof", "field")
    await enrol(web, rt, "carla", "Carla-Passwort-2026")
    carla = await row(rt, "carla")
    assert carla is not None and carla.role == "admin"


async def test_wrong_password_unknown_user_and_outsiders_look_alike(
    web: httpx.AsyncClient, rt: Runtime
) -> None:
    wrong = await login(web, "anna", "not her password", "123456")
    unknown = await login(web, "nobody", "whatever at all", "123456")
    outsider = await login(web, "dieter", "Dieter-Passwort-2026", "123456")
    injected = await login(web, "*)(uid=*", "whatever at all", "123456")
    for r in (wrong, unknown, outsider, injected):
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_credentials"
    assert await row(rt, "dieter") is None
    async with rt.db.read() as s:
        reasons = [
            e.detail
            for e in (await s.scalars(select(AuditEvent).where(AuditEvent.event == "login"))).all()
        ]
    assert {"reason": "directory_not_in_allowed_groups"} in reasons


async def test_lockout_holds_for_directory_users(web: httpx.AsyncClient, rt: Runtime) -> None:
    secret = await enrol(web, rt, "anna", "Anna-Passwort-2026")
    for _ in range(5):
        assert (await login(web, "anna", "not her password", "123456")).status_code == 401
    locked = await login(web, "anna", "Anna-Passwort-2026", code_now(rt, secret))
    assert locked.status_code == 423


async def test_lockout_holds_before_a_directory_users_first_login(
    web: httpx.AsyncClient, rt: Runtime
) -> None:
    """No local row yet: the name is locked all the same, so the directory
    password cannot be guessed without limit and then used to set up TOTP."""
    for _ in range(5):
        assert (await login(web, "anna", "not her password", "123456")).status_code == 401
    locked = await login(web, "anna", "Anna-Passwort-2026", "123456")
    assert locked.status_code == 423 and "enrolment_token" not in locked.text
    assert await row(rt, "anna") is None
    rt.clock.advance(rt.settings.lockout_base_delay_s + 1)  # type: ignore[attr-defined]
    await enrol(web, rt, "anna", "Anna-Passwort-2026")
    async with rt.db.read() as s:  # her first login cleared the count
        assert await s.scalar(select(func.count()).select_from(LoginFailure)) == 0


async def test_local_users_still_log_in(web: httpx.AsyncClient, rt: Runtime) -> None:
    secret = await add_user(rt, "lokal", department="IT")
    ok = await login(web, "lokal", code=code_now(rt, secret or ""))
    assert ok.status_code == 200


async def test_directory_changes_are_picked_up_at_the_next_login(
    web: httpx.AsyncClient, rt: Runtime, directory: Slapd
) -> None:
    secret = await enrol(web, rt, "carla", "Carla-Passwort-2026")
    directory.modify(
        f"dn: {group_dn('vdi-admins')}\nchangetype: modify\ndelete: member\n"
        f"member: uid=carla,ou=people,dc=musterstadt,dc=de\n-\nadd: member\n"
        f"member: cn=admin,dc=musterstadt,dc=de\n\n"
        f"dn: {group_dn('vdi-staff')}\nchangetype: modify\nadd: member\n"
        f"member: uid=carla,ou=people,dc=musterstadt,dc=de\n"
    )
    try:
        ok = await login(web, "carla", "Carla-Passwort-2026", code_now(rt, secret))
        assert ok.status_code == 200
        carla = await row(rt, "carla")
        assert carla is not None and carla.role == "staff"
    finally:
        # (groupOfNames needs a member, hence the placeholder while carla is out.)
        directory.modify(
            f"dn: {group_dn('vdi-admins')}\nchangetype: modify\nadd: member\n"
            f"member: uid=carla,ou=people,dc=musterstadt,dc=de\n-\ndelete: member\n"
            f"member: cn=admin,dc=musterstadt,dc=de\n\n"
            f"dn: {group_dn('vdi-staff')}\nchangetype: modify\ndelete: member\n"
            f"member: uid=carla,ou=people,dc=musterstadt,dc=de\n"
        )


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
async def test_ldaps_and_start_tls_with_the_ca(
    tmp_path: Path, sqlite_url: str, clock: FakeClock, directory: Slapd, mode: str
) -> None:
    url = directory.ldaps_url if mode == "ldaps" else directory.url
    good = ldap_settings(
        directory, tmp_path, url=url, start_tls=mode == "start_tls", ca_file=str(directory.ca)
    )
    rt = await runtime_with(tmp_path, sqlite_url, clock, good)
    try:
        assert rt.directory is not None
        found = await rt.directory.authenticate("anna", "Anna-Passwort-2026")
        assert found is not None and found.dn.startswith("uid=anna,")
    finally:
        await rt.close()
    # A certificate from another CA is refused: no login, nothing learnt.
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes((Path("/etc/ssl/certs/ca-certificates.crt")).read_bytes())
    bad = ldap_settings(
        directory, tmp_path, url=url, start_tls=mode == "start_tls", ca_file=str(other_ca)
    )
    rt = await runtime_with(
        tmp_path / "bad", sqlite_url.replace("vdi.sqlite3", "bad.sqlite3"), clock, bad
    )
    try:
        assert rt.directory is not None
        with pytest.raises(Exception):  # noqa: B017 - ldap3 raises its own TLS errors
            await rt.directory.authenticate("anna", "Anna-Passwort-2026")
    finally:
        await rt.close()
