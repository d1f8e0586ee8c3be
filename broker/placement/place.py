"""place(request, snapshot, policy) -> Decision: where a user's session goes.

1. Request rules, in the order a person would ask: may I use this pool at all
   (entitlement), now (schedule), with my colleagues already at home
   (department cap), with the licences (licence) and the reserve for
   priority staff (priority reserve)?
2. Persistent pools: the user's own desktop, if they have one.
3. Otherwise the best free running desktop: hosts that accept sessions,
   ranked by load index plus a penalty per member of the user's critical team
   already on the host, then host name and desktop name (deterministic).
4. Otherwise a stopped desktop on a host with headroom (it is started; the
   session is pending).
5. Otherwise a refusal: host_unavailable when the pool's hosts are all out,
   capacity_full when they are simply full.
"""

from __future__ import annotations

from collections.abc import Iterable

from broker.domain import PoolType, RefusalCode
from broker.placement import filters
from broker.placement.model import (
    Assign,
    Decision,
    DesktopView,
    HostView,
    Policy,
    Refuse,
    Request,
    Snapshot,
)


def place(req: Request, snap: Snapshot, policy: Policy) -> Decision:
    pool = snap.pool
    refusal = (
        filters.entitlement(req, pool)
        or filters.telework_schedule(req, policy)
        or filters.department_cap(req, snap, policy)
        or filters.licence(snap)
        or filters.priority_reserve(req, snap, policy)
    )
    if refusal is not None:
        return refusal

    own = snap.own_desktop
    if pool.type is PoolType.PERSISTENT and own is not None:
        return _own_desktop(own, snap)

    claim = pool.type is PoolType.PERSISTENT
    ranked = snap.ranking
    if ranked is None:
        ranked = rank_hosts(req, snap.hosts.values(), policy)
    for host, score in ranked:
        for d in snap.desktops_by_host.get(host.id, ()):
            if filters.desktop_ready(d) and filters.desktop_free_for(d, pool, req.user.id):
                return Assign(d.id, host.id, start=False, claim=claim, score=score)
    for host, score in ranked:
        if not filters.host_has_headroom(host, policy):
            continue
        for d in snap.desktops_by_host.get(host.id, ()):
            if filters.desktop_startable(d) and filters.desktop_free_for(d, pool, req.user.id):
                return Assign(d.id, host.id, start=True, claim=claim, score=score)
    return _no_desktop(snap)


def could_do_better(decision: Decision, snap: Snapshot) -> bool:
    """Would a complete snapshot possibly give a better decision? Only when this
    one saw part of the desktops and found no running one: request rules do not
    look at desktops, and a running desktop on a best-ranked host is the best."""
    if snap.complete:
        return False
    if isinstance(decision, Assign):
        return decision.start
    return decision.code in (RefusalCode.CAPACITY_FULL, RefusalCode.HOST_UNAVAILABLE) and (
        decision.reason == ""
    )


def _own_desktop(d: DesktopView, snap: Snapshot) -> Decision:
    host = snap.hosts.get(d.host_id)
    params = {"pool": snap.pool.name}
    if d.missing:
        return Refuse(RefusalCode.HOST_UNAVAILABLE, params, "own_desktop_missing")
    if host is None or not host.up or host.state.value == "maintenance":
        return Refuse(RefusalCode.HOST_UNAVAILABLE, params, "own_desktop_host")
    # A persistent desktop is the user's even on a draining host.
    if filters.desktop_ready(d):
        return Assign(d.id, host.id, start=False, claim=False, score=host.load_index)
    if filters.desktop_startable(d) or d.starting:
        return Assign(d.id, host.id, start=not d.starting, claim=False, score=host.load_index)
    return Refuse(RefusalCode.HOST_UNAVAILABLE, params, "own_desktop_state")


def rank_hosts(
    req: Request, hosts: Iterable[HostView], policy: Policy
) -> list[tuple[HostView, float]]:
    """Accepting hosts, best first: load index plus the critical-team penalty,
    then host name."""
    team = req.user.team
    penalty = policy.load.team_penalty
    ranked = []
    for host in hosts:
        if not filters.host_accepting(host):
            continue
        score = host.load_index
        if team:
            score += penalty * host.team_sessions.get(team, 0)
        ranked.append((host, score))
    ranked.sort(key=lambda pair: (pair[1], pair[0].name))
    return ranked


def _no_desktop(snap: Snapshot) -> Refuse:
    params = {"pool": snap.pool.name}
    hosts_with_desktops = [h for h in snap.hosts.values() if h.pool_desktops > 0]
    if hosts_with_desktops and not any(filters.host_accepting(h) for h in hosts_with_desktops):
        return Refuse(RefusalCode.HOST_UNAVAILABLE, params)
    return Refuse(RefusalCode.CAPACITY_FULL, params)
