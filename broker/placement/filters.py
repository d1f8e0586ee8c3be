"""The rules of placement, one each, as plain functions.

Request rules look at the request as a whole and either pass (None) or refuse
with a code. Host and desktop rules are predicates over one candidate. Nova's
scheduler filters were the model: small, named, testable on their own.
"""

from __future__ import annotations

from broker.capacity import countable_desktops
from broker.domain import PoolType, RefusalCode, WorkMode
from broker.placement.model import (
    DesktopView,
    HostView,
    Policy,
    PoolView,
    Refuse,
    Request,
    Snapshot,
)
from broker.policy import priority, quota, schedule

# -- request rules ---------------------------------------------------------------


def entitlement(req: Request, pool: PoolView) -> Refuse | None:
    """The pool is open to the user's department or to the user by name (no
    entitlements at all: open to everybody); field pools are for field work."""
    params = {"pool": pool.name}
    if req.work_mode is WorkMode.FIELD and req.user.work_mode is not WorkMode.FIELD:
        return Refuse(RefusalCode.NOT_ENTITLED, params, "field_mode")
    if pool.field and req.work_mode is not WorkMode.FIELD:
        return Refuse(RefusalCode.NOT_ENTITLED, params, "field_pool")
    if not pool.departments and not pool.users:
        return None
    if req.user.department in pool.departments or req.user.name in pool.users:
        return None
    return Refuse(RefusalCode.NOT_ENTITLED, params)


def telework_schedule(req: Request, policy: Policy) -> Refuse | None:
    """Home work only inside the user's (or department's) agreed windows."""
    if req.work_mode is not WorkMode.HOME or policy.windows is None:
        return None
    local = req.now.astimezone(policy.timezone)
    if schedule.allowed(policy.windows, local):
        return None
    return Refuse(
        RefusalCode.OUTSIDE_SCHEDULE,
        {
            "windows_de": "; ".join(w.describe(german=True) for w in policy.windows),
            "windows_en": "; ".join(w.describe() for w in policy.windows),
        },
    )


def department_cap(req: Request, snap: Snapshot, policy: Policy) -> Refuse | None:
    """At most N (or a share) of a department's staff at home at once; field
    work is free. Someone at home already, in another pool, is one of them:
    a second session does not add a person."""
    if req.work_mode is not WorkMode.HOME or policy.department_cap is None:
        return None
    if snap.requester_at_home:
        return None
    limit = policy.department_cap.limit(snap.department_staff)
    if quota.over_cap(limit, snap.department_remote_staff):
        return Refuse(
            RefusalCode.DEPARTMENT_QUOTA, {"department": req.user.department, "limit": limit}
        )
    return None


def licence(snap: Snapshot) -> Refuse | None:
    pool = snap.pool
    if pool.open_sessions >= pool.max_sessions:
        return Refuse(
            RefusalCode.LICENCE_LIMIT, {"pool": pool.name, "max_sessions": pool.max_sessions}
        )
    return None


def priority_reserve(req: Request, snap: Snapshot, policy: Policy) -> Refuse | None:
    """Above (1 - reserve) of the usable capacity only priority staff are served."""
    if snap.pool.priority_reserve <= 0:
        return None  # the capacity need not be counted
    capacity = usable_capacity(snap)
    is_priority = priority.is_priority(req.user.priority_class, policy.priority_classes)
    if priority.reserve_blocks(
        snap.pool.open_sessions, capacity, snap.pool.priority_reserve, is_priority
    ):
        return Refuse(RefusalCode.CAPACITY_FULL, {"pool": snap.pool.name}, "priority_reserve")
    return None


# -- host and desktop rules ------------------------------------------------------------


def host_accepting(host: HostView | None) -> bool:
    """Up (reports are fresh) and active (not draining, not in maintenance)."""
    return host is not None and host.accepting


def host_has_headroom(host: HostView, policy: Policy) -> bool:
    """Room for one more desktop to run: below its capacity and not full by load."""
    return host.sessions < host.capacity and host.load_index < policy.load.full_index


def desktop_usable(d: DesktopView) -> bool:
    """Exists, is not in use, and is clean (a floating desktop is reset before reuse)."""
    return not d.missing and not d.busy and not d.needs_reset


def desktop_ready(d: DesktopView) -> bool:
    """Running, with a console to tunnel to, which answered the agent's last probe.
    (Without an endpoint the session would be active with nothing to connect to,
    holding a licence until a timeout.)"""
    return (
        desktop_usable(d)
        and d.power_state == "running"
        and d.has_endpoint
        and d.probe_ok is not False
    )


def desktop_startable(d: DesktopView) -> bool:
    return desktop_usable(d) and d.power_state == "stopped" and not d.starting


def desktop_free_for(d: DesktopView, pool: PoolView, user_id: int) -> bool:
    """In a persistent pool a desktop belongs to one user; others may not take it."""
    if pool.type is PoolType.PERSISTENT:
        return d.owner_id is None or d.owner_id == user_id
    return True


# -- capacity ---------------------------------------------------------------------------


def usable_capacity(snap: Snapshot) -> int:
    """Sessions the pool can hold now: its licences, bounded by its desktops on
    accepting hosts (busy ones included: they hold a session; stopped ones as far
    as the host's session capacity lets them start), plus the sessions going on
    on up hosts that take no new ones (draining): the rule of the capacity
    gauges (broker.capacity.usable). Desktops out of service are not in the
    snapshot's counts (HostView.pool_desktops), as they are not in the gauges'."""
    # broker.capacity.usable's sum in one pass: it runs for many requests.
    desktops = 0
    for h in snap.hosts.values():
        if h.accepting:
            running = h.pool_desktops - h.pool_stopped
            others = h.sessions - h.pool_sessions
            desktops += countable_desktops(running, h.pool_stopped, h.capacity, others)
        elif h.up:
            desktops += h.pool_sessions
    return min(snap.pool.max_sessions, desktops)
