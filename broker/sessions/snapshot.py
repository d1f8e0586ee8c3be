"""Reading what placement needs from the store, inside the assignment transaction.

The reads are shaped so their cost does not grow with the number of desktops:
aggregates come back per host, and of each host's free desktops only the first
ready one and the first startable one (by name) are read. That is all place()
can choose from a host anyway; its rules check them again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
)
from sqlalchemy.engine import Row

from agent.protocol import ActionKind
from broker.config import Settings
from broker.domain import HostState, PoolType, WorkMode
from broker.hosts.health import fresh_after
from broker.placement.model import (
    DesktopView,
    HostView,
    Policy,
    PoolDesktops,
    PoolView,
    Request,
    Snapshot,
    UserView,
)
from broker.placement.place import rank_hosts
from broker.placement.ranking import first
from broker.policy.quota import DepartmentCap
from broker.policy.schedule import Window, applicable
from broker.sessions.host_board import HostBoard, HostRow
from broker.sessions.host_views import HostFigures, HostViews
from broker.store.db import Executor
from broker.store.tables import (
    CAP_STAFF,
    SESSION_OPEN,
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


_open_on_desktop = exists().where(_sessions.c.desktop_id == _desktops.c.id, SESSION_OPEN)
_start_queued = exists().where(
    _actions.c.desktop_id == _desktops.c.id,
    _actions.c.state == "queued",
    _actions.c.kind == "start",
)

# Logons: sessions still starting, and sessions newer than one report interval,
# whose load the host's last report cannot show yet. Counting them at once
# keeps a logon storm from piling onto the host that looked idlest.
LOGONS = func.sum(
    case(
        (or_(_sessions.c.state == "pending", _sessions.c.created_at > bindparam("recent")), 1),
        else_=0,
    )
)

# Per host, from one pass over the open sessions: all of them, the logons among
# them and those of the requested pool.
_HOST_SESSIONS = (
    select(
        _sessions.c.host_id,
        func.count().label("n"),
        LOGONS.label("logons"),
        func.sum(case((_sessions.c.pool_id == bindparam("pool_id"), 1), else_=0)).label("pool_n"),
    )
    .where(SESSION_OPEN, _sessions.c.host_id.isnot(None))
    .group_by(_sessions.c.host_id)
    .subquery()
)
# What placement needs per host, in one read: the host's figures, its open
# sessions and logons, and the pool's sessions on it.
_HOSTS = select(
    _hosts.c.id,
    _hosts.c.name,
    _hosts.c.state,
    # Freshness decided by the database: no timestamp to parse per host.
    func.coalesce(_hosts.c.last_report_at > bindparam("fresh_since"), False).label("up"),
    _hosts.c.cpu_ratio,
    _hosts.c.memory_total,
    _hosts.c.memory_available,
    func.coalesce(_hosts.c.session_capacity, _hosts.c.desktop_count).label("capacity"),
    func.coalesce(_HOST_SESSIONS.c.n, 0).label("sessions"),
    func.coalesce(_HOST_SESSIONS.c.logons, 0).label("logons"),
    func.coalesce(_HOST_SESSIONS.c.pool_n, 0).label("pool_sessions"),
).outerjoin(_HOST_SESSIONS, _HOST_SESSIONS.c.host_id == _hosts.c.id)
# A host's view is built from the columns before pool_sessions (HostViews.view).
_VIEW_COLUMNS = 10

_TEAM_SESSIONS = (
    select(_sessions.c.host_id, func.count().label("n"))
    .join(_users, _users.c.id == _sessions.c.user_id)
    .where(SESSION_OPEN, _users.c.team == bindparam("team"))
    .group_by(_sessions.c.host_id)
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
    _desktops.c.address,
    _desktops.c.port,
)


# A running desktop fit to hand out, in SQL: the power, console and probe
# conditions of broker.placement.filters.desktop_ready. Placement's candidates
# and the promotion of pending sessions (broker.sessions.service) both use it.
RUNNING_WITH_CONSOLE = and_(
    _desktops.c.power_state == "running",
    _desktops.c.probe_ok.isnot(False),
    _desktops.c.address.isnot(None),
    _desktops.c.port.isnot(None),
)


# The last reset of a desktop that waits for one, if it has finished: 'failed'
# until a reset works (then needs_reset is cleared). Read only for the few
# desktops that wait for a reset.
_LAST_RESET = (
    select(_actions.c.state)
    .where(
        _actions.c.desktop_id == _desktops.c.id,
        _actions.c.kind == ActionKind.RESET.value,
        _actions.c.finished_at.isnot(None),
    )
    .order_by(_actions.c.finished_at.desc())
    .limit(1)
    .scalar_subquery()
)
# Nothing to hand out, and not about to be: running with a console that did not
# answer the agent's last probe (refused, timed out, no handshake) or without a
# console endpoint; or waiting for a reset that failed (a broken guest, a
# desktop from a static list in a floating pool). Placement skips such desktops
# (filters.desktop_ready, desktop_usable), so capacity (the gauges', and the
# priority reserve's) must too. A reset on its way for the first time is a
# matter of seconds and does not count.
OUT_OF_SERVICE = case(
    (and_(_desktops.c.power_state == "running", not_(RUNNING_WITH_CONSOLE)), True),
    # The reset history is looked at in THEN, not WHEN: a CASE evaluates its
    # result only for the rows that match, the few waiting for a reset.
    (_desktops.c.needs_reset.is_(True), func.coalesce(_LAST_RESET == "failed", False)),
    else_=False,
)

# Desktops per host that can hold a session, as the capacity gauges count them
# (broker.fleet). They change only with an agent's report; placement uses them
# for capacity estimates only, so a process reuses them briefly (Runtime).
_POOL_DESKTOPS = (
    select(
        _desktops.c.host_id,
        func.count().label("n"),
        func.sum(case((_desktops.c.power_state == "stopped", 1), else_=0)).label("stopped"),
    )
    .where(
        _desktops.c.pool_id == bindparam("pool_id"),
        _desktops.c.missing.is_(False),
        not_(OUT_OF_SERVICE),
    )
    .group_by(_desktops.c.host_id)
)
_NO_DESKTOPS = PoolDesktops(0, 0)


# How many of the best-ranked hosts with room the first read looks at.
FIRST_READ_HOSTS = 4
_FIRST_READ_PARAMS = tuple(f"host{i}" for i in range(FIRST_READ_HOSTS))


def _candidates_query(persistent: bool, some_hosts: bool) -> Select[Any]:
    """The first free ready and the first free startable desktop (by name) of
    each host, for all hosts or for the first-read hosts (_FIRST_READ_PARAMS)."""
    free = [
        _desktops.c.pool_id == bindparam("pool_id"),
        _desktops.c.missing.is_(False),
        _desktops.c.needs_reset.is_(False),
        or_(
            RUNNING_WITH_CONSOLE,
            and_(_desktops.c.power_state == "stopped", ~_start_queued),
        ),
        ~_open_on_desktop,
    ]
    if persistent:
        free.append(_desktops.c.assigned_user_id.is_(None))
    if some_hosts:
        # One parameter per host, not an expanding list: the statement's text
        # stays the same, so it is not rendered anew for every request. The
        # hosts were chosen from the host board, which may be a moment old:
        # whether they take sessions is read here, live (filters.host_accepting).
        chosen = [bindparam(p, type_=Integer) for p in _FIRST_READ_PARAMS]
        accepting = select(_hosts.c.id).where(
            _hosts.c.id.in_(chosen),
            _hosts.c.state == HostState.ACTIVE.value,
            _hosts.c.last_report_at > bindparam("fresh_since"),
        )
        free.append(_desktops.c.host_id.in_(accepting))
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
    # A written 1, not a parameter: PostgreSQL then stops numbering each host's
    # desktops after the first (a run condition), in generic plans too.
    return select(*(ranked.c[c.name] for c in _DESKTOP_COLUMNS)).where(
        ranked.c.rank == literal_column("1")
    )


_CANDIDATES = {
    (persistent, some): _candidates_query(persistent, some)
    for persistent in (False, True)
    for some in (False, True)
}
_OWN_DESKTOP = select(
    *_DESKTOP_COLUMNS,
    _open_on_desktop.label("busy"),
    _start_queued.label("starting"),
).where(
    _desktops.c.pool_id == bindparam("pool_id"),
    _desktops.c.assigned_user_id == bindparam("user_id"),
)


_POOL = select(_pools).where(_pools.c.name == bindparam("name"))
_POOL_FOR_UPDATE = _POOL.with_for_update()
# The pool's licences in use and the requester's open session there, if any
# (at most one: a partial unique index), on every row of its entitlements (one
# row with no entitlement if it has none). Not part of the locking read above:
# on PostgreSQL a statement that waited for the pool's lock still counts with
# the snapshot it took before waiting, and would miss the session that the
# lock's previous holder just committed. A statement after the lock sees it.
_in_pool = _sessions.c.pool_id == _pools.c.id
_LICENCES_AND_ENTITLEMENTS = (
    select(
        select(func.count())
        .select_from(_sessions)
        .where(_in_pool, SESSION_OPEN)
        .scalar_subquery()
        .label("open_sessions"),
        select(_sessions.c.id)
        .where(_in_pool, _sessions.c.user_id == bindparam("user_id"), SESSION_OPEN)
        .scalar_subquery()
        .label("mine"),
        _ents.c.kind,
        _ents.c.value,
    )
    .select_from(_pools)
    .outerjoin(_ents, _ents.c.pool_id == _pools.c.id)
    .where(_pools.c.id == bindparam("pool_id"))
)
_DEPARTMENT = select(_dept).where(_dept.c.department == bindparam("department"))
# The cap's row exists while the department has a cap. Locked by home requests
# (PostgreSQL), it serialises them per department across pools, after the pool
# lock (always in that order, so two requests never wait for each other both
# ways). The pool lock alone would let requests into two pools count at once.
_DEPARTMENT_FOR_UPDATE = _DEPARTMENT.with_for_update()
# The department's staff at home, the requester not counted, and whether the
# requester is at home already (broker.placement.filters.department_cap). A
# statement of its own after the department's lock, for the reason given at
# _LICENCES_AND_ENTITLEMENTS.
_me = _sessions.c.user_id == bindparam("user_id")
_REMOTE_STAFF = select(
    func.count(func.distinct(case((~_me, _sessions.c.user_id)))).label("others"),
    func.count(case((_me, 1))).label("mine"),
).where(
    SESSION_OPEN,
    _sessions.c.work_mode == WorkMode.HOME.value,
    _sessions.c.department == bindparam("department"),
)
_CAP_STAFF = (
    select(func.count())
    .select_from(_users)
    .where(_users.c.department == bindparam("department"), CAP_STAFF)
)
_SCHEDULES = select(_schedules).where(
    or_(
        and_(_schedules.c.scope == "user", _schedules.c.subject == bindparam("user")),
        and_(_schedules.c.scope == "department", _schedules.c.subject == bindparam("department")),
    )
)
_PRIORITY_CLASSES = select(_priority.c.name)


@dataclass(frozen=True)
class PoolRecord:
    view: PoolView
    protocol: str
    open_session: str | None  # the id of the requester's open session in the pool


async def find_pool(conn: Executor, name: str, user_id: int, *, lock: bool) -> PoolRecord | None:
    """The pool with its entitlements, licences in use and the user's open
    session there. With `lock`, the pool row is locked (PostgreSQL), so
    assignments in one pool happen one at a time: that is what keeps the licence
    count exact under a logon storm."""
    row = (await conn.execute(_POOL_FOR_UPDATE if lock else _POOL, {"name": name})).first()
    if row is None:
        return None
    params = {"pool_id": row.id, "user_id": user_id}
    rows = (await conn.execute(_LICENCES_AND_ENTITLEMENTS, params)).all()
    open_sessions = rows[0].open_sessions
    ents = [(r.kind, r.value) for r in rows if r.kind is not None]
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
    return PoolRecord(view, row.protocol, rows[0].mine)


def user_view(user: User) -> UserView:
    return UserView(
        id=user.id,
        name=user.name,
        department=user.department,
        work_mode=WorkMode(user.work_mode),
        priority_class=user.priority_class,
        team=user.team,
    )


def _desktop(row: Row[*tuple[Any, ...]], busy: bool = False, starting: bool = False) -> DesktopView:
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
        has_endpoint=bool(row.address) and bool(row.port),
    )


async def pool_desktops_per_host(conn: Executor, pool_id: int) -> dict[int, PoolDesktops]:
    rows = (await conn.execute(_POOL_DESKTOPS, {"pool_id": pool_id})).all()
    return {host_id: PoolDesktops(n, int(stopped)) for host_id, n, stopped in rows}


async def build_snapshot(
    conn: Executor,
    settings: Settings,
    req: Request,
    pool: PoolView,
    policy: Policy,
    *,
    complete: bool,
    desktops_per_host: Mapping[int, PoolDesktops],
    views: HostViews,
    board: HostBoard,
) -> Snapshot:
    """The snapshot for one request. Unless `complete`, desktops are read only for
    the few best-ranked hosts that have room (by the ranking place() uses), which
    is where place() finds a running desktop; it then is marked incomplete, and
    a decision that needs more (none running there) asks for the complete one.

    An incomplete snapshot of a floating pool without a priority reserve ranks
    the hosts by the board (broker.sessions.host_board) while it holds a fresh
    reading, and for a requester without a critical team takes the ranking
    kept with it; every other snapshot reads the hosts, and such a pool's
    reading is kept on the board."""
    user = req.user
    now = req.now
    department_cap = policy.department_cap
    fresh_since = fresh_after(now, settings.report_interval, settings.host_down_after_missed)
    recent = now - dt.timedelta(seconds=settings.report_interval)
    # Only such a pool's placement merely ranks by the hosts (see the module
    # docstring of broker.sessions.host_board); other pools never keep a reading.
    boarded = pool.type is PoolType.FLOATING and pool.priority_reserve <= 0
    host_rows = board.rows(pool.id, now) if boarded and not complete else None
    if host_rows is None:
        host_rows = await _read_hosts(conn, pool.id, fresh_since, recent)
        if boarded:
            board.keep(pool.id, host_rows, now)

    def view(row: HostRow, team_sessions: int = 0) -> HostView:
        figures, pool_sessions = row
        pool_desktops = desktops_per_host.get(figures[0], _NO_DESKTOPS)
        return views.view(figures, pool.id, pool_desktops, pool_sessions, user.team, team_sessions)

    kept = None
    if boarded and not complete and not user.team:
        kept = board.ranking(pool.id, now, desktops_per_host, view)
    ranked: Sequence[tuple[HostView, float]] | None = None
    if kept is not None:
        hosts, ranked = kept.hosts, kept.ranked
    else:
        team: Mapping[int, int] = {}
        if user.team:
            rows = (await conn.execute(_TEAM_SESSIONS, {"team": user.team})).all()
            team = {r.host_id: r.n for r in rows}
        hosts = {row[0][0]: view(row, team.get(row[0][0], 0)) for row in host_rows}
        if not complete:
            ranked = rank_hosts(req, hosts.values(), policy)
    persistent = pool.type is PoolType.PERSISTENT
    params: dict[str, Any] = {"pool_id": pool.id}
    ranking = None
    if ranked is not None:
        params["fresh_since"] = fresh_since
        # Desktops are read for these hosts only, so place() need look nowhere else.
        ranking = first(ranked, FIRST_READ_HOSTS, _has_room)
        best: list[int | None] = [h.id for h, _ in ranking]
        # Fewer hosts than parameters: NULL matches no host.
        padded = best + [None] * (FIRST_READ_HOSTS - len(best))
        params.update(zip(_FIRST_READ_PARAMS, padded, strict=True))
    by_host: dict[int, list[DesktopView]] = {}
    for row in (await conn.execute(_CANDIDATES[(persistent, not complete)], params)).all():
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
    at_home = False
    if department_cap is not None and req.work_mode is WorkMode.HOME:
        home = (
            await conn.execute(_REMOTE_STAFF, {"user_id": user.id, "department": user.department})
        ).one()
        remote, at_home = int(home.others), bool(home.mine)
        if department_cap.share is not None:
            staff = int(await conn.scalar(_CAP_STAFF, {"department": user.department}) or 0)
    return Snapshot(
        complete=complete,
        pool=pool,
        hosts=hosts,
        desktops_by_host=by_host,
        own_desktop=own,
        department_remote_staff=remote,
        requester_at_home=at_home,
        department_staff=staff,
        ranking=ranking,
    )


def _has_room(host: HostView) -> bool:
    """Room for one more of the pool's sessions among its desktops here."""
    return host.pool_desktops > host.pool_sessions


async def _read_hosts(
    conn: Executor, pool_id: int, fresh_since: dt.datetime, recent: dt.datetime
) -> list[HostRow]:
    rows = await conn.execute(
        _HOSTS, {"fresh_since": fresh_since, "recent": recent, "pool_id": pool_id}
    )
    return [(cast(HostFigures, tuple(row[:_VIEW_COLUMNS])), row[_VIEW_COLUMNS]) for row in rows]


async def load_policy(
    conn: Executor,
    settings: Settings,
    user: UserView,
    *,
    lock_department: bool = False,
    reserve: bool = True,
) -> Policy:
    """The policies that govern the user. With `lock_department`, the department's
    cap row, if it has a cap, is locked (see _DEPARTMENT_FOR_UPDATE). Without
    `reserve` (the pool keeps no priority reserve) the priority classes are not
    read: nothing else asks whether the user is priority staff."""
    query = _DEPARTMENT_FOR_UPDATE if lock_department else _DEPARTMENT
    dept = (await conn.execute(query, {"department": user.department})).first()
    cap = None
    if dept is not None and (dept.remote_cap is not None or dept.remote_share is not None):
        cap = DepartmentCap(user.department, dept.remote_cap, dept.remote_share)
    rows = (
        await conn.execute(_SCHEDULES, {"user": user.name, "department": user.department})
    ).all()
    mine = [_window(r) for r in rows if r.scope == "user"]
    theirs = [_window(r) for r in rows if r.scope == "department"]
    classes: frozenset[str] = frozenset()
    if reserve and user.priority_class is not None:
        classes = frozenset((await conn.scalars(_PRIORITY_CLASSES)).all())
    return Policy(
        load=settings.load_index,
        timezone=ZoneInfo(settings.timezone),
        department_cap=cap,
        windows=applicable(mine, theirs),
        priority_classes=classes,
    )


def _window(row: Row[tuple[object, ...]]) -> Window:
    return Window.stored(str(row.days), str(row.start), str(row.end))
