"""Server-side web sessions behind the session cookie.

The cookie carries 256 random bits; the table keeps only their SHA-256. A login
always creates a new id (no fixation); logout and locking a user revoke. A
session ends after `session_idle_timeout_s` without requests and, regardless,
`session_absolute_timeout_s` after login.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select, update

from broker.config import Settings
from broker.security.crypto import SecretBox
from broker.security.tokens import new_token, same, token_hash
from broker.store.db import Executor
from broker.store.tables import User, WebSession, table

# Writing last_seen_at on every request would make every GET a write; a minute
# of imprecision in the idle timeout is harmless.
TOUCH_AFTER = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class NewWebSession:
    cookie_value: str
    csrf_token: str


@dataclass(frozen=True)
class Timeouts:
    idle: dt.timedelta
    absolute: dt.timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        return cls(
            idle=dt.timedelta(seconds=settings.session_idle_timeout_s),
            absolute=dt.timedelta(seconds=settings.session_absolute_timeout_s),
        )


def cookie_name(secure: bool) -> str:
    # Browsers only accept the __Host- prefix on Secure cookies.
    return "__Host-vdi_session" if secure else "vdi_session"


# Built once: these run on every login and every request with a cookie.
_web = table(WebSession)
_users = table(User)
_INSERT = insert(_web)
# The web session and its user in one row: the session's columns first.
_RESOLVE = (
    select(*_web.c, *_users.c)
    .join(_users, _users.c.id == _web.c.user_id)
    .where(_web.c.id_hash == bindparam("id_hash"))
)
_WEB_KEYS = tuple(c.key for c in _web.c)
_USER_KEYS = tuple(c.key for c in _users.c)
_TOUCH = (
    update(_web).where(_web.c.id_hash == bindparam("hash")).values(last_seen_at=bindparam("now"))
)


def csrf_token(box: SecretBox, id_hash: str) -> str:
    """The session's CSRF token: derived, so pages can embed it without storing it."""
    return box.keyed_hash(f"csrf:{id_hash}")


async def create(
    session: Executor,
    box: SecretBox,
    user_id: int,
    now: dt.datetime,
    *,
    source_ip: str | None,
    user_agent: str | None,
) -> NewWebSession:
    cookie_value = new_token()
    id_hash = token_hash(cookie_value)
    await session.execute(
        _INSERT,
        {
            "id_hash": id_hash,
            "user_id": user_id,
            "created_at": now,
            "last_seen_at": now,
            "source_ip": source_ip,
            "user_agent": (user_agent or "")[:256] or None,
            "revoked_at": None,
        },
    )
    return NewWebSession(cookie_value, csrf_token(box, id_hash))


def is_expired(ws: WebSession, now: dt.datetime, timeouts: Timeouts) -> bool:
    return (
        ws.revoked_at is not None
        or now - ws.last_seen_at >= timeouts.idle
        or now - ws.created_at >= timeouts.absolute
    )


async def resolve(
    conn: Executor, cookie_value: str, now: dt.datetime, timeouts: Timeouts
) -> tuple[WebSession, User] | None:
    """The live web session and its user for a cookie value, or None. Both are
    detached instances: nothing is loaded lazily or written back through them.
    (Read with Core, not the ORM: this runs before every request with a cookie,
    and an ORM session's set-up and tear-down cost more than the query.)"""
    row = (await conn.execute(_RESOLVE, {"id_hash": token_hash(cookie_value)})).first()
    if row is None:
        return None
    split = len(_WEB_KEYS)
    ws = WebSession(**dict(zip(_WEB_KEYS, row[:split], strict=True)))
    user = User(**dict(zip(_USER_KEYS, row[split:], strict=True)))
    if is_expired(ws, now, timeouts) or user.disabled:
        return None
    return ws, user


def csrf_matches(box: SecretBox, ws: WebSession, token: str | None) -> bool:
    if not token:
        return False
    return any(same(expected, token) for expected in box.keyed_hashes(f"csrf:{ws.id_hash}"))


def needs_touch(ws: WebSession, now: dt.datetime) -> bool:
    return now - ws.last_seen_at >= TOUCH_AFTER


async def touch(conn: Executor, id_hash: str, now: dt.datetime) -> None:
    await conn.execute(_TOUCH, {"hash": id_hash, "now": now})


async def revoke(session: Executor, id_hash: str, now: dt.datetime) -> None:
    await session.execute(
        update(WebSession)
        .where(WebSession.id_hash == id_hash, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_all(session: Executor, user_id: int, now: dt.datetime) -> int:
    result = await session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
