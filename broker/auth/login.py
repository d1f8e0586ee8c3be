"""Password + TOTP login: the order of checks and what is stored and audited.

Every wrong factor gives the same 401 `invalid_credentials`; an unknown user
costs the same argon2 verification as a known one. A TOTP replay is answered
like a wrong code and audited as `totp_replay`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from broker.audit import log as audit
from broker.auth import enrolment, lockout, name_lockout, recovery, totp, websessions
from broker.auth.ldap import map_groups
from broker.auth.ratelimit import retry_after
from broker.domain import LoginResult
from broker.errors import Forbidden, Locked, RateLimited, Unauthorized
from broker.names import normalise_user_name
from broker.net import source_key
from broker.runtime import Runtime
from broker.store.db import Executor
from broker.store.tables import User, table
from broker.users import service as users

INVALID = "invalid_credentials"
INVALID_MESSAGE = "User name, password or code is wrong."


@dataclass(frozen=True)
class Client:
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    code: str | None = None
    recovery_code: str | None = None


@dataclass(frozen=True)
class LoggedIn:
    user: User
    web: websessions.NewWebSession


async def login(rt: Runtime, creds: Credentials, client: Client) -> LoggedIn:
    now = rt.clock.now()
    typed = creds.username
    wait = rt.login_limiter.hit(source_key(client.ip))
    if wait is not None:
        await _audit_only(rt, now, LoginResult.RATE_LIMITED, typed, client)
        raise RateLimited("Too many login attempts; try again later.", headers=retry_after(wait))

    name = normalise_user_name(typed)
    user = await _find_user(rt, name)
    locked_s = await _locked_for(rt, user, name, now)
    if locked_s is not None:
        await _audit_only(rt, now, LoginResult.LOCKED, typed, client)
        headers = retry_after(locked_s) if locked_s > 0 else {}
        raise Locked("This account is locked.", code="locked", headers=headers)

    from_directory = rt.directory is not None and (user is None or user.auth_source == "ldap")
    if not from_directory and (user is None or user.password_hash is None):
        await rt.hasher.verify_dummy(creds.password)
        await _fail(rt, user, name, now, typed, client, "unknown_user")
        raise Unauthorized(INVALID_MESSAGE, code=INVALID)

    needs_rehash = False
    if from_directory:
        user = await _directory_login(rt, name, creds.password, user, now, typed, client)
    else:
        assert user is not None and user.password_hash is not None
        matches, needs_rehash = await rt.hasher.verify(user.password_hash, creds.password)
        if not matches:
            await _fail(rt, user, name, now, typed, client, "wrong_password")
            raise Unauthorized(INVALID_MESSAGE, code=INVALID)

    if user.totp_secret is None:
        async with rt.db.write() as s:
            token = enrolment.start(s, user.id, now, rt.settings.enrolment_token_ttl_s)
            await _record_login(s, now, LoginResult.ENROLLMENT_REQUIRED, typed, client)
        rt.telemetry.login(LoginResult.ENROLLMENT_REQUIRED)
        raise Forbidden(
            "Set up your authenticator app to finish logging in.",
            code="totp_enrollment_required",
            extra={"enrolment_token": token, "expires_in": rt.settings.enrolment_token_ttl_s},
        )

    new_hash = await rt.hasher.hash(creds.password) if needs_rehash else None
    async with rt.db.write_conn() as s:
        second = await _second_factor(rt, s, user, creds, now)
        if second == "ok":
            if new_hash:
                await s.execute(
                    update(User).where(User.id == user.id).values(password_hash=new_hash)
                )
            web = await websessions.create(
                s, rt.box, user.id, now, source_ip=client.ip, user_agent=client.user_agent
            )
            await _record_login(
                s,
                now,
                LoginResult.SUCCESS,
                typed,
                client,
                {
                    "factor": "recovery" if creds.recovery_code else "totp",
                    **({"rehashed": True} if new_hash else {}),
                },
            )
            if creds.recovery_code:
                await audit.record(
                    s, now, "recovery_code_used", username=user.name, source_ip=client.ip
                )
    if second == "ok":
        rt.telemetry.login(LoginResult.SUCCESS)
        return LoggedIn(user, web)

    reason = "totp_replay" if second == "replay" else "wrong_code"
    await _fail(rt, user, name, now, typed, client, reason)
    raise Unauthorized(INVALID_MESSAGE, code=INVALID)


# The statements of every login, built once: constructing and cache-keying a
# fresh statement per call costs more CPU than running it.
_users = table(User)
_FIND_USER = select(_users).where(_users.c.name == bindparam("name"))
_SUCCESS_VALUES: dict[str, Any] = {
    "failed_logins": 0,
    "locked_until": None,
    "last_login_at": bindparam("now"),
}
_SPEND_STEP = (
    update(_users)
    .where(
        _users.c.id == bindparam("uid"),
        or_(_users.c.totp_last_step.is_(None), _users.c.totp_last_step < bindparam("step")),
    )
    .values(totp_last_step=bindparam("step"), **_SUCCESS_VALUES)
)
_RECORD_SUCCESS = update(_users).where(_users.c.id == bindparam("uid")).values(**_SUCCESS_VALUES)


async def _directory_login(
    rt: Runtime,
    name: str,
    password: str,
    known: User | None,
    now: dt.datetime,
    typed: str,
    client: Client,
) -> User:
    """Search-then-bind in the directory, then bring the local row up to date."""
    assert rt.directory is not None
    found = await rt.directory.authenticate(name, password)
    mapped = map_groups(found, rt.directory.cfg) if found is not None else None
    if found is None or mapped is None:
        reason = "wrong_password" if found is None else "not_in_allowed_groups"
        await _fail(rt, known, name, now, typed, client, "directory_" + reason)
        raise Unauthorized(INVALID_MESSAGE, code=INVALID)
    await users.sync_directory_user(rt, name, mapped)
    if known is None:
        async with rt.db.write_conn() as conn:
            await name_lockout.clear(conn, rt, name)
    synced = await _find_user(rt, name)
    assert synced is not None
    return synced


async def _locked_for(rt: Runtime, user: User | None, name: str, now: dt.datetime) -> float | None:
    """Seconds the account stays locked, 0 for a disabled one (until an admin
    unlocks it), None when it is open. A name without an account locks like an
    account (see name_lockout), so the two look alike."""
    if user is None:
        return await name_lockout.locked_for(rt, name, now)
    if user.disabled:
        return 0.0
    if user.locked_until is not None and user.locked_until > now:
        return (user.locked_until - now).total_seconds()
    return None


async def _find_user(rt: Runtime, name: str) -> User | None:
    async with rt.db.read_conn() as conn:
        row = (await conn.execute(_FIND_USER, {"name": name})).first()
    # A detached instance: nothing is loaded lazily or written back through it.
    return User(**row._mapping) if row is not None else None


async def _second_factor(
    rt: Runtime,
    s: Executor,
    user: User,
    creds: Credentials,
    now: dt.datetime,
) -> str:
    """'ok', 'replay' or 'wrong'. On 'ok' the code is spent and the success is
    recorded on the user row (failures reset), in the caller's transaction."""
    if creds.recovery_code:
        if not await recovery.use_code(s, rt.box, user.id, creds.recovery_code, now):
            return "wrong"
        await s.execute(_RECORD_SUCCESS, {"uid": user.id, "now": now})
        return "ok"
    assert user.totp_secret is not None
    secret = rt.box.decrypt(user.totp_secret, totp.storage_context(user.id))
    verdict = totp.check(secret, creds.code or "", now.timestamp(), user.totp_last_step)
    if verdict.verdict is totp.Verdict.WRONG:
        return "wrong"
    if verdict.verdict is totp.Verdict.REPLAY:
        return "replay"
    # The step only rises, and only one request can raise it to this value: a
    # parallel request with the same code finds the row already updated. The
    # success bookkeeping rides along in the same statement.
    result = await s.execute(_SPEND_STEP, {"uid": user.id, "step": verdict.step, "now": now})
    return "ok" if result.rowcount == 1 else "replay"  # type: ignore[attr-defined]


async def _fail(
    rt: Runtime,
    user: User | None,
    name: str,
    now: dt.datetime,
    typed: str,
    client: Client,
    reason: str,
) -> None:
    """Count a failed login against the account, or against the name when there
    is no account, locking it at the threshold; audit the attempt."""
    result = LoginResult.REPLAY if reason == "totp_replay" else LoginResult.INVALID_CREDENTIALS
    async with rt.db.write_conn() as s:
        if user is None:
            failures, lock_s = await name_lockout.count_failure(s, rt, name, now)
        else:
            failures, lock_s = await _count_account_failure(s, rt, user, now)
        if lock_s is not None:
            await audit.record(
                s,
                now,
                "account_locked",
                username=name,
                source_ip=client.ip,
                detail={"failures": failures, "seconds": lock_s, "account": user is not None},
            )
        if reason == "totp_replay":
            await audit.record(
                s,
                now,
                "totp_replay",
                username=name,
                source_ip=client.ip,
                user_agent=client.user_agent,
            )
        await _record_login(
            s, now, LoginResult.INVALID_CREDENTIALS, typed, client, {"reason": reason}
        )
    rt.telemetry.login(result)


async def _count_account_failure(
    s: Executor, rt: Runtime, user: User, now: dt.datetime
) -> tuple[int, int | None]:
    """The account's failures so far and the seconds it is now locked for."""
    failures = await s.scalar(
        update(User)
        .where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
    )
    lock_s = lockout.lock_seconds_for(failures or 0, rt.settings)
    if lock_s is not None:
        until = now + dt.timedelta(seconds=lock_s)
        await s.execute(update(User).where(User.id == user.id).values(locked_until=until))
    return failures or 0, lock_s


async def _record_login(
    s: Executor,
    now: dt.datetime,
    result: LoginResult,
    typed: str,
    client: Client,
    detail: dict[str, Any] | None = None,
) -> None:
    """The audit event of one login attempt: result, name as typed, where from."""
    await audit.record(
        s,
        now,
        "login",
        result=result,
        username=typed,
        source_ip=client.ip,
        user_agent=client.user_agent,
        detail=detail,
    )


async def _audit_only(
    rt: Runtime,
    now: dt.datetime,
    result: LoginResult,
    typed: str,
    client: Client,
    detail: dict[str, str] | None = None,
) -> None:
    async with rt.db.write_conn() as s:
        await _record_login(s, now, result, typed, client, detail)
    rt.telemetry.login(result)
