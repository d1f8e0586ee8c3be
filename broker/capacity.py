"""Pool capacity arithmetic (pure): what a pool can hold now, and if a host fails."""

from __future__ import annotations

from collections.abc import Mapping


def usable(
    max_sessions: int,
    desktops_per_host: Mapping[int, int],
    accepting: set[int],
    held: Mapping[int, int] | None = None,
) -> int:
    """The licence limit bounded by the pool's desktops on hosts that take sessions,
    plus the ones in use on up hosts that take no new sessions (draining,
    maintenance; `held`, by host): those sessions go on, and count as sessions,
    on desktops the accepting hosts' figure leaves out."""
    return min(max_sessions, sum(_shares(desktops_per_host, accepting, held)))


def without_largest_host(
    max_sessions: int,
    desktops_per_host: Mapping[int, int],
    accepting: set[int],
    held: Mapping[int, int] | None = None,
) -> int:
    """Usable capacity if the host with the largest share of it failed. A drained
    host's share is the desktops its sessions hold there: if it fails, they go
    too, so draining a host never makes a pool look more redundant."""
    shares = _shares(desktops_per_host, accepting, held)
    if not shares:
        return 0
    return min(max_sessions, sum(shares) - max(shares))


def _shares(
    desktops_per_host: Mapping[int, int], accepting: set[int], held: Mapping[int, int] | None
) -> list[int]:
    """Each host's part of the usable capacity: desktops if it takes sessions,
    else those its open sessions hold."""
    shares = {h: n for h, n in desktops_per_host.items() if h in accepting}
    for h, n in (held or {}).items():
        if h not in accepting:
            shares[h] = shares.get(h, 0) + n
    return list(shares.values())


def countable_desktops(running: int, stopped: int, host_capacity: int, other_sessions: int) -> int:
    """A host's desktops of one pool that can hold a session now: the running ones,
    and of the stopped ones only as many as the host's session capacity (the
    agent's --capacity, its resource ceiling) leaves room to start, once the
    other pools' sessions there and this pool's running desktops are counted.
    Placement starts a stopped desktop only while the host is below it."""
    return running + min(stopped, max(0, host_capacity - other_sessions - running))


def utilization(sessions: int, capacity: int) -> float:
    """Sessions over usable capacity; a pool without capacity counts as full."""
    if capacity <= 0:
        return 1.0
    return sessions / capacity


def free(sessions: int, capacity: int) -> int:
    return max(0, capacity - sessions)
