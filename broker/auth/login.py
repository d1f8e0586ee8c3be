"""Password + TOTP login: the order of checks and what is stored and audited.

Every wrong factor gives the same 401 `invalid_credentials`; an unknown user
costs the same argon2 verification as a known one. A TOTP replay is answered
like a wrong code and audited as `totp_replay`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import bindparam, or_, select, update

from broker.audit import log as audit
from broker.auth import enrolment, lockout, name_lockout, recovery, totp, websessions
from broker.auth.ldap import map_groups
from broker.auth.ratelimit import retry_after
from broker.domain import LoginResult
from broker.errors import Forbidden, Locked, RateLimited, Unauthorized
from broker.names import USER_NAME_RE, normalise_user_name
from broker.net import source_key
from broker.runtime import Runtime
from broker.security.crypto import KeyMissing
from broker.store.db import Executor
from broker.store.tables import User, table
from broker.users import service as users

INVALID = "invalid_credentials"
INVALID_MESSAGE = "User name, password or code is wrong."
# As the portal says it in German (SERVICE_ERRORS_DE["locked"]): the same words
# for a lock that passes and for one an administrator set.
LOCKED_MESSAGE = "This account is locked. Try again later or contact IT."


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
    source = source_key(client.ip)
    wait = rt.login_limiter.hit(source)
    if wait is not None:
        # Audited up to the same limit again, then only counted: a flood from one
        # source must not become a flood of audit rows, each a write transaction.
        if rt.login_refusal_audits.hit(source) is None:
            await _audit_only(rt, now, LoginResult.RATE_LIMITED, typed, client)
        else:
            rt.telemetry.login(LoginResult.RATE_LIMITED)
        raise RateLimited("Too many login attempts; try again later.", headers=retry_after(wait))

    name = normalise_user_name(typed)
    attempt = await _begin_attempt(rt, name, now)
    if attempt.locked_s is not None:
        await _audit_only(rt, now, LoginResult.LOCKED, typed, client)
        headers = retry_after(attempt.locked_s) if attempt.locked_s > 0 else {}
        raise Locked(LOCKED_MESSAGE, code="locked", headers=headers)
    user = attempt.user

    from_directory = (
        rt.directory is not None
        and attempt.possible_name
        and (user is None or user.auth_source == "ldap")
    )
    if not from_directory and (user is None or user.password_hash is None):
        await rt.hasher.verify_dummy(creds.password)
        await _fail(rt, attempt, now, typed, client, "unknown_user")
        raise Unauthorized(INVALID_MESSAGE, code=INVALID)

    needs_rehash = False
    if from_directory:
        user = await _directory_login(rt, name, creds.password, attempt, now, typed, client)
    else:
        assert user is not None and user.password_hash is not None
        matches, needs_rehash = await rt.hasher.verify(user.password_hash, creds.password)
        if not matches:
            await _fail(rt, attempt, now, typed, client, "wrong_password")
            raise Unauthorized(INVALID_MESSAGE, code=INVALID)

    if user.disabled:
        await _refuse_disabled(rt, user, attempt, creds, now, typed, client)

    if user.totp_secret is None:
        async with rt.db.write() as s:
            # The password was right and is the only factor so far: the attempt
            # counted in advance is taken back, as a success would.
            await s.execute(_RESET_FAILURES, {"uid": user.id})
            token = enrolment.start(s, user.id, now, rt.settings.enrolment_token_ttl_s)
            await _record_login(s, now, LoginResult.ENROLLMENT_REQUIRED, typed, client)
        rt.telemetry.login(LoginResult.ENROLLMENT_REQUIRED)
        raise Forbidden(
            "Set up your authenticator app to finish logging in.",
            code="totp_enrollment_required",
            extra={"enrolment_token": token, "expires_in": rt.settings.enrolment_token_ttl_s},
        )

    try:
        async with rt.db.write_conn() as s:
            second = await _second_factor(rt, s, user, creds, now)
            if second == "ok":
                web = await websessions.create(
                    s, rt.box, user.id, now, source_ip=client.ip, user_agent=client.user_agent
                )
                await _record_login(
                    s,
                    now,
                    LoginResult.SUCCESS,
                    typed,
                    client,
                    {"factor": "recovery" if creds.recovery_code else "totp"},
                )
                if creds.recovery_code:
                    await audit.record(
                        s, now, "recovery_code_used", username=user.name, source_ip=client.ip
                    )
    except KeyMissing:
        await _code_unchecked(rt, user, now, typed, client)
        raise
    if second != "ok":
        reason = "totp_replay" if second == "replay" else "wrong_code"
        await _fail(rt, attempt, now, typed, client, reason)
        raise Unauthorized(INVALID_MESSAGE, code=INVALID)

    rt.telemetry.login(LoginResult.SUCCESS)
    # The detached row as the success left it in the database, for the answer.
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    if needs_rehash:
        # Only now, with both factors right: hashing before the second factor was
        # checked made a right password with a wrong code take one hash longer.
        await _rehash(rt, user, creds.password)
    return LoggedIn(user, web)


# The statements of every login, built once: constructing and cache-keying a
# fresh statement per call costs more CPU than running it.
_users = table(User)
_FIND_USER = select(_users).where(_users.c.name == bindparam("name"))
# Counting the attempt is also the look-up of the account: one statement, and
# only while the account is not locked (see _begin_attempt).
_COUNT_ATTEMPT = (
    update(_users)
    .where(
        _users.c.name == bindparam("login_name"),
        or_(_users.c.locked_until.is_(None), _users.c.locked_until <= bindparam("now")),
    )
    .values(failed_logins=_users.c.failed_logins + 1)
    .returning(*_users.c)
)
_LOCK_ACCOUNT = (
    update(_users).where(_users.c.id == bindparam("uid")).values(locked_until=bindparam("until_"))
)
_RESET_FAILURES = (
    update(_users).where(_users.c.id == bindparam("uid")).values(failed_logins=0, locked_until=None)
)
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
_SET_HASH = (
    update(_users)
    .where(_users.c.id == bindparam("uid"))
    .values(password_hash=bindparam("new_hash"))
)


@dataclass(frozen=True)
class Attempt:
    """A login attempt as counted before any factor is checked."""

    name: str
    user: User | None
    # Whether any account could have this name: one that cannot is looked up nowhere.
    possible_name: bool
    # Failures so far, this attempt included, and the lock it sets should it fail.
    failures: int = 0
    lock_s: int | None = None
    # Seconds the account or name is locked for (0: by an admin); None: open.
    locked_s: float | None = None


async def _begin_attempt(rt: Runtime, name: str, now: dt.datetime) -> Attempt:
    """Count the attempt as a failure before any factor is checked, unless the
    account (or the name without one) is locked; a success takes it back.

    Counting first is what bounds guessing: were failures counted after the
    argon2 check, every request already in flight would pass the lock check, and a
    burst of N parallel guesses would get N checks instead of the threshold. The
    conditional UPDATE holds the row (PostgreSQL) or the database (SQLite) until
    the lock it may set is committed, so a parallel attempt sees that lock."""
    if not USER_NAME_RE.fullmatch(name):
        # No account has such a name, and PostgreSQL refuses some of them (NUL).
        async with rt.db.write_conn() as conn:
            return _name_attempt(name, await name_lockout.begin_attempt(conn, rt, name, now), False)
    async with rt.db.write_conn() as conn:
        row = (await conn.execute(_COUNT_ATTEMPT, {"login_name": name, "now": now})).first()
        if row is not None:
            # A detached instance: nothing is loaded lazily or written back through it.
            user = User(**row._mapping)
            lock_s = lockout.lock_seconds_for(user.failed_logins, rt.settings)
            if lock_s is not None:
                until = now + dt.timedelta(seconds=lock_s)
                await conn.execute(_LOCK_ACCOUNT, {"uid": user.id, "until_": until})
            return Attempt(name, user, True, user.failed_logins, lock_s)
        row = (await conn.execute(_FIND_USER, {"name": name})).first()
        if row is not None:
            user = User(**row._mapping)
            return Attempt(name, user, True, locked_s=lockout.seconds_left(user.locked_until, now))
        return _name_attempt(name, await name_lockout.begin_attempt(conn, rt, name, now), True)


def _name_attempt(name: str, counted: name_lockout.Counted, possible: bool) -> Attempt:
    if counted.locked_s is not None:
        return Attempt(name, None, possible, locked_s=counted.locked_s)
    return Attempt(name, None, possible, counted.failures, counted.lock_s)


async def _refuse_disabled(
    rt: Runtime,
    user: User,
    attempt: Attempt,
    creds: Credentials,
    now: dt.datetime,
    typed: str,
    client: Client,
) -> NoReturn:
    """An account an admin has locked. Only someone who holds both factors learns
    that it is locked (423); anyone else gets the answer of a wrong factor, so a
    423 does not tell which names exist, nor a right password on its own."""
    code_right = (
        user.totp_secret is not None
        and bool(creds.code)
        and _check_code(rt, user, creds.code or "", now).verdict is totp.Verdict.ACCEPT
    )
    if code_right:
        await _audit_only(rt, now, LoginResult.LOCKED, typed, client, {"reason": "disabled"})
        raise Locked(LOCKED_MESSAGE, code="locked")
    await _fail(rt, attempt, now, typed, client, "account_disabled")
    raise Unauthorized(INVALID_MESSAGE, code=INVALID)


async def _rehash(rt: Runtime, user: User, password: str) -> None:
    """Store the password's hash with today's parameters, which have risen since."""
    new_hash = await rt.hasher.hash(password)
    async with rt.db.write_conn() as s:
        await s.execute(_SET_HASH, {"uid": user.id, "new_hash": new_hash})
        await audit.record(s, rt.clock.now(), "password_rehashed", username=user.name)


async def _directory_login(
    rt: Runtime,
    name: str,
    password: str,
    attempt: Attempt,
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
        await _fail(rt, attempt, now, typed, client, "directory_" + reason)
        raise Unauthorized(INVALID_MESSAGE, code=INVALID)
    await users.sync_directory_user(rt, name, mapped)
    if attempt.user is None:
        async with rt.db.write_conn() as conn:
            await name_lockout.clear(conn, rt, name)
    synced = await _find_user(rt, name)
    assert synced is not None
    return synced


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
    verdict = _check_code(rt, user, creds.code or "", now)
    if verdict.verdict is totp.Verdict.WRONG:
        return "wrong"
    if verdict.verdict is totp.Verdict.REPLAY:
        return "replay"
    # The step only rises, and only one request can raise it to this value: a
    # parallel request with the same code finds the row already updated. The
    # success bookkeeping rides along in the same statement.
    result = await s.execute(_SPEND_STEP, {"uid": user.id, "step": verdict.step, "now": now})
    return "ok" if result.rowcount == 1 else "replay"  # type: ignore[attr-defined]


def _check_code(rt: Runtime, user: User, code: str, now: dt.datetime) -> totp.Check:
    """The user's TOTP code checked against their secret; nothing is spent."""
    assert user.totp_secret is not None
    secret = rt.box.decrypt(user.totp_secret, totp.storage_context(user.id))
    return totp.check(secret, code, now.timestamp(), user.totp_last_step)


async def _fail(
    rt: Runtime,
    attempt: Attempt,
    now: dt.datetime,
    typed: str,
    client: Client,
    reason: str,
) -> None:
    """Audit a failed login. The failure itself was counted when the attempt
    began (_begin_attempt), with the lock it sets at the threshold."""
    result = LoginResult.REPLAY if reason == "totp_replay" else LoginResult.INVALID_CREDENTIALS
    name = attempt.name
    async with rt.db.write_conn() as s:
        if attempt.lock_s is not None:
            await audit.record(
                s,
                now,
                "account_locked",
                username=name,
                source_ip=client.ip,
                detail={
                    "failures": attempt.failures,
                    "seconds": attempt.lock_s,
                    "account": attempt.user is not None,
                },
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


async def _record_login(
    s: Executor,
    now: dt.datetime,
    result: LoginResult | str,
    typed: str,
    client: Client,
    detail: dict[str, Any] | None = None,
) -> None:
    """The audit event of one login attempt: result, name as typed, where from.
    The result is a LoginResult, or one the audit alone knows ('unavailable')."""
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


async def _code_unchecked(
    rt: Runtime, user: User, now: dt.datetime, typed: str, client: Client
) -> None:
    """The code could not be checked: this broker lacks the key its secret is
    under (broker.security.crypto.KeyMissing). Not a wrong factor: the attempt
    counted in advance is taken back, as the password was right, so waiting
    users do not lock themselves out; the attempt is audited."""
    async with rt.db.write_conn() as s:
        await s.execute(_RESET_FAILURES, {"uid": user.id})
        await _record_login(s, now, "unavailable", typed, client, {"reason": "key_missing"})


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
