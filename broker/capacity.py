"""Pool capacity arithmetic (pure): what a pool can hold now, and if a host fails."""

from __future__ import annotations

from collections.abc import Mapping


def usable(
    max_sessions: int, desktops_per_host: Mapping[int, int], accepting: set[int], held: int = 0
) -> int:
    """The licence limit bounded by the pool's desktops on hosts that take sessions,
    plus the `held` ones in use on up hosts that take no new sessions (draining,
    maintenance): those sessions go on, and count as sessions, on desktops the
    accepting hosts' figure leaves out."""
    return min(max_sessions, sum(n for h, n in desktops_per_host.items() if h in accepting) + held)


def without_largest_host(
    max_sessions: int, desktops_per_host: Mapping[int, int], accepting: set[int], held: int = 0
) -> int:
    """Usable capacity if the accepting host with most of the pool's desktops failed."""
    counts = [n for h, n in desktops_per_host.items() if h in accepting]
    if not counts:
        return 0
    return min(max_sessions, sum(counts) - max(counts) + held)


def utilization(sessions: int, capacity: int) -> float:
    """Sessions over usable capacity; a pool without capacity counts as full."""
    if capacity <= 0:
        return 1.0
    return sessions / capacity


def free(sessions: int, capacity: int) -> int:
    return max(0, capacity - sessions)
