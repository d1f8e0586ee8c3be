"""A read-only overview of the fleet: hosts, pools, desktops, sessions, departments.

One set of aggregate queries, shared by /metrics, `vdi-broker status`, the
staff's list of desktops and the admin pages. Row counts grow with hosts and
pools, not with desktops or sessions: the database aggregates.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from agent.protocol import PowerState
from broker import capacity
from broker.domain import HostState
from broker.hosts.health import fresh_after, is_up
from broker.hosts.store import FIGURES
from broker.placement.load_index import HostLoad, LoadIndex, load_index
from broker.policy.quota import DepartmentCap
from broker.runtime import Runtime
from broker.sessions.snapshot import LOGONS, OUT_OF_SERVICE
from broker.store.tables import (
    CAP_STAFF,
    SESSION_OPEN,
    DepartmentPolicy,
    Desktop,
    Host,
    HostAction,
    Pool,
    PoolEntitlement,
    Session,
    User,
    table,
)

_hosts = table(Host)
_pools = table(Pool)
_desktops = table(Desktop)
_sessions = table(Session)
_users = table(User)
_dept = table(DepartmentPolicy)
_ents = table(PoolEntitlement)
_actions = table(HostAction)

_HOSTS = select(
    _hosts.c.id,
    _hosts.c.name,
    _hosts.c.state,
    _hosts.c.agent_version,
    _hosts.c.last_report_at,
    _hosts.c.session_capacity,
    _hosts.c.desktop_count,
    *(_hosts.c[f] for f in FIGURES),
)
# Staff at home per department: what a department cap counts (one person with
# home sessions in two pools is one).
_REMOTE = (
    select(_sessions.c.department, func.count(func.distinct(_sessions.c.user_id)))
    .where(SESSION_OPEN, _sessions.c.work_mode == "home", _sessions.c.department.isnot(None))
    .group_by(_sessions.c.department)
)
_DESKTOP_COUNTS = select(
    _desktops.c.pool_id,
    _desktops.c.host_id,
    _desktops.c.power_state,
    _desktops.c.missing,
    OUT_OF_SERVICE,
    func.count(),
).group_by(
    _desktops.c.pool_id,
    _desktops.c.host_id,
    _desktops.c.power_state,
    _desktops.c.missing,
    OUT_OF_SERVICE,
)
# Served by the partial index of open sessions; no join.
_SESSION_COUNTS = (
    select(
        _sessions.c.pool_id,
        _sessions.c.host_id,
        _sessions.c.state,
        _sessions.c.work_mode,
        func.count(),
        LOGONS,
    )
    .where(SESSION_OPEN)
    .group_by(_sessions.c.pool_id, _sessions.c.host_id, _sessions.c.state, _sessions.c.work_mode)
)


@dataclass
class HostInfo:
    id: int
    name: str
    state: str
    agent_version: str | None
    last_report_at: dt.datetime | None
    up: bool
    figures: dict[str, Any]  # the report's figures, by host column name (see ingest)
    capacity: int
    sessions: dict[str, int] = field(default_factory=dict)  # by state
    logons: int = 0
    load: LoadIndex | None = None

    @property
    def accepting(self) -> bool:
        return self.up and self.state == HostState.ACTIVE

    @property
    def open_sessions(self) -> int:
        return sum(self.sessions.values())


@dataclass
class PoolInfo:
    id: int
    name: str
    type: str
    protocol: str
    max_sessions: int
    for_field_work: bool
    departments: set[str]
    users: set[str]
    # Desktops that can take a session: not missing, not out of service.
    desktops_per_host: dict[int, int] = field(default_factory=dict)
    power: dict[str, int] = field(default_factory=dict)
    out_of_service: int = 0  # on an up host, but nothing to hand out (see OUT_OF_SERVICE)
    sessions: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, work_mode)
    usable: int = 0
    without_largest_host: int = 0

    @property
    def open_sessions(self) -> int:
        return sum(self.sessions.values())

    @property
    def free(self) -> int:
        return capacity.free(self.open_sessions, self.usable)

    @property
    def utilization(self) -> float:
        return capacity.utilization(self.open_sessions, self.usable)


@dataclass
class DepartmentInfo:
    name: str
    remote_staff: int = 0  # staff with an open home session
    limit: int | None = None


@dataclass
class Fleet:
    now: dt.datetime
    hosts: dict[int, HostInfo]
    pools: dict[int, PoolInfo]
    departments: dict[str, DepartmentInfo]


async def read(rt: Runtime) -> Fleet:
    settings = rt.settings
    now = rt.clock.now()
    fresh_since = fresh_after(now, settings.report_interval, settings.host_down_after_missed)
    recent_window = dt.timedelta(seconds=settings.report_interval)
    async with rt.db.read() as s:
        host_rows = (await s.execute(_HOSTS)).all()
        pool_rows = (await s.execute(select(_pools))).all()
        ents = (await s.execute(select(_ents.c.pool_id, _ents.c.kind, _ents.c.value))).all()
        desktop_counts = (await s.execute(_DESKTOP_COUNTS)).all()
        session_counts = (await s.execute(_SESSION_COUNTS, {"recent": now - recent_window})).all()
        remote = (await s.execute(_REMOTE)).all()
        policies = (await s.execute(select(_dept))).all()
        shared = [p.department for p in policies if p.remote_share is not None]
        staff: dict[str, int] = {}
        if shared:
            staff = dict(
                (
                    await s.execute(
                        select(_users.c.department, func.count())
                        .where(_users.c.department.in_(shared), CAP_STAFF)
                        .group_by(_users.c.department)
                    )
                ).all()
            )

    hosts: dict[int, HostInfo] = {}
    # Hosts whose agent sets a session capacity (--capacity): the only ones where
    # it can bound a pool (below); without it a host's capacity is its desktops.
    limited: set[int] = set()
    for h in host_rows:
        if h.session_capacity is not None:
            limited.add(h.id)
        cap = h.session_capacity if h.session_capacity is not None else h.desktop_count
        hosts[h.id] = HostInfo(
            id=h.id,
            name=h.name,
            state=h.state,
            agent_version=h.agent_version,
            last_report_at=h.last_report_at,
            up=is_up(h.last_report_at, fresh_since),
            figures={f: getattr(h, f) for f in FIGURES},
            capacity=cap,
            sessions={"pending": 0, "active": 0, "disconnected": 0},
        )
    pools: dict[int, PoolInfo] = {}
    by_pool_ents: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for pool_id, kind, value in ents:
        by_pool_ents[pool_id].append((kind, value))
    for p in pool_rows:
        pools[p.id] = PoolInfo(
            id=p.id,
            name=p.name,
            type=p.type,
            protocol=p.protocol,
            max_sessions=p.max_sessions,
            for_field_work=p.field,
            departments={v for k, v in by_pool_ents[p.id] if k == "department"},
            users={v for k, v in by_pool_ents[p.id] if k == "user"},
        )
    stopped: dict[tuple[int, int], int] = defaultdict(int)  # (pool, limited host)
    for pool_id, host_id, power, missing, out_of_service, n in desktop_counts:
        pool = pools.get(pool_id)
        if pool is None:
            continue
        # Only an up host's reports are current: what a silent host last said
        # about its desktops' power is no longer known.
        up = host_id in hosts and hosts[host_id].up
        key = "missing" if missing else power if up else PowerState.UNKNOWN.value
        pool.power[key] = pool.power.get(key, 0) + n
        if missing:
            continue
        if out_of_service:
            # A down host has its own alert.
            if up:
                pool.out_of_service += n
        else:
            pool.desktops_per_host[host_id] = pool.desktops_per_host.get(host_id, 0) + n
            if power == "stopped" and host_id in limited:
                stopped[(pool_id, host_id)] += n
    # Sessions going on on up hosts that take no new ones (drained, in
    # maintenance): their desktops are in use, and not among the accepting
    # hosts' desktops that usable capacity counts.
    held: dict[int, dict[int, int]] = defaultdict(dict)  # pool -> host -> sessions
    on_pool_host: dict[tuple[int, int], int] = defaultdict(int)
    for pool_id, host_id, state, work_mode, n, recent in session_counts:
        pool = pools.get(pool_id)
        if pool is not None:
            key = (state, work_mode)
            pool.sessions[key] = pool.sessions.get(key, 0) + n
        if host_id in limited:
            on_pool_host[(pool_id, host_id)] += n
        host = hosts.get(host_id) if host_id is not None else None
        if host is not None:
            host.sessions[state] = host.sessions.get(state, 0) + n
            host.logons += int(recent or 0)
            if host.up and not host.accepting:
                on_host = held[pool_id]
                on_host[host.id] = on_host.get(host.id, 0) + n
    # Stopped desktops count only as far as the host's session capacity lets
    # placement start them (capacity.countable_desktops), as the priority
    # reserve counts them too (broker.placement.filters.usable_capacity).
    for (pool_id, host_id), n in stopped.items():
        pool, host = pools[pool_id], hosts[host_id]
        running = pool.desktops_per_host[host_id] - n
        others = host.open_sessions - on_pool_host[(pool_id, host_id)]
        pool.desktops_per_host[host_id] = capacity.countable_desktops(
            running, n, host.capacity, others
        )
    accepting = {h.id for h in hosts.values() if h.accepting}
    for pool in pools.values():
        pool.usable = capacity.usable(
            pool.max_sessions, pool.desktops_per_host, accepting, held[pool.id]
        )
        pool.without_largest_host = capacity.without_largest_host(
            pool.max_sessions, pool.desktops_per_host, accepting, held[pool.id]
        )
    for host in hosts.values():
        if host.up:
            host.load = load_index(
                HostLoad(
                    host.figures["cpu_ratio"],
                    host.figures["memory_total"],
                    host.figures["memory_available"],
                    host.open_sessions,
                    host.capacity,
                    host.logons,
                ),
                settings.load_index,
            )
    departments: dict[str, DepartmentInfo] = {}
    for name, n in remote:
        departments.setdefault(name, DepartmentInfo(name)).remote_staff = n
    for p in policies:
        cap_obj = DepartmentCap(p.department, p.remote_cap, p.remote_share)
        departments.setdefault(p.department, DepartmentInfo(p.department)).limit = cap_obj.limit(
            int(staff.get(p.department, 0))
        )
    return Fleet(now=now, hosts=hosts, pools=pools, departments=departments)
