"""Reading what placement needs from the store, inside the assignment transaction.

The reads are shaped so their cost does not grow with the number of desktops:
aggregates come back per host, and of each host's free desktops only the first
ready one and the first startable one (by name) are read. That is all place()
can choose from a host anyway; its rules check them again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, case, exists, func, or_, select
from sqlalchemy.engine import Row

from broker.config import Settings
from broker.domain import HostState, PoolType, WorkMode
from broker.hosts.health import is_up
from broker.placement.load_index import HostLoad, load_index
from broker.placement.model import DesktopView, HostView, Policy, PoolView, Snapshot, UserView
from broker.policy.quota import DepartmentCap
from broker.policy.schedule import Window, applicable, parse_days, parse_time
from broker.store.db import Executor
from broker.store.tables import (
    DepartmentPolicy,
    Desktop,
    Host,
    HostAction,
    Pool,
    PoolEntitlement,
    PriorityClass,
    Schedule,
    Session,
    User,
    table,
)

_pools = table(Pool)
_ents = table(PoolEntitlement)
_hosts = table(Host)
_desktops = table(Desktop)
_sessions = table(Session)
_users = table(User)
_actions = table(HostAction)
_dept = table(DepartmentPolicy)
_schedules = table(Schedule)
_priority = table(PriorityClass)

OPEN = _sessions.c.state != "ended"

_open_on_desktop = exists().where(_sessions.c.desktop_id == _desktops.c.id, OPEN)
_start_queued = exists().where(
    _actions.c.desktop_id == _desktops.c.id,
    _actions.c.state == "queued",
    _actions.c.kind == "start",
)

_HOSTS = select(
    _hosts.c.id,
    _hosts.c.name,
    _hosts.c.state,
    _hosts.c.last_report_at,
    _hosts.c.cpu_ratio,
    _hosts.c.memory_total,
    _hosts.c.memory_available,
    _hosts.c.session_capacity,
    _hosts.c.desktop_count,
)

_HOST_SESSIONS = (
    select(
        _desktops.c.host_id,
        func.count().label("open"),
        func.sum(
            case(
                (
                    or_(
                        _sessions.c.state == "pending",
                        _hosts.c.last_report_at.is_(None),
                        _sessions.c.created_at > _hosts.c.last_report_at,
                    ),
                    1,
                ),
                else_=0,
            )
        ).label("logons"),
    )
    .select_from(_sessions)
    .join(_desktops, _desktops.c.id == _sessions.c.desktop_id)
    .join(_hosts, _hosts.c.id == _desktops.c.host_id)
    .where(OPEN)
    .group_by(_desktops.c.host_id)
)

_TEAM_SESSIONS = (
    select(_desktops.c.host_id, func.count().label("n"))
    .select_from(_sessions)
    .join(_users, _users.c.id == _sessions.c.user_id)
    .join(_desktops, _desktops.c.id == _sessions.c.desktop_id)
    .where(OPEN, _users.c.team == bindparam("team"))
    .group_by(_desktops.c.host_id)
)

_POOL_DESKTOPS = (
    select(_desktops.c.host_id, func.count().label("n"))
    .where(_desktops.c.pool_id == bindparam("pool_id"), _desktops.c.missing.is_(False))
    .group_by(_desktops.c.host_id)
)

_DESKTOP_COLUMNS = (
    _desktops.c.id,
    _desktops.c.name,
    _desktops.c.host_id,
    _desktops.c.power_state,
    _desktops.c.probe_ok,
    _desktops.c.missing,
    _desktops.c.assigned_user_id,
    _desktops.c.needs_reset,
)


def _candidates_query(persistent: bool):  # type: ignore[no-untyped-def]
    free = [
        _desktops.c.pool_id == bindparam("pool_id"),
        _desktops.c.missing.is_(False),
        _desktops.c.needs_reset.is_(False),
        or_(
            and_(_desktops.c.power_state == "running", _desktops.c.probe_ok.isnot(False)),
            and_(_desktops.c.power_state == "stopped", ~_start_queued),
        ),
        ~_open_on_desktop,
    ]
    if persistent:
        free.append(_desktops.c.assigned_user_id.is_(None))
    ranked = (
        select(
            *_DESKTOP_COLUMNS,
            func.row_number()
            .over(
                partition_by=(_desktops.c.host_id, _desktops.c.power_state),
                order_by=_desktops.c.name,
            )
            .label("rank"),
        )
        .where(*free)
        .subquery()
    )
    return select(*(ranked.c[c.name] for c in _DESKTOP_COLUMNS)).where(ranked.c.rank == 1)


_CANDIDATES = {False: _candidates_query(False), True: _candidates_query(True)}

_OWN_DESKTOP = select(
    *_DESKTOP_COLUMNS,
    _open_on_desktop.label("busy"),
    _start_queued.label("starting"),
).where(
    _desktops.c.pool_id == bindparam("pool_id"),
    _desktops.c.assigned_user_id == bindparam("user_id"),
)


@dataclass(frozen=True)
class PoolRecord:
    view: PoolView
    protocol: str


async def find_pool(conn: Executor, name: str, *, lock: bool) -> PoolRecord | None:
    """The pool with its entitlements and licences in use. With `lock`, the pool
    row is locked (PostgreSQL), so assignments in one pool happen one at a time:
    that is what keeps the licence count exact under a logon storm."""
    query = select(_pools).where(_pools.c.name == name)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    ents = (
        await conn.execute(select(_ents.c.kind, _ents.c.value).where(_ents.c.pool_id == row.id))
    ).all()
    open_sessions = await conn.scalar(
        select(func.count()).select_from(_sessions).where(_sessions.c.pool_id == row.id, OPEN)
    )
    view = PoolView(
        id=row.id,
        name=row.name,
        type=PoolType(row.type),
        max_sessions=row.max_sessions,
        field=row.field,
        departments=frozenset(v for k, v in ents if k == "department"),
        users=frozenset(v for k, v in ents if k == "user"),
        priority_reserve=row.priority_reserve,
        open_sessions=int(open_sessions or 0),
    )
    return PoolRecord(view, row.protocol)


def user_view(user: User) -> UserView:
    return UserView(
        id=user.id,
        name=user.name,
        department=user.department,
        work_mode=WorkMode(user.work_mode),
        priority_class=user.priority_class,
        team=user.team,
    )


def _desktop(
    row: Row[tuple[object, ...]], busy: bool = False, starting: bool = False
) -> DesktopView:
    return DesktopView(
        id=row.id,
        name=row.name,
        host_id=row.host_id,
        power_state=row.power_state,
        probe_ok=row.probe_ok,
        missing=row.missing,
        busy=busy,
        owner_id=row.assigned_user_id,
        needs_reset=row.needs_reset,
        starting=starting,
    )


async def build_snapshot(
    conn: Executor,
    settings: Settings,
    user: UserView,
    pool: PoolView,
    now: dt.datetime,
    department_cap: DepartmentCap | None,
) -> Snapshot:
    host_rows = (await conn.execute(_HOSTS)).all()
    per_host = {r.host_id: r for r in (await conn.execute(_HOST_SESSIONS)).all()}
    team: Mapping[int, int] = {}
    if user.team:
        team = {
            r.host_id: r.n for r in (await conn.execute(_TEAM_SESSIONS, {"team": user.team})).all()
        }
    pool_desktops = {
        r.host_id: r.n for r in (await conn.execute(_POOL_DESKTOPS, {"pool_id": pool.id})).all()
    }
    hosts = {}
    for h in host_rows:
        counts = per_host.get(h.id)
        sessions = int(counts.open) if counts else 0
        logons = int(counts.logons or 0) if counts else 0
        capacity = h.session_capacity if h.session_capacity is not None else h.desktop_count
        load = load_index(
            HostLoad(h.cpu_ratio, h.memory_total, h.memory_available, sessions, capacity, logons),
            settings.load_index,
        )
        hosts[h.id] = HostView(
            id=h.id,
            name=h.name,
            state=HostState(h.state),
            up=is_up(
                h.last_report_at, now, settings.report_interval, settings.host_down_after_missed
            ),
            load=load,
            sessions=sessions,
            capacity=capacity,
            team_sessions={user.team: team.get(h.id, 0)} if user.team else {},
            pool_desktops=pool_desktops.get(h.id, 0),
        )
    persistent = pool.type is PoolType.PERSISTENT
    by_host: dict[int, list[DesktopView]] = {}
    for row in (await conn.execute(_CANDIDATES[persistent], {"pool_id": pool.id})).all():
        by_host.setdefault(row.host_id, []).append(_desktop(row))
    for group in by_host.values():
        group.sort(key=lambda d: d.name)
    own = None
    if persistent:
        own_row = (
            await conn.execute(_OWN_DESKTOP, {"pool_id": pool.id, "user_id": user.id})
        ).first()
        if own_row is not None:
            own = _desktop(own_row, busy=bool(own_row.busy), starting=bool(own_row.starting))
    remote = staff = 0
    if department_cap is not None:
        remote = int(
            await conn.scalar(
                select(func.count())
                .select_from(_sessions)
                .join(_users, _users.c.id == _sessions.c.user_id)
                .where(
                    OPEN,
                    _sessions.c.work_mode == WorkMode.HOME.value,
                    _users.c.department == user.department,
                )
            )
            or 0
        )
        if department_cap.share is not None:
            staff = int(
                await conn.scalar(
                    select(func.count())
                    .select_from(_users)
                    .where(_users.c.department == user.department)
                )
                or 0
            )
    return Snapshot(
        pool=pool,
        hosts=hosts,
        desktops_by_host=by_host,
        own_desktop=own,
        department_remote_sessions=remote,
        department_staff=staff,
    )


async def load_policy(conn: Executor, settings: Settings, user: UserView) -> Policy:
    dept = (await conn.execute(select(_dept).where(_dept.c.department == user.department))).first()
    cap = None
    if dept is not None and (dept.remote_cap is not None or dept.remote_share is not None):
        cap = DepartmentCap(user.department, dept.remote_cap, dept.remote_share)
    rows = (
        await conn.execute(
            select(_schedules).where(
                or_(
                    and_(_schedules.c.scope == "user", _schedules.c.subject == user.name),
                    and_(
                        _schedules.c.scope == "department", _schedules.c.subject == user.department
                    ),
                )
            )
        )
    ).all()
    mine = [_window(r) for r in rows if r.scope == "user"]
    theirs = [_window(r) for r in rows if r.scope == "department"]
    classes = frozenset((await conn.scalars(select(_priority.c.name))).all())
    return Policy(
        load=settings.load_index,
        timezone=ZoneInfo(settings.timezone),
        department_cap=cap,
        windows=applicable(mine, theirs),
        priority_classes=classes,
    )


def _window(row: Row[tuple[object, ...]]) -> Window:
    return Window(parse_days(str(row.days)), parse_time(str(row.start)), parse_time(str(row.end)))
