"""Lockout for names without a local account.

Unknown names, and directory users who have never logged in, have no user row
to count failures on. Without this, such a name could be guessed at without
limit (and for a directory user a right guess then lets the guesser set up the
authenticator), and a real account would give itself away by locking where an
unknown name never does. So failures of such names are counted here, by the
same rule as accounts (broker.auth.lockout), keyed by a keyed hash of the name:
a mistyped name can hold a password. A row is forgotten a day after its last
failure (broker.audit.retention) and cleared by a directory user's first login.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, or_, select, update

from broker.auth import lockout
from broker.runtime import Runtime
from broker.store.db import Executor
from broker.store.tables import LoginFailure, table

FORGET_AFTER = dt.timedelta(days=1)

_failures = table(LoginFailure)
_LOCKED_UNTIL = select(_failures.c.locked_until).where(_failures.c.name_key == bindparam("key"))
_LOCK = (
    update(_failures)
    .where(_failures.c.name_key == bindparam("key"))
    .values(locked_until=bindparam("until"))
)
_CLEAR = delete(_failures).where(_failures.c.name_key == bindparam("key"))


def name_key(rt: Runtime, name: str) -> str:
    return rt.box.keyed_hash("login-name:" + name)


@dataclass(frozen=True)
class Counted:
    """An attempt counted against a name: the failures so far, this attempt
    included, and the lock it sets should it fail; or, while the name is locked,
    only the seconds it stays locked (nothing is counted then)."""

    failures: int = 0
    lock_s: int | None = None
    locked_s: float | None = None


async def begin_attempt(conn: Executor, rt: Runtime, name: str, now: dt.datetime) -> Counted:
    """Count an attempt as a failure, in the caller's transaction, before any
    factor is checked (see broker.auth.login._begin_attempt); a directory user's
    first success clears the row."""
    key = name_key(rt, name)
    upsert = (
        rt.db.upsert(_failures)
        .values(name_key=key, failures=1, locked_until=None, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[_failures.c.name_key],
            set_={"failures": _failures.c.failures + 1, "last_failure_at": now},
            # A locked name counts nothing: the row comes back only while open.
            where=or_(_failures.c.locked_until.is_(None), _failures.c.locked_until <= now),
        )
        .returning(_failures.c.failures)
    )
    failures = await conn.scalar(upsert)
    if failures is None:
        until = await conn.scalar(_LOCKED_UNTIL, {"key": key})
        return Counted(locked_s=lockout.seconds_left(until, now))
    lock_s = lockout.lock_seconds_for(failures, rt.settings)
    if lock_s is not None:
        await conn.execute(_LOCK, {"key": key, "until": now + dt.timedelta(seconds=lock_s)})
    return Counted(failures, lock_s)


async def clear(conn: Executor, rt: Runtime, name: str) -> None:
    await conn.execute(_CLEAR, {"key": name_key(rt, name)})


def forget_before(now: dt.datetime, max_lock_s: int) -> dt.datetime:
    """Rows whose last failure is older than this are forgotten."""
    return now - max(FORGET_AFTER, dt.timedelta(seconds=max_lock_s))
