"""TOTP enrolment, self-service and by an administrator.

Self-service: a right password for a user without TOTP opens an enrolment
(a short-lived token, stored hashed). `enroll` makes a secret for it and shows it
once (manual key, otpauth URI, QR); `confirm` with a valid code activates it and
returns ten recovery codes, shown once. The step of the confirming code is stored
as the last used step, so that code cannot also log in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from broker.audit import log as audit
from broker.auth import qr, recovery, totp, websessions
from broker.auth.ratelimit import retry_after
from broker.errors import Conflict, InvalidInput, NotFound, RateLimited, VdiError
from broker.net import source_key
from broker.runtime import Runtime
from broker.security.tokens import new_token, token_hash
from broker.store.db import Executor
from broker.store.tables import Enrolment, User

MAX_CONFIRM_ATTEMPTS = 5


class EnrolmentInvalid(VdiError):
    """The enrolment cannot go on: log in again. `reason` says why, for the
    portal's words ("expired", "too_many_codes")."""

    status, code = 401, "enrolment_invalid"

    def __init__(self, message: str, reason: str = "expired") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Setup:
    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True)
class AdminEnrolment:
    secret: str
    otpauth_uri: str
    qr_text: str
    recovery_codes: list[str]


def _enrolment_context(enrolment_id: int) -> str:
    return f"enrolment:{enrolment_id}"


def start(session: AsyncSession, user_id: int, now: dt.datetime, ttl_s: int) -> str:
    """Open an enrolment for a user whose password was right; return its token."""
    token = new_token()
    session.add(
        Enrolment(
            user_id=user_id,
            token_hash=token_hash(token),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=ttl_s),
        )
    )
    return token


async def _open(s: AsyncSession, token: str, now: dt.datetime) -> tuple[Enrolment, User]:
    row = (
        await s.execute(
            select(Enrolment, User)
            .join(User, User.id == Enrolment.user_id)
            .where(Enrolment.token_hash == token_hash(token))
        )
    ).first()
    if row is None:
        raise EnrolmentInvalid("This enrolment link is not valid; log in again.")
    enrolment, user = row
    if enrolment.used_at is not None or enrolment.expires_at <= now:
        raise EnrolmentInvalid("This enrolment has expired; log in again.")
    if enrolment.attempts >= MAX_CONFIRM_ATTEMPTS:
        raise EnrolmentInvalid("Too many wrong codes; log in again.", "too_many_codes")
    if user.totp_secret is not None or user.disabled:
        raise EnrolmentInvalid("This account cannot be enrolled now; log in again.")
    return enrolment, user


async def _count_attempt(s: AsyncSession, enrolment_id: int) -> bool:
    """Count a confirmation before its code is checked, unless the enrolment has
    had its tries; True if counted. One conditional UPDATE, as at the login
    (broker.auth.login._begin_attempt): codes sent in parallel wait for each
    other's count (PostgreSQL holds the row), so they get no more tries than
    codes sent in turn. A right code's count does not matter: it ends the
    enrolment."""
    counted = await s.execute(
        update(Enrolment)
        .where(
            Enrolment.id == enrolment_id,
            Enrolment.used_at.is_(None),
            Enrolment.attempts < MAX_CONFIRM_ATTEMPTS,
        )
        .values(attempts=Enrolment.attempts + 1)
    )
    return bool(counted.rowcount == 1)  # type: ignore[attr-defined]


async def _end(s: AsyncSession, enrolment_id: int, now: dt.datetime) -> bool:
    """Mark an enrolment used and drop its secret, unless another request did
    first; True if this one did. Confirm and cancel both end an enrolment, and
    the one that ends it decides: on PostgreSQL both may have read it open."""
    ended = await s.execute(
        update(Enrolment)
        .where(Enrolment.id == enrolment_id, Enrolment.used_at.is_(None))
        .values(used_at=now, totp_secret=None)
    )
    return bool(ended.rowcount == 1)  # type: ignore[attr-defined]


async def end_all(s: Executor, user_id: int, now: dt.datetime) -> None:
    """End every open enrolment of a user: their tokens and secrets stop working.
    For an admin's reset and lock: one left open would otherwise work again
    (after a reset, or an unlock within its life) for whoever holds its token."""
    await s.execute(
        update(Enrolment)
        .where(Enrolment.user_id == user_id, Enrolment.used_at.is_(None))
        .values(used_at=now, totp_secret=None)
    )


async def create_secret(rt: Runtime, token: str, *, reuse: bool = False) -> Setup:
    """Make (or make again) the secret of an open enrolment and show it.

    With `reuse`, a secret made before is shown again instead: a page that is
    reloaded (a tablet brings the browser back from the authenticator app) must
    not invalidate what the user has just scanned."""
    now = rt.clock.now()
    async with rt.db.write() as s:
        enrolment, user = await _open(s, token, now)
        context = _enrolment_context(enrolment.id)
        if reuse and enrolment.totp_secret is not None:
            secret = rt.box.decrypt(enrolment.totp_secret, context)
        else:
            secret = totp.new_secret()
            enrolment.totp_secret = rt.box.encrypt(secret, context)
        uri = totp.provisioning_uri(secret, user.name, rt.settings.totp_issuer)
    return Setup(secret=secret, otpauth_uri=uri, qr_svg=qr.svg(uri))


async def confirm(rt: Runtime, token: str, code: str, source_ip: str | None) -> list[str]:
    """Activate the enrolment's secret with a valid code; return recovery codes.

    Guessing codes here is limited per source like guessing at the login."""
    wait = rt.login_limiter.hit(source_key(source_ip))
    if wait is not None:
        raise RateLimited("Too many attempts; try again later.", headers=retry_after(wait))
    if not totp.is_well_formed(code):
        raise InvalidInput("The code has six digits.", code="invalid_request")
    now = rt.clock.now()
    async with rt.db.write() as s:
        enrolment, user = await _open(s, token, now)
        if enrolment.totp_secret is None:
            raise Conflict("Create the secret first.", code="enrolment_not_started")
        accepted: int | None = None  # the code's time step, once it is right
        failure = "too_many_codes"
        if await _count_attempt(s, enrolment.id):
            failure = "invalid_code"  # unless it is right; the attempt stays counted
            secret = rt.box.decrypt(enrolment.totp_secret, _enrolment_context(enrolment.id))
            verdict = totp.check(secret, code, now.timestamp(), None)
            if verdict.verdict is totp.Verdict.ACCEPT:
                accepted = verdict.step
        if accepted is None:
            # Guessing here is guessing at an account's second factor: audited
            # like a failed login, and committed with the attempt's count.
            await audit.record(
                s,
                now,
                "totp_enrolment_failed",
                username=user.name,
                result=failure,
                source_ip=source_ip,
                detail={"path": "self_service"},
            )
        else:
            step = max(accepted, user.totp_last_step or accepted)
            activated = await s.execute(
                update(User)
                .where(User.id == user.id, User.totp_secret.is_(None))
                .values(
                    totp_secret=rt.box.encrypt(secret, totp.storage_context(user.id)),
                    totp_last_step=step,
                )
            )
            if activated.rowcount != 1:  # type: ignore[attr-defined]
                raise EnrolmentInvalid("This account was enrolled meanwhile; log in again.")
            if not await _end(s, enrolment.id, now):
                raise EnrolmentInvalid("This enrolment was cancelled; log in again.")
            codes = await recovery.replace_codes(s, rt.box, user.id)
            await audit.record(
                s,
                now,
                "totp_enrolled",
                username=user.name,
                source_ip=source_ip,
                detail={"path": "self_service"},
            )
    if accepted is None:
        if failure == "too_many_codes":
            raise EnrolmentInvalid("Too many wrong codes; log in again.", "too_many_codes")
        raise InvalidInput(
            "The code is not right; check the time on your phone.", code="invalid_code"
        )
    return codes


async def cancel(rt: Runtime, token: str, source_ip: str | None) -> None:
    """End an open enrolment unfinished: its token and secret stop working, so
    the next person at a shared device cannot finish it with their own app. One
    that is gone already (expired, used) needs nothing more."""
    now = rt.clock.now()
    async with rt.db.write() as s:
        try:
            enrolment, user = await _open(s, token, now)
        except EnrolmentInvalid:
            return
        if not await _end(s, enrolment.id, now):
            return  # confirmed (or cancelled) meanwhile
        await audit.record(
            s, now, "totp_enrolment_cancelled", username=user.name, source_ip=source_ip
        )


async def admin_enrol(rt: Runtime, name: str, actor: str, *, replace: bool) -> AdminEnrolment:
    """Give a user a new TOTP secret and recovery codes (the administrator hands them over)."""
    now = rt.clock.now()
    secret = totp.new_secret()
    async with rt.db.write() as s:
        user = await s.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFound(f"There is no user {name!r}.")
        if user.totp_secret is not None and not replace:
            raise Conflict(
                f"{name} already has TOTP; use `user reset-totp` or --replace.",
                code="already_enrolled",
            )
        user.totp_secret = rt.box.encrypt(secret, totp.storage_context(user.id))
        await websessions.revoke_all(s, user.id, now)
        codes = await recovery.replace_codes(s, rt.box, user.id)
        await audit.record(
            s, now, "totp_enrolled", username=user.name, actor=actor, detail={"path": "admin"}
        )
    uri = totp.provisioning_uri(secret, name, rt.settings.totp_issuer)
    return AdminEnrolment(secret, uri, qr.terminal(uri), codes)
