"""The session lifecycle as the broker runs it: request, reconnect, look up, end.

Assignment order (issue #4): the user's open session in the pool (reconnect,
also after a broker restart: it is in the database) -> the user's persistent
desktop -> a free running desktop chosen by placement -> a stopped desktop on
a host with headroom (started; 202 pending) -> a coded refusal.

No desktop is ever in two open sessions and no user has two open sessions in
one pool: partial unique indexes guarantee it, and the assignment transaction
serialises per pool (PostgreSQL: the pool row is locked FOR UPDATE and the
chosen desktop FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Update, and_, bindparam, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from agent.protocol import ActionKind
from broker import fleet
from broker.audit import log as audit
from broker.domain import PoolType, RefusalCode, SessionState, WorkMode
from broker.errors import NotFound, VdiError
from broker.fleet import PoolInfo
from broker.gateway import tickets
from broker.hosts import actions
from broker.placement.filters import entitlement
from broker.placement.model import PoolView, Refuse, Request
from broker.placement.place import could_do_better, place
from broker.placement.refusals import message, unknown_pool
from broker.runtime import Runtime
from broker.sessions import snapshot
from broker.store.db import Executor
from broker.store.tables import SESSION_OPEN, Desktop, Host, Pool, Session, User, table

log = logging.getLogger(__name__)

_sessions = table(Session)
_desktops = table(Desktop)
_hosts = table(Host)
_pools = table(Pool)
_users = table(User)

LOCAL_PORTS = {"rdp": 13389, "vnc": 15900}
REFUSAL_STATUS = {
    RefusalCode.NOT_ENTITLED: 403,
    RefusalCode.OUTSIDE_SCHEDULE: 409,
    RefusalCode.DEPARTMENT_QUOTA: 409,
    RefusalCode.LICENCE_LIMIT: 409,
    RefusalCode.CAPACITY_FULL: 503,
    RefusalCode.HOST_UNAVAILABLE: 503,
}
ATTEMPTS = 3

_INFO = (
    select(
        _sessions,
        _users.c.name.label("user_name"),
        _users.c.department,
        _users.c.team,
        _pools.c.name.label("pool_name"),
        _pools.c.protocol,
        _pools.c.type.label("pool_type"),
        _desktops.c.name.label("desktop_name"),
        _desktops.c.address,
        _desktops.c.port,
        _desktops.c.power_state,
        _desktops.c.probe_ok,
        _desktops.c.missing,
        _hosts.c.name.label("host_name"),
    )
    .select_from(_sessions)
    .join(_users, _users.c.id == _sessions.c.user_id)
    .join(_pools, _pools.c.id == _sessions.c.pool_id)
    .outerjoin(_desktops, _desktops.c.id == _sessions.c.desktop_id)
    .outerjoin(_hosts, _hosts.c.id == _desktops.c.host_id)
)


# The statements of a session request, built once (see broker.auth.login).
_BY_ID = _INFO.where(_sessions.c.id == bindparam("session_id"))
# The requester's open session that the pool's look-up found, unless it has
# ended since (broker.sessions.snapshot.find_pool).
_STILL_OPEN = _BY_ID.where(SESSION_OPEN)
# PostgreSQL: the chosen desktop's row lock, or nothing if another transaction
# holds it (then placement runs again). SQLite holds the write lock already.
_LOCKED_DESKTOP = (
    select(_desktops.c.id)
    .where(_desktops.c.id == bindparam("desktop_id"))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)


def _take_query(claim: bool, lock: bool) -> Update:
    """Taking the chosen desktop: its lock (`lock`), its idle clock stopped, and
    for a persistent pool (`claim`) its owner set, in one statement. What the
    answer needs of the desktop comes back with it: no re-read."""
    chosen = _LOCKED_DESKTOP if lock else bindparam("desktop_id")
    query = (
        update(_desktops)
        .where(_desktops.c.id == chosen)
        .values(idle_since=None)
        .returning(_desktops.c.name, _desktops.c.address, _desktops.c.port)
    )
    return query.values(assigned_user_id=bindparam("user_id")) if claim else query


_TAKE = {
    (claim, lock): _take_query(claim, lock) for claim in (False, True) for lock in (False, True)
}
_INSERT_SESSION = _sessions.insert()
_TOUCH = (
    update(_sessions)
    .where(_sessions.c.id == bindparam("session_id"))
    .values(last_activity_at=bindparam("now"))
)


class Refused(VdiError):
    """A coded refusal; the message is in the language the client asked for."""

    def __init__(self, refusal: Refuse, language: str, pool: str, user: str) -> None:
        self.refusal = refusal
        self.pool = pool
        self.user = user
        super().__init__(
            message(refusal, language),
            code=refusal.code.value,
            status=REFUSAL_STATUS[refusal.code],
            headers={"Retry-After": "60"} if REFUSAL_STATUS[refusal.code] == 503 else None,
        )


@dataclass(frozen=True)
class Connect:
    gateway_host: str
    gateway_port: int
    user: str
    ticket: str
    expires_in: float
    protocol: str
    local_port: int
    desktop_address: str
    desktop_port: int
    host_key_fingerprint: str | None

    def ssh_command(self) -> str:
        return (
            f"ssh -N -L 127.0.0.1:{self.local_port}:{self.desktop_address}:{self.desktop_port}"
            f" -p {self.gateway_port} {self.user}@{self.gateway_host}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway_host": self.gateway_host,
            "gateway_port": self.gateway_port,
            "user": self.user,
            "ticket": self.ticket,
            "expires_in": self.expires_in,
            "protocol": self.protocol,
            "local_port": self.local_port,
            "desktop_address": self.desktop_address,
            "desktop_port": self.desktop_port,
            "host_key_fingerprint": self.host_key_fingerprint,
            "ssh_command": self.ssh_command(),
        }


@dataclass(frozen=True)
class SessionInfo:
    id: str
    user: str
    department: str
    team: str | None
    pool: str
    protocol: str
    state: str
    work_mode: str
    desktop: str | None
    host: str | None
    end_reason: str | None
    created_at: dt.datetime
    activated_at: dt.datetime | None
    ended_at: dt.datetime | None
    # Since when nobody is connected (state disconnected): how long a session has
    # held its licence unused, which ops weigh when licences run out.
    disconnected_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "pool": self.pool,
            "protocol": self.protocol,
            "state": self.state,
            "work_mode": self.work_mode,
            "desktop": self.desktop,
            "host": self.host,
            "end_reason": self.end_reason,
            "created_at": self.created_at.isoformat(),
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "disconnected_at": (self.disconnected_at.isoformat() if self.disconnected_at else None),
        }

    def admin_dict(self) -> dict[str, Any]:
        """With the department and critical team, for administrators."""
        return {**self.as_dict(), "department": self.department, "team": self.team}


@dataclass(frozen=True)
class Outcome:
    result: str  # assigned | reconnected | pending
    session: SessionInfo
    connect: Connect | None


def pool_view(pool: PoolInfo) -> PoolView:
    """The placement view of a pool from the fleet overview (entitlement checks)."""
    return PoolView(
        id=pool.id,
        name=pool.name,
        type=PoolType(pool.type),
        max_sessions=pool.max_sessions,
        field=pool.for_field_work,
        departments=frozenset(pool.departments),
        users=frozenset(pool.users),
        open_sessions=pool.open_sessions,
    )


def _info(row: Row[Any]) -> SessionInfo:
    return SessionInfo(
        id=row.id,
        user=row.user_name,
        department=row.department,
        team=row.team,
        pool=row.pool_name,
        protocol=row.protocol,
        state=row.state,
        work_mode=row.work_mode,
        desktop=row.desktop_name,
        host=row.host_name,
        end_reason=row.end_reason,
        created_at=row.created_at,
        activated_at=row.activated_at,
        ended_at=row.ended_at,
        disconnected_at=row.disconnected_at if row.state == "disconnected" else None,
    )


async def _connect(
    rt: Runtime,
    conn: Executor,
    session: SessionInfo,
    user_id: int,
    address: str | None,
    port: int,
    now: dt.datetime,
    missing: bool = False,
    *,
    touch: bool = True,
) -> Connect | None:
    """Connection details with a fresh ticket, for a session whose desktop is ready.
    None for a desktop missing from its host's reports: its endpoint is gone.

    Asking for a ticket is use of the session: with `touch` its activity clock
    restarts, so the disconnect timeout cannot end it in the moment between the
    ticket and the tunnel (a new session was made `now` and needs no touch)."""
    ready = session.state in (SessionState.ACTIVE, SessionState.DISCONNECTED)
    if not ready or not address or missing:
        return None
    settings = rt.settings
    ticket = await tickets.issue(conn, session.id, user_id, now, settings.ticket_ttl_s)
    if touch:
        await conn.execute(_TOUCH, {"session_id": session.id, "now": now})
    return Connect(
        gateway_host=settings.effective_gateway_public_host,
        gateway_port=settings.effective_gateway_public_port,
        user=session.user,
        ticket=ticket,
        expires_in=settings.ticket_ttl_s,
        protocol=session.protocol,
        local_port=LOCAL_PORTS.get(session.protocol, 13389),
        desktop_address=address,
        desktop_port=port,
        host_key_fingerprint=rt.gateway_fingerprint,
    )


async def _row(conn: Executor, session_id: str) -> Row[Any] | None:
    return (await conn.execute(_BY_ID, {"session_id": session_id})).first()


async def _reread(conn: Executor, session_id: str) -> Row[Any]:
    """The session's row again, after this transaction changed it."""
    row = await _row(conn, session_id)
    assert row is not None, "a session vanished inside its own transaction"
    return row


# -- request ---------------------------------------------------------------------


async def request_session(
    rt: Runtime, user: User, pool_name: str, work_mode: WorkMode | None, language: str
) -> Outcome:
    started = time.perf_counter()
    mode = work_mode or WorkMode(user.work_mode)
    for attempt in range(ATTEMPTS):
        try:
            outcome = await _try_request(rt, user, pool_name, mode, language)
        except IntegrityError:
            # A parallel request of the same user, or a desktop taken under our
            # feet: the database refused the double; look again.
            if attempt == ATTEMPTS - 1:
                raise
            continue
        except Refused as refused:
            rt.telemetry.assignment(pool_name, refused.code, time.perf_counter() - started)
            await _audit_refusal(rt, refused)
            raise
        if outcome is not None:
            elapsed = time.perf_counter() - started
            rt.telemetry.assignment(pool_name, outcome.result, elapsed)
            if outcome.result == "assigned":
                rt.telemetry.launch(pool_name, elapsed)
            return outcome
    raise VdiError("The desktop could not be assigned; try again.", code="retry", status=503)


async def _try_request(
    rt: Runtime, user: User, pool_name: str, mode: WorkMode, language: str
) -> Outcome | None:
    now = rt.clock.now()
    async with rt.db.write_conn() as conn:
        found = await snapshot.find_pool(conn, pool_name, user.id, lock=not rt.db.is_sqlite)
        if found is None:
            raise NotFound(unknown_pool(pool_name, language), code="unknown_pool")
        pool = found.view
        existing = None
        if found.open_session is not None:
            existing = (await conn.execute(_STILL_OPEN, {"session_id": found.open_session})).first()
        if existing is not None:
            if existing.missing:
                # No ticket for a desktop that is gone. Once it has been gone for
                # the grace, the lifecycle ends the session and a new request
                # gets another desktop (broker.sessions.lifecycle).
                gone = Refuse(RefusalCode.HOST_UNAVAILABLE, {"pool": pool.name}, "desktop_missing")
                raise Refused(gone, language, pool.name, user.name)
            return await _reconnect(rt, conn, existing, now)

        me = snapshot.user_view(user)
        # Home requests of a capped department wait for each other (PostgreSQL;
        # SQLite's write transactions run one at a time anyway).
        policy = await snapshot.load_policy(
            conn,
            rt.settings,
            me,
            lock_department=mode is WorkMode.HOME and not rt.db.is_sqlite,
            reserve=pool.priority_reserve > 0,
        )
        req = Request(me, mode, now)
        per_host = await rt.pool_desktops.get(
            pool.id, lambda: snapshot.pool_desktops_per_host(conn, pool.id)
        )
        snap = await snapshot.build_snapshot(
            conn,
            rt.settings,
            req,
            pool,
            policy,
            complete=False,
            desktops_per_host=per_host,
            views=rt.host_views,
            board=rt.host_board,
        )
        decision = place(req, snap, policy)
        if could_do_better(decision, snap):
            # Nothing running among the best hosts: look at every host, with
            # fresh desktop counts.
            per_host = await snapshot.pool_desktops_per_host(conn, pool.id)
            snap = await snapshot.build_snapshot(
                conn,
                rt.settings,
                req,
                pool,
                policy,
                complete=True,
                desktops_per_host=per_host,
                views=rt.host_views,
                board=rt.host_board,
            )
            decision = place(req, snap, policy)
        if isinstance(decision, Refuse):
            raise Refused(decision, language, pool.name, user.name)
        desktop = (
            await conn.execute(
                _TAKE[(decision.claim, not rt.db.is_sqlite)],
                {"desktop_id": decision.desktop_id, "user_id": user.id},
            )
        ).first()
        if desktop is None:
            return None  # another request holds the desktop
        rt.host_board.took(pool.id, decision.host_id)
        session_id = str(uuid.uuid4())
        state = SessionState.PENDING if decision.start else SessionState.ACTIVE
        await conn.execute(
            _INSERT_SESSION,
            {
                "id": session_id,
                "user_id": user.id,
                "pool_id": pool.id,
                "desktop_id": decision.desktop_id,
                "host_id": decision.host_id,
                "department": user.department,
                "state": state.value,
                "work_mode": mode.value,
                "end_reason": None,
                "created_at": now,
                "activated_at": now if state is SessionState.ACTIVE else None,
                "disconnected_at": None,
                "ended_at": None,
                "last_activity_at": now,
            },
        )
        info = SessionInfo(
            id=session_id,
            user=user.name,
            department=user.department,
            team=user.team,
            pool=pool.name,
            protocol=found.protocol,
            state=state.value,
            work_mode=mode.value,
            desktop=desktop.name,
            host=snap.hosts[decision.host_id].name,
            end_reason=None,
            created_at=now,
            activated_at=now if state is SessionState.ACTIVE else None,
            ended_at=None,
        )
        if decision.start:
            await actions.queue(
                conn,
                now,
                host_id=decision.host_id,
                desktop_id=decision.desktop_id,
                desktop_name=desktop.name,
                kind=ActionKind.START,
                reason="assign",
            )
        await audit.record(
            conn,
            now,
            "session_started",
            username=user.name,
            result="pending" if decision.start else "assigned",
            detail={
                "pool": pool.name,
                "desktop": info.desktop,
                "host": info.host,
                "work_mode": mode.value,
            },
        )
        connect = await _connect(
            rt, conn, info, user.id, desktop.address, desktop.port, now, touch=False
        )
        return Outcome("pending" if decision.start else "assigned", info, connect)


async def _audit_refusal(rt: Runtime, refused: Refused) -> None:
    """Audit a refusal in a transaction of its own: the request's transaction,
    which the refusal ends, rolls back everything written in it."""
    async with rt.db.write_conn() as conn:
        await audit.record(
            conn,
            rt.clock.now(),
            "session_refused",
            username=refused.user,
            result=refused.refusal.code.value,
            detail={"pool": refused.pool, "reason": refused.refusal.reason or None},
        )


async def _reconnect(rt: Runtime, conn: Executor, row: Row[Any], now: dt.datetime) -> Outcome:
    if row.state == SessionState.PENDING:
        promoted = await promote_ready(rt, conn, now, session_id=row.id)
        if promoted:
            row = await _reread(conn, row.id)
    info = _info(row)
    connect = await _connect(rt, conn, info, row.user_id, row.address, row.port, now, row.missing)
    result = "pending" if row.state == SessionState.PENDING else "reconnected"
    await audit.record(
        conn,
        now,
        "session_reconnected",
        username=row.user_name,
        result=result,
        detail={"pool": row.pool_name, "desktop": row.desktop_name},
    )
    return Outcome(result, info, connect)


# -- look up -------------------------------------------------------------------------


async def get_session(rt: Runtime, user: User, session_id: str, *, admin: bool) -> Outcome:
    """A session of the caller (or any, for an administrator); with connection
    details and a fresh ticket once the desktop is ready."""
    now = rt.clock.now()
    async with rt.db.write_conn() as conn:
        row = await _row(conn, session_id)
        if row is None or (row.user_id != user.id and not admin):
            raise NotFound("There is no such session.", code="unknown_session")
        if row.state == SessionState.PENDING and await promote_ready(rt, conn, now, row.id):
            row = await _reread(conn, session_id)
        info = _info(row)
        connect = None
        if row.user_id == user.id:
            connect = await _connect(
                rt, conn, info, row.user_id, row.address, row.port, now, row.missing
            )
    state = info.state
    return Outcome("pending" if state == SessionState.PENDING else state, info, connect)


async def pools_for(rt: Runtime, user: User) -> list[PoolInfo]:
    """The pools this user may use, by name, with their free places now (the
    staff's list of desktops, in the API and the portal)."""
    state = await fleet.read(rt)
    me = snapshot.user_view(user)
    request = Request(me, me.work_mode, state.now)
    return [
        pool
        for pool in sorted(state.pools.values(), key=lambda p: p.name)
        if entitlement(request, pool_view(pool)) is None
    ]


async def sessions_of(rt: Runtime, user_id: int) -> list[SessionInfo]:
    async with rt.db.read_conn() as conn:
        rows = (
            await conn.execute(
                _INFO.where(_sessions.c.user_id == user_id, SESSION_OPEN).order_by(
                    _sessions.c.created_at
                )
            )
        ).all()
    return [_info(r) for r in rows]


async def open_sessions(rt: Runtime) -> list[SessionInfo]:
    async with rt.db.read_conn() as conn:
        rows = (
            await conn.execute(_INFO.where(SESSION_OPEN).order_by(_pools.c.name, _users.c.name))
        ).all()
    return [_info(r) for r in rows]


# -- state changes -----------------------------------------------------------------------


async def promote_ready(
    rt: Runtime, conn: Executor, now: dt.datetime, session_id: str | None = None
) -> int:
    """Pending sessions whose desktop is now running and answers become active.

    Their activity clock starts then: the time the user has to connect (the
    pool's disconnect timeout for a session with no tunnel, see
    broker.sessions.lifecycle) and the idle timeout count from the desktop
    being ready, not from the request, however long it took to start."""
    # As broker.placement.filters.desktop_ready: running, not missing, its
    # console answered and there is one to tunnel to. A guest that comes up
    # without an endpoint stays pending (and ends as a start that timed out)
    # rather than become active with nothing to connect to.
    ready = select(_desktops.c.id).where(
        snapshot.RUNNING_WITH_CONSOLE, _desktops.c.missing.is_(False)
    )
    stmt = (
        update(_sessions)
        .where(_sessions.c.state == SessionState.PENDING.value, _sessions.c.desktop_id.in_(ready))
        .values(state=SessionState.ACTIVE.value, activated_at=now, last_activity_at=now)
        .returning(_sessions.c.pool_id, _sessions.c.created_at)
    )
    if session_id is not None:
        stmt = stmt.where(_sessions.c.id == session_id)
    rows = (await conn.execute(stmt)).all()
    if rows:
        names = dict((await conn.execute(select(_pools.c.id, _pools.c.name))).all())
        for pool_id, created in rows:
            rt.telemetry.launch(names.get(pool_id, "?"), (now - created).total_seconds())
    return len(rows)


async def end_start_timeouts(
    rt: Runtime, conn: Executor, now: dt.datetime, pending_since: dt.datetime
) -> list[str]:
    """End sessions pending since before `pending_since` as `start_timeout`.

    Each counts in the launch histogram with the time it waited: a launch that
    never finished took at least that long. Counting only the launches that
    succeed would leave a pool whose desktops never come up without a single
    slow launch, and VdiSessionLaunchSlow silent exactly when staff wait most.
    """
    ended = await end_where(
        rt,
        conn,
        and_(
            _sessions.c.state == SessionState.PENDING.value,
            _sessions.c.created_at < pending_since,
        ),
        "start_timeout",
        now,
        "broker",
    )
    if ended:
        rows = await conn.execute(
            select(_pools.c.name, _sessions.c.created_at)
            .join(_pools, _pools.c.id == _sessions.c.pool_id)
            .where(_sessions.c.id.in_(ended))
        )
        for pool, created in rows:
            rt.telemetry.launch_timed_out(pool, (now - created).total_seconds())
    return ended


_ENDED = (
    _sessions.c.id,
    _sessions.c.desktop_id,
    _sessions.c.user_id,
)


async def end_where(
    rt: Runtime, conn: Executor, where: Any, reason: str, now: dt.datetime, actor: str
) -> list[str]:
    """End the open sessions matching `where`; recycle their floating desktops."""
    ended = (
        await conn.execute(
            update(_sessions)
            .where(SESSION_OPEN, where)
            .values(state=SessionState.ENDED.value, end_reason=reason, ended_at=now)
            .returning(*_ENDED)
        )
    ).all()
    if not ended:
        return []
    desktop_ids = [r.desktop_id for r in ended if r.desktop_id is not None]
    if desktop_ids:
        rows = (
            await conn.execute(
                select(_desktops.c.id, _desktops.c.name, _desktops.c.host_id, _pools.c.type)
                .join(_pools, _pools.c.id == _desktops.c.pool_id)
                .where(_desktops.c.id.in_(desktop_ids))
            )
        ).all()
        for d in rows:
            if d.type == PoolType.FLOATING:
                # A floating desktop goes back clean: reset by the agent, and
                # not handed out again until the reset is done.
                await actions.reset_for_reuse(
                    conn,
                    now,
                    host_id=d.host_id,
                    desktop_id=d.id,
                    desktop_name=d.name,
                    reason="recycle",
                )
            else:
                await conn.execute(
                    update(_desktops).where(_desktops.c.id == d.id).values(idle_since=now)
                )
    await audit.record(
        conn,
        now,
        "sessions_ended",
        actor=actor,
        result=reason,
        detail={"count": len(ended), "sessions": [r.id for r in ended][:50]},
    )
    return [r.id for r in ended]


async def end_session(
    rt: Runtime, user: User, session_id: str, *, admin: bool, reason: str
) -> SessionInfo:
    now = rt.clock.now()
    async with rt.db.write_conn() as conn:
        row = await _row(conn, session_id)
        if row is None or (row.user_id != user.id and not admin):
            raise NotFound("There is no such session.", code="unknown_session")
        await end_where(rt, conn, _sessions.c.id == session_id, reason, now, user.name)
        row = await _reread(conn, session_id)
    return _info(row)
