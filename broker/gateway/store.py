"""The gateway's statements: tunnel rows, the session state they drive, audit.

Open tunnels are rows of `gateway_tunnels` (one per channel, with the replica
that holds it), so the count per session holds across replicas and survives a
replica that dies:

- opening locks the session row (the UPDATE that makes it active) and inserts
  the tunnel row; a session that is no longer open refuses the tunnel;
- closing locks the session row first, deletes the tunnel row and makes the
  session disconnected if no row of it is left. Taking the row lock before
  counting serialises openers and closers of one session on PostgreSQL (each
  statement then sees the others' committed rows); SQLite's write transaction
  holds the database lock anyway;
- every replica refreshes `seen_at` of its rows on a heartbeat; the leader's
  lifecycle job deletes rows that went silent (their replica died) and treats
  them as closed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, select, update

from broker.audit import log as audit
from broker.domain import SessionState
from broker.store.db import Executor
from broker.store.tables import SESSION_OPEN, Desktop, GatewayTunnel, Session, User, table

_sessions = table(Session)
_desktops = table(Desktop)
_users = table(User)
_tunnels = table(GatewayTunnel)

CONNECTABLE = (SessionState.ACTIVE.value, SessionState.DISCONNECTED.value)
# Keeps IN lists well below every driver's limit on bound parameters.
CHUNK = 500

_TARGET = (
    select(
        _sessions.c.state,
        _sessions.c.user_id,
        _users.c.name.label("user_name"),
        _desktops.c.name.label("desktop_name"),
        _desktops.c.address,
        _desktops.c.port,
        _desktops.c.missing,
    )
    .select_from(_sessions)
    .join(_users, _users.c.id == _sessions.c.user_id)
    .outerjoin(_desktops, _desktops.c.id == _sessions.c.desktop_id)
    .where(_sessions.c.id == bindparam("session_id"))
)
_ACTIVATE = (
    update(_sessions)
    .where(_sessions.c.id == bindparam("session_id"), _sessions.c.state.in_(CONNECTABLE))
    .values(
        state=SessionState.ACTIVE.value,
        disconnected_at=None,
        last_activity_at=bindparam("now"),
    )
    .returning(_sessions.c.id)
)
_INSERT = _tunnels.insert()
_LOCK_SESSION = (
    select(_sessions.c.id).where(_sessions.c.id == bindparam("session_id")).with_for_update()
)
_DELETE = _tunnels.delete().where(_tunnels.c.id == bindparam("tunnel_id"))
_DISCONNECT_IF_NONE_LEFT = (
    update(_sessions)
    .where(
        _sessions.c.id == bindparam("session_id"),
        _sessions.c.state == SessionState.ACTIVE.value,
        ~exists().where(_tunnels.c.session_id == bindparam("session_id")),
    )
    .values(state=SessionState.DISCONNECTED.value, disconnected_at=bindparam("now"))
)
# Bound names must differ from the columns an UPDATE sets or tests.
_HEARTBEAT = (
    update(_tunnels)
    .where(_tunnels.c.replica == bindparam("this_replica"))
    .values(seen_at=bindparam("now"))
)


@dataclass(frozen=True)
class Target:
    """A session as the gateway sees it: whose it is, where its desktop listens,
    and whether its host still reports that desktop."""

    state: str
    user_id: int
    user: str
    desktop: str | None
    address: str | None
    port: int | None
    missing: bool = False

    @property
    def connectable(self) -> bool:
        """An open session on a desktop its host reports. A missing desktop's
        address may belong to another machine by now (a new VM on the same
        address), so no ticket, old or new, opens a tunnel to it."""
        return (
            self.state in CONNECTABLE
            and bool(self.address)
            and bool(self.port)
            and not self.missing
        )


@dataclass(frozen=True)
class Closed:
    """What the audit record of a closed tunnel says."""

    tunnel_id: str
    session_id: str
    user: str
    source_ip: str | None
    destination: str
    reason: str
    duration_s: float
    bytes_up: int
    bytes_down: int


async def target(conn: Executor, session_id: str) -> Target | None:
    row = (await conn.execute(_TARGET, {"session_id": session_id})).first()
    if row is None:
        return None
    return Target(
        row.state,
        row.user_id,
        row.user_name,
        row.desktop_name,
        row.address,
        row.port,
        bool(row.missing),
    )


async def register(
    conn: Executor,
    *,
    tunnel_id: str,
    session_id: str,
    replica: str,
    user: str,
    source_ip: str | None,
    destination: str,
    desktop: str | None,
    now: dt.datetime,
) -> bool:
    """Record an open tunnel and make its session active; False (nothing written)
    when the session is no longer open."""
    if (await conn.execute(_ACTIVATE, {"session_id": session_id, "now": now})).first() is None:
        return False
    await conn.execute(
        _INSERT,
        {
            "id": tunnel_id,
            "session_id": session_id,
            "replica": replica,
            "destination": destination,
            "source_ip": source_ip,
            "opened_at": now,
            "seen_at": now,
        },
    )
    await audit.record(
        conn,
        now,
        "tunnel_opened",
        username=user,
        source_ip=source_ip,
        detail={"session_id": session_id, "destination": destination, "desktop": desktop},
    )
    return True


async def unregister(conn: Executor, closed: Closed, now: dt.datetime) -> None:
    """Delete the tunnel's row; its session becomes disconnected if it was the last."""
    await conn.execute(_LOCK_SESSION, {"session_id": closed.session_id})
    await conn.execute(_DELETE, {"tunnel_id": closed.tunnel_id})
    await conn.execute(_DISCONNECT_IF_NONE_LEFT, {"session_id": closed.session_id, "now": now})
    await audit.record(
        conn,
        now,
        "tunnel_closed",
        username=closed.user,
        source_ip=closed.source_ip,
        result=closed.reason,
        detail={
            "session_id": closed.session_id,
            "destination": closed.destination,
            "duration_s": round(closed.duration_s, 3),
            "bytes_up": closed.bytes_up,
            "bytes_down": closed.bytes_down,
        },
    )


async def refused(
    conn: Executor,
    *,
    user: str,
    source_ip: str | None,
    session_id: str,
    requested: str,
    reason: str,
    now: dt.datetime,
) -> None:
    await audit.record(
        conn,
        now,
        "tunnel_refused",
        username=user,
        source_ip=source_ip,
        result=reason,
        detail={"session_id": session_id, "requested": requested},
    )


async def auth_failed(
    conn: Executor, *, username: str, source_ip: str | None, reason: str, now: dt.datetime
) -> None:
    """A failed gateway login: the name as typed, never the ticket."""
    await audit.record(
        conn, now, "gateway_auth_failed", username=username, source_ip=source_ip, result=reason
    )


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = list(values)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


async def ended(conn: Executor, session_ids: Iterable[str]) -> set[str]:
    """Those of `session_ids` that have ended (or no longer exist)."""
    wanted = set(session_ids)
    still_open: set[str] = set()
    for chunk in _chunks(wanted):
        rows = await conn.execute(
            select(_sessions.c.id).where(_sessions.c.id.in_(chunk), SESSION_OPEN)
        )
        still_open.update(r.id for r in rows)
    return wanted - still_open


async def heartbeat(conn: Executor, replica: str, now: dt.datetime) -> None:
    await conn.execute(_HEARTBEAT, {"this_replica": replica, "now": now})


async def touch(conn: Executor, session_ids: Iterable[str], now: dt.datetime) -> None:
    """Traffic flowed: the sessions were in use just now (idle timeouts of pools)."""
    for chunk in _chunks(session_ids):
        await conn.execute(
            update(_sessions)
            .where(_sessions.c.id.in_(chunk), SESSION_OPEN)
            .values(last_activity_at=now)
        )


async def purge_stale(conn: Executor, before: dt.datetime, now: dt.datetime) -> int:
    """Rows whose replica stopped refreshing them before `before` (it died): delete
    them, and make their sessions disconnected where no tunnel is left. Session
    rows are locked before tunnel rows, in the order `unregister` takes them."""
    sessions = (
        await conn.scalars(
            select(_tunnels.c.session_id)
            .where(_tunnels.c.seen_at < before)
            .distinct()
            .order_by(_tunnels.c.session_id)
        )
    ).all()
    count = 0
    replicas: set[str] = set()
    for session_id in sessions:
        await conn.execute(_LOCK_SESSION, {"session_id": session_id})
        gone = (
            await conn.execute(
                _tunnels.delete()
                .where(_tunnels.c.session_id == session_id, _tunnels.c.seen_at < before)
                .returning(_tunnels.c.replica)
            )
        ).all()
        count += len(gone)
        replicas.update(r.replica for r in gone)
        await conn.execute(_DISCONNECT_IF_NONE_LEFT, {"session_id": session_id, "now": now})
    if count:
        detail: dict[str, Any] = {
            "count": count,
            "replicas": sorted(replicas),
            "sessions": list(sessions[:50]),
        }
        await audit.record(conn, now, "tunnels_lost", actor="broker", detail=detail)
    return count
