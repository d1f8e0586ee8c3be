"""TOTP enrolment: self-service, recovery codes, admin reset."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.auth import enrolment
from broker.clock import FakeClock
from broker.runtime import Runtime
from broker.store.tables import RecoveryCode, User
from broker.users import service as users
from tests.support.accounts import PASSWORD, add_user, code_now, login
from tests.support.audit import audit_events
from tests.support.totp import oathtool_code


async def start_enrolment(runtime: Runtime, client: httpx.AsyncClient) -> str:
    await add_user(runtime, enrol=False)
    response = await login(client, "maria", code="123456")
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "totp_enrollment_required"
    assert "set-cookie" not in response.headers
    token: str = body["enrolment_token"]
    return token


async def enrol(runtime: Runtime, client: httpx.AsyncClient) -> tuple[str, list[str]]:
    token = await start_enrolment(runtime, client)
    setup = (await client.post("/api/v1/auth/totp/enroll", json={"enrolment_token": token})).json()
    code = oathtool_code(setup["secret"], runtime.clock.now())
    confirmed = await client.post(
        "/api/v1/auth/totp/confirm", json={"enrolment_token": token, "code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    return setup["secret"], confirmed.json()["recovery_codes"]


async def test_self_service_enrolment(runtime: Runtime, client: httpx.AsyncClient) -> None:
    token = await start_enrolment(runtime, client)
    response = await client.post("/api/v1/auth/totp/enroll", json={"enrolment_token": token})
    assert response.status_code == 200
    setup: dict[str, Any] = response.json()
    assert re.fullmatch(r"[A-Z2-7]{32}", setup["secret"])
    assert setup["otpauth_uri"].startswith("otpauth://totp/VDI:maria?secret=" + setup["secret"])
    assert setup["qr_svg"].lstrip().startswith("<svg")
    assert "viewBox=" in setup["qr_svg"] and "width=" not in setup["qr_svg"]  # it scales
    assert response.headers["cache-control"] == "no-store"

    code = code_now(runtime, setup["secret"])
    confirmed = await client.post(
        "/api/v1/auth/totp/confirm", json={"enrolment_token": token, "code": code}
    )
    assert confirmed.status_code == 200
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    # The confirming code cannot also be used to log in ...
    assert (await login(client, "maria", code=code)).status_code == 401
    # ... but the next one can.
    runtime.clock.advance(30)  # type: ignore[attr-defined]
    assert (
        await login(client, "maria", code=code_now(runtime, setup["secret"]))
    ).status_code == 200
    # The token is spent.
    again = await client.post("/api/v1/auth/totp/enroll", json={"enrolment_token": token})
    assert again.status_code == 401


async def test_wrong_confirmation_code_and_attempt_limit(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    token = await start_enrolment(runtime, client)
    setup = (await client.post("/api/v1/auth/totp/enroll", json={"enrolment_token": token})).json()
    right = code_now(runtime, setup["secret"])
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(5):
        r = await client.post(
            "/api/v1/auth/totp/confirm", json={"enrolment_token": token, "code": wrong}
        )
        assert r.status_code == 422 and r.json()["error"] == "invalid_code"
    r = await client.post(
        "/api/v1/auth/totp/confirm", json={"enrolment_token": token, "code": right}
    )
    assert r.status_code == 401  # the enrolment died; log in again
    async with runtime.db.read() as s:
        assert (await s.scalar(select(User.totp_secret).where(User.name == "maria"))) is None
    # Guesses at the second factor are audited, as at the login; never the code.
    failed = await audit_events(runtime, "totp_enrolment_failed")
    assert [(e.username, e.result) for e in failed] == [("maria", "invalid_code")] * 5
    assert all(wrong not in str(e.detail) and right not in str(e.detail) for e in failed)


async def test_enrolment_token_expires(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    token = await start_enrolment(runtime, client)
    clock.advance(runtime.settings.enrolment_token_ttl_s + 1)
    r = await client.post("/api/v1/auth/totp/enroll", json={"enrolment_token": token})
    assert r.status_code == 401
    assert r.json()["error"] == "enrolment_invalid"


async def test_malformed_enrolment_requests_are_422(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    token = await start_enrolment(runtime, client)
    for body in (
        {"enrolment_token": token, "code": "１２３４５６"},
        {"enrolment_token": token},
        {"enrolment_token": "short", "code": "123456"},
    ):
        assert (await client.post("/api/v1/auth/totp/confirm", json=body)).status_code == 422


async def test_recovery_code_works_once(runtime: Runtime, client: httpx.AsyncClient) -> None:
    _, codes = await enrol(runtime, client)
    ok = await login(client, "maria", recovery_code=codes[0])
    assert ok.status_code == 200
    again = await login(client, "maria", recovery_code=codes[0])
    assert again.status_code == 401
    # Typed without the dash and in capitals is the same code.
    other = codes[1].replace("-", "").upper()
    assert (await login(client, "maria", recovery_code=other)).status_code == 200
    async with runtime.db.read() as s:
        stored = (await s.scalars(select(RecoveryCode.code_hash))).all()
    assert all(c.replace("-", "") not in h for c in codes for h in stored)


async def test_admin_reset_forces_re_enrolment(runtime: Runtime, client: httpx.AsyncClient) -> None:
    secret = await add_user(runtime)
    assert (await login(client, "maria", code=code_now(runtime, secret or ""))).status_code == 200
    await users.reset_totp(runtime, "maria", "admin")
    assert (await client.get("/api/v1/me")).status_code == 401  # logged out
    runtime.clock.advance(30)  # type: ignore[attr-defined]
    response = await login(client, "maria", PASSWORD, code_now(runtime, secret or ""))
    assert response.status_code == 403
    assert response.json()["error"] == "totp_enrollment_required"


async def test_an_admin_reset_does_not_revive_an_old_enrolment(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """An enrolment left unfinished is dead while the account has a secret; after a
    reset the account has none again, and that old token must not come back."""
    token = await start_enrolment(runtime, client)  # left unfinished
    await enrolment.admin_enrol(runtime, "maria", "admin", replace=False)
    await users.reset_totp(runtime, "maria", "admin")
    revived = await client.post("/api/v1/auth/totp/enroll", json={"enrolment_token": token})
    assert revived.status_code == 401, revived.text
    assert revived.json()["error"] == "enrolment_invalid"


async def test_a_lock_ends_an_open_enrolment_for_good(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A token from before an admin's lock must not bind an authenticator after
    the unlock: whoever got it (with a leaked password) would own the account."""
    token = await start_enrolment(runtime, client)  # left unfinished
    await users.set_locked(runtime, "maria", True, "admin")
    await users.set_locked(runtime, "maria", False, "admin")
    for path in ("/api/v1/auth/totp/enroll", "/api/v1/auth/totp/confirm"):
        body = {"enrolment_token": token} | ({"code": "123456"} if "confirm" in path else {})
        revived = await client.post(path, json=body)
        assert revived.status_code == 401, revived.text
        assert revived.json()["error"] == "enrolment_invalid"
    async with runtime.db.read() as s:
        assert (await s.scalar(select(User.totp_secret).where(User.name == "maria"))) is None


async def open_enrolment(runtime: Runtime, name: str) -> tuple[int, str, str]:
    """A user without TOTP and an open enrolment with its secret made, as after a
    right password and the set-up page: (user id, enrolment token, secret)."""
    await users.add(runtime, users.NewUser(name, "Finanzen"), PASSWORD, "test")
    async with runtime.db.write() as s:
        user_id = (await s.scalars(select(User.id).where(User.name == name))).one()
        token = enrolment.start(s, user_id, runtime.clock.now(), 600)
    setup = await enrolment.create_secret(runtime, token)
    return user_id, token, setup.secret


async def test_a_confirm_and_a_cancel_of_one_enrolment_do_not_both_win(runtime: Runtime) -> None:
    """Sent at the same moment (a double click, two tabs), either the set-up is
    confirmed and nothing is cancelled, or it is cancelled and the account stays
    without a secret: never an account enrolled by an enrolment audited as
    cancelled. On PostgreSQL both used to pass the check of the enrolment before
    either wrote it."""
    for i in range(6):
        name = f"race{i}"
        _, token, secret = await open_enrolment(runtime, name)
        code = code_now(runtime, secret)
        confirmed, cancelled = await asyncio.gather(
            enrolment.confirm(runtime, token, code, None),
            enrolment.cancel(runtime, token, None),
            return_exceptions=True,
        )
        assert cancelled is None
        async with runtime.db.read() as s:
            stored = (await s.scalars(select(User.totp_secret).where(User.name == name))).one()
        cancel_audits = [
            e for e in await audit_events(runtime, "totp_enrolment_cancelled") if e.username == name
        ]
        if isinstance(confirmed, list):
            assert stored is not None
            assert cancel_audits == [], f"attempt {i}: confirmed and cancelled"
        else:
            assert isinstance(confirmed, enrolment.EnrolmentInvalid), confirmed
            assert stored is None
            assert len(cancel_audits) == 1


async def test_parallel_wrong_codes_get_no_more_tries_than_one_after_another(
    runtime: Runtime,
) -> None:
    """Each confirmation counts before its code is checked, in one conditional
    UPDATE: codes sent all at once (on PostgreSQL, each request read the count
    before any wrote it back) get the same five tries as codes sent in turn."""
    user_id, token, secret = await open_enrolment(runtime, "maria")
    right = code_now(runtime, secret)
    wrong = [f"{n:06d}" for n in range(12) if f"{n:06d}" != right][:10]
    answers = await asyncio.gather(
        *(enrolment.confirm(runtime, token, code, None) for code in wrong), return_exceptions=True
    )
    tried = [a for a in answers if getattr(a, "code", None) == "invalid_code"]
    refused = [a for a in answers if isinstance(a, enrolment.EnrolmentInvalid)]
    assert len(tried) == enrolment.MAX_CONFIRM_ATTEMPTS, answers
    assert len(refused) == len(wrong) - enrolment.MAX_CONFIRM_ATTEMPTS, answers
    # The enrolment is spent: not even the right code opens it now.
    with pytest.raises(enrolment.EnrolmentInvalid):
        await enrolment.confirm(runtime, token, right, None)
    async with runtime.db.read() as s:
        assert (await s.scalar(select(User.totp_secret).where(User.id == user_id))) is None
