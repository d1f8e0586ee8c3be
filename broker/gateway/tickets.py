"""One-time tunnel tickets: 256 random bits, valid for a minute, for one session.

Only the SHA-256 is stored. `redeem` marks a ticket used with a conditional
UPDATE, so a ticket opens at most one tunnel even with several gateways (broker
replicas) on one database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from broker.security.tokens import new_token, token_hash
from broker.store.db import Executor
from broker.store.tables import Session, Ticket, User, table

_tickets = table(Ticket)
_sessions = table(Session)
_users = table(User)

_INSERT = _tickets.insert()
_REDEEM = (
    update(_tickets)
    .where(
        _tickets.c.id_hash == bindparam("ticket_hash"),
        _tickets.c.used_at.is_(None),
        _tickets.c.expires_at > bindparam("now"),
    )
    .values(used_at=bindparam("now"))
    .returning(_tickets.c.session_id, _tickets.c.user_id)
)


@dataclass(frozen=True)
class Redeemed:
    session_id: str
    user_id: int
    user_name: str


async def issue(
    conn: Executor, session_id: str, user_id: int, now: dt.datetime, ttl_s: float
) -> str:
    token = new_token()
    await conn.execute(
        _INSERT,
        {
            "id_hash": token_hash(token),
            "session_id": session_id,
            "user_id": user_id,
            "created_at": now,
            "expires_at": now + dt.timedelta(seconds=ttl_s),
            "used_at": None,
        },
    )
    return token


async def redeem(conn: Executor, ticket: str, user_name: str, now: dt.datetime) -> Redeemed | None:
    """Spend a ticket presented by `user_name`; None if unknown, used, expired or
    another user's (a ticket of another user is spent all the same: it leaked)."""
    row = (await conn.execute(_REDEEM, {"ticket_hash": token_hash(ticket), "now": now})).first()
    if row is None:
        return None
    name = await conn.scalar(select(_users.c.name).where(_users.c.id == row.user_id))
    if name != user_name:
        return None
    return Redeemed(row.session_id, row.user_id, name)


async def purge_expired(conn: Executor, before: dt.datetime) -> int:
    result = await conn.execute(_tickets.delete().where(_tickets.c.expires_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
