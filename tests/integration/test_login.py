"""Password + TOTP login through the real app, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time

import httpx
import pytest
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from sqlalchemy import func, select

from broker.audit.retention import purge
from broker.auth import totp
from broker.clock import FakeClock
from broker.runtime import Runtime
from broker.store.tables import LoginFailure, User, WebSession
from tests.support.accounts import PASSWORD, add_user, code_now, login
from tests.support.audit import audit_events
from tests.support.totp import oathtool_code

INVALID = {"error": "invalid_credentials", "message": "User name, password or code is wrong."}


async def user_row(rt: Runtime, name: str = "maria") -> User:
    async with rt.db.read() as s:
        user = await s.scalar(select(User).where(User.name == name))
    assert user is not None
    return user


async def test_login_with_password_and_oathtool_code(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    assert secret
    response = await login(client, "maria", code=oathtool_code(secret, runtime.clock.now()))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["name"] == "maria"
    assert len(body["csrf_token"]) >= 32
    me = await client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["user"]["department"] == "Finanzen"


async def test_session_cookie_flags(runtime: Runtime, client: httpx.AsyncClient) -> None:
    secret = await add_user(runtime)
    response = await login(client, "maria", code=code_now(runtime, secret or ""))
    cookie = response.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    assert name == "__Host-vdi_session"
    attributes = {a.strip().split("=")[0].lower() for a in rest.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "domain" not in attributes
    assert "path=/" in cookie.lower()
    value = rest.split(";")[0]
    assert len(value) >= 22  # >= 128 bits in URL-safe base64


async def test_cookie_value_is_stored_only_hashed(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    await login(client, "maria", code=code_now(runtime, secret or ""))
    value = client.cookies["__Host-vdi_session"]
    async with runtime.db.read() as s:
        stored = (await s.scalars(select(WebSession.id_hash))).all()
    assert len(stored) == 1
    assert value not in stored[0]


async def test_wrong_password_and_unknown_user_look_the_same(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    code = code_now(runtime, secret or "")
    wrong_pw = await login(client, "maria", "wrong password!", code)
    unknown = await login(client, "nobody", "wrong password!", code)
    wrong_code = await login(client, "maria", PASSWORD, "000000" if code != "000000" else "111111")
    for r in (wrong_pw, unknown, wrong_code):
        assert r.status_code == 401
        assert r.json() == INVALID
        assert "set-cookie" not in r.headers
    assert set(wrong_pw.headers) == set(unknown.headers)


async def test_unknown_user_takes_as_long_as_a_wrong_password(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, enrol=False)

    async def timed(name: str) -> float:
        started = time.perf_counter()
        r = await login(client, name, "wrong password!", "123456")
        assert r.status_code == 401
        return time.perf_counter() - started

    known, unknown = [], []
    for _ in range(4):  # interleaved, so machine noise hits both alike
        known.append(await timed("maria"))
        unknown.append(await timed("nobody"))
    ratio = statistics.median(unknown) / statistics.median(known)
    # Without the dummy verification the unknown user would answer ~20x faster.
    assert 0.5 < ratio < 2.0, (known, unknown)
    # And the failures of an unknown user do not lock anything.
    async with runtime.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"username": "maria", "password": PASSWORD, "code": "１２３４５６"},
        {"username": "maria", "password": PASSWORD, "code": "12345"},
        {"username": "maria", "password": PASSWORD, "code": "1234567"},
        {"username": "maria", "password": PASSWORD, "code": "123456\n"},
        {"username": "maria", "password": PASSWORD, "code": 123456},
        {"username": "maria", "password": PASSWORD},
        {
            "username": "maria",
            "password": PASSWORD,
            "code": "123456",
            "recovery_code": "abcde-fghjk",
        },
        {"username": "", "password": PASSWORD, "code": "123456"},
        {"username": "maria", "password": "x" * 2000, "code": "123456"},
        {"username": "maria", "password": PASSWORD, "code": "123456", "admin": True},
    ],
)
async def test_malformed_requests_give_422_and_change_nothing(
    runtime: Runtime, client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    await add_user(runtime)
    before_user = await user_row(runtime)
    before_audit = len(await audit_events(runtime))
    response = await client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    after_user = await user_row(runtime)
    assert after_user.failed_logins == before_user.failed_logins == 0
    assert after_user.totp_last_step == before_user.totp_last_step
    assert len(await audit_events(runtime)) == before_audit


async def test_non_json_body_is_a_4xx(runtime: Runtime, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        content=b"\xff\x00garbage",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_code_is_accepted_once_then_replay_is_audited(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    code = code_now(runtime, secret or "")
    assert (await login(client, "maria", code=code)).status_code == 200
    replay = await login(client, "maria", code=code)
    assert replay.status_code == 401
    assert replay.json() == INVALID
    replays = await audit_events(runtime, "totp_replay")
    assert [e.username for e in replays] == ["maria"]
    assert runtime.telemetry.logins["replay"] == 1


async def test_twenty_parallel_logins_with_one_code_exactly_one_wins(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    code = code_now(runtime, secret or "")
    responses = await asyncio.gather(*(login(client, "maria", code=code) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    # Exactly one wins; the others are replays, answered like wrong codes (401) or,
    # once five of them count as failures, by the lockout (423).
    assert statuses.count(200) == 1, statuses
    assert set(statuses) - {200} <= {401, 423}, statuses
    user = await user_row(runtime)
    assert user.totp_last_step == totp.step_at(runtime.clock.now().timestamp())
    assert len(await audit_events(runtime, "totp_replay")) == statuses.count(401)


async def test_previous_step_accepted_older_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    too_old = code_now(runtime, secret or "", steps_back=2)
    previous = code_now(runtime, secret or "", steps_back=1)
    if too_old != previous:
        assert (await login(client, "maria", code=too_old)).status_code == 401
    assert (await login(client, "maria", code=previous)).status_code == 200


async def test_once_a_step_is_used_the_older_step_is_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    current = code_now(runtime, secret or "")
    previous = code_now(runtime, secret or "", steps_back=1)
    assert (await login(client, "maria", code=current)).status_code == 200
    if previous != current:
        assert (await login(client, "maria", code=previous)).status_code == 401


async def test_lockout_after_five_failures_with_retry_after_and_growing_delay(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret = await add_user(runtime)
    for _ in range(5):
        assert (await login(client, "maria", "wrong password!", "123456")).status_code == 401
    locked = await login(client, "maria", code=code_now(runtime, secret or ""))
    assert locked.status_code == 423
    assert locked.json()["error"] == "locked"
    assert int(locked.headers["retry-after"]) == runtime.settings.lockout_base_delay_s
    assert len(await audit_events(runtime, "account_locked")) == 1

    clock.advance(runtime.settings.lockout_base_delay_s + 1)
    assert (await login(client, "maria", "wrong again!!", "123456")).status_code == 401
    second = await login(client, "maria", code=code_now(runtime, secret or ""))
    assert second.status_code == 423
    assert int(second.headers["retry-after"]) == 2 * runtime.settings.lockout_base_delay_s


async def test_an_unknown_name_locks_like_an_account(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Otherwise the 423 after five failures would tell which names exist."""
    await add_user(runtime)

    async def six_failures(name: str) -> list[tuple[int, str | None]]:
        answers = [await login(client, name, "wrong password!", "123456") for _ in range(6)]
        return [(r.status_code, r.headers.get("retry-after")) for r in answers]

    known, unknown = await six_failures("maria"), await six_failures("Nobody")
    assert known == unknown
    assert [status for status, _ in unknown] == [401] * 5 + [423]
    clock.advance(runtime.settings.lockout_base_delay_s + 1)
    assert (await login(client, "nobody", "wrong password!", "123456")).status_code == 401
    again = await login(client, "nobody", "wrong password!", "123456")
    assert int(again.headers["retry-after"]) == 2 * runtime.settings.lockout_base_delay_s

    async with runtime.db.read() as s:
        rows = (await s.scalars(select(LoginFailure))).all()
        assert await s.scalar(select(func.count()).select_from(User)) == 1
    # One row, for the name without an account, and it does not hold the name.
    assert len(rows) == 1 and rows[0].failures == 6  # a locked answer counts no failure
    assert "nobody" not in rows[0].name_key.lower()
    locks = await audit_events(runtime, "account_locked")
    assert [(e.username, e.detail["account"]) for e in locks] == [
        ("maria", True),
        ("nobody", False),
        ("nobody", False),
    ]

    clock.advance(dt.timedelta(days=1, seconds=1).total_seconds())
    await purge(runtime)
    async with runtime.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(LoginFailure)) == 0


async def test_a_success_resets_the_failure_count(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret = await add_user(runtime)
    for _ in range(4):
        await login(client, "maria", "wrong password!", "123456")
    assert (await user_row(runtime)).failed_logins == 4
    assert (await login(client, "maria", code=code_now(runtime, secret or ""))).status_code == 200
    assert (await user_row(runtime)).failed_logins == 0
    clock.advance(30)
    for _ in range(4):
        assert (await login(client, "maria", "wrong password!", "123456")).status_code == 401
    assert (await login(client, "maria", code=code_now(runtime, secret or ""))).status_code == 200


async def test_lockout_holds_across_a_broker_restart(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    from broker.app import create_app
    from broker.runtime import open_runtime

    secret = await add_user(runtime)
    for _ in range(5):
        await login(client, "maria", "wrong password!", "123456")
    other = await open_runtime(runtime.settings, clock=clock)
    try:
        app = create_app(other.settings, runtime=other)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c2:
            response = await login(c2, "maria", code=code_now(other, secret or ""))
        assert response.status_code == 423
    finally:
        await other.close()


async def test_rate_limit_per_source_address(runtime: Runtime, client: httpx.AsyncClient) -> None:
    runtime.login_limiter.limit = 3
    for _ in range(3):
        assert (await login(client, "nobody", "wrong password!", "123456")).status_code == 401
    limited = await login(client, "nobody", "wrong password!", "123456")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    results = [e.result for e in await audit_events(runtime, "login")]
    assert results[-1] == "rate_limited"


async def test_a_flood_from_one_source_is_audited_up_to_the_limit_then_only_counted(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    runtime.login_limiter.limit = 3
    runtime.login_refusal_audits.limit = 2
    statuses = [
        (await login(client, "nobody", "wrong password!", "123456")).status_code for _ in range(10)
    ]
    assert statuses == [401] * 3 + [429] * 7
    results = [e.result for e in await audit_events(runtime, "login")]
    assert results == ["invalid_credentials"] * 3 + ["rate_limited"] * 2
    assert runtime.telemetry.logins["rate_limited"] == 7


async def test_rate_limit_counts_an_ipv6_line_as_one_source(runtime: Runtime) -> None:
    """A home line's /64 holds 2**64 addresses to rotate through: it is one source."""
    from broker.app import create_app

    runtime.login_limiter.limit = 3
    app = create_app(runtime.settings, runtime=runtime)

    async def attempt(ip: str) -> int:
        transport = httpx.ASGITransport(app=app, client=(ip, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            return (await login(c, "nobody", "wrong password!", "123456")).status_code

    line = [await attempt(f"2001:db8:1:2::{i:x}") for i in range(1, 5)]
    assert line == [401, 401, 401, 429]
    assert await attempt("2001:db8:1:3::1") == 401  # the neighbour's line


async def test_rehash_at_login_when_parameters_rise(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    from sqlalchemy import update

    secret = await add_user(runtime)
    weaker = Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
    # A hash from the days of lower parameters: below what the broker uses now.
    old_hash = weaker.hash(PASSWORD)
    runtime.hasher = type(runtime.hasher)(
        memory_kib=19456 * 2, time_cost=2, parallelism=1, threads=2
    )
    async with runtime.db.write() as s:
        await s.execute(update(User).where(User.name == "maria").values(password_hash=old_hash))
    assert (await login(client, "maria", code=code_now(runtime, secret or ""))).status_code == 200
    new_hash = (await user_row(runtime)).password_hash
    assert new_hash and new_hash != old_hash
    assert "m=38912" in new_hash


async def test_admin_lock_gives_423_and_ends_sessions(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    from broker.users import service as users

    secret = await add_user(runtime)
    assert (await login(client, "maria", code=code_now(runtime, secret or ""))).status_code == 200
    await users.set_locked(runtime, "maria", True, "test")
    assert (await client.get("/api/v1/me")).status_code == 401
    runtime.clock.advance(30)  # type: ignore[attr-defined]
    response = await login(client, "maria", code=code_now(runtime, secret or ""))
    assert response.status_code == 423
    await users.set_locked(runtime, "maria", False, "test")
    assert (await login(client, "maria", code=code_now(runtime, secret or ""))).status_code == 200


async def test_login_updates_last_login(runtime: Runtime, client: httpx.AsyncClient) -> None:
    secret = await add_user(runtime)
    await login(client, "maria", "wrong password!", "123456")
    answer = await login(client, "maria", code=code_now(runtime, secret or ""))
    now = runtime.clock.now().replace(tzinfo=dt.UTC)
    assert (await user_row(runtime)).last_login_at == now
    # The answer shows the account as the login left it, not as it was before.
    assert answer.json()["user"]["failed_logins"] == 0
    assert dt.datetime.fromisoformat(answer.json()["user"]["last_login_at"]) == now


async def test_a_burst_of_parallel_guesses_gets_no_more_checks_than_the_threshold(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Each attempt is counted before its password is checked, so requests in
    flight cannot all slip past the lock that the fifth failure sets."""
    await add_user(runtime)
    guesses = await asyncio.gather(
        *(login(client, "maria", f"wrong guess {i}", "123456") for i in range(20))
    )
    statuses = [r.status_code for r in guesses]
    threshold = runtime.settings.lockout_threshold
    assert statuses.count(401) == threshold, statuses
    assert statuses.count(423) == 20 - threshold, statuses
    assert (await user_row(runtime)).failed_logins == threshold
    assert len(await audit_events(runtime, "account_locked")) == 1

    unknown = await asyncio.gather(
        *(login(client, "nobody", f"wrong guess {i}", "123456") for i in range(20))
    )
    assert sorted(r.status_code for r in unknown) == sorted(statuses)


@pytest.mark.parametrize("name", ["nob\x00ody", "\x00", "maria\x00", "ma\u0301ria", "maria\x7f"])
async def test_a_name_no_account_can_have_is_a_wrong_credential(
    runtime: Runtime, client: httpx.AsyncClient, name: str
) -> None:
    """PostgreSQL refuses NUL in text: such a name must not reach a query."""
    secret = await add_user(runtime)
    response = await login(client, name, code=code_now(runtime, secret or ""))
    assert response.status_code == 401 and response.json() == INVALID
    assert (await user_row(runtime)).failed_logins == 0
    [event] = await audit_events(runtime, "login")
    assert event.detail == {"reason": "unknown_user"}


async def test_a_right_password_without_authenticator_takes_the_counted_attempt_back(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, enrol=False)
    for _ in range(3):
        assert (await login(client, "maria", "wrong password!", "123456")).status_code == 401
    for _ in range(6):
        answer = await login(client, "maria", PASSWORD, "123456")
        assert answer.json()["error"] == "totp_enrollment_required"
    assert (await user_row(runtime)).failed_logins == 0


class CountingHasher:
    """The runtime's real hasher, counting the hashes it makes."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.hashes = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def hash(self, password: str) -> str:
        self.hashes += 1
        return await self.inner.hash(password)  # type: ignore[attr-defined, no-any-return]


async def test_rehash_waits_for_the_second_factor(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Hashing a right password before its code was checked made a wrong code take
    one hash longer than a wrong password: a timing oracle for the password."""
    from sqlalchemy import update

    secret = await add_user(runtime)
    weaker = Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    old_hash = weaker.hash(PASSWORD)
    async with runtime.db.write() as s:
        await s.execute(update(User).where(User.name == "maria").values(password_hash=old_hash))
    counting = CountingHasher(runtime.hasher)
    runtime.hasher = counting  # type: ignore[assignment]
    wrong = "000000" if code_now(runtime, secret or "") != "000000" else "111111"
    assert (await login(client, "maria", code=wrong)).status_code == 401
    assert counting.hashes == 0
    assert (await user_row(runtime)).password_hash == old_hash
    assert (await login(client, "maria", code=code_now(runtime, secret or ""))).status_code == 200
    assert counting.hashes == 1
    assert (await user_row(runtime)).password_hash != old_hash
    assert [e.username for e in await audit_events(runtime, "password_rehashed")] == ["maria"]


async def test_a_locked_account_says_so_only_to_who_holds_both_factors(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    from broker.users import service as users

    secret = await add_user(runtime)
    await users.set_locked(runtime, "maria", True, "test")
    wrong_code = "000000" if code_now(runtime, secret or "") != "000000" else "111111"
    assert (await login(client, "maria", "wrong password!", "123456")).json() == INVALID
    assert (await login(client, "maria", code=wrong_code)).json() == INVALID
    both = await login(client, "maria", code=code_now(runtime, secret or ""))
    assert both.status_code == 423 and both.json()["error"] == "locked"
    reasons = [e.detail for e in await audit_events(runtime, "login")]
    assert reasons == [
        {"reason": "wrong_password"},
        {"reason": "account_disabled"},
        {"reason": "disabled"},
    ]
