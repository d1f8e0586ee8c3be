"""Priority classes and the reserve that keeps room for them in an emergency.

A pool may reserve a share of its usable capacity for staff of priority task
areas (crisis team, public order, payment of social benefits). Once the pool
is filled to (1 - reserve), only priority staff get a desktop; others get a
clear `capacity_full` at once, never a wait.
"""

from __future__ import annotations

import math


def is_priority(priority_class: str | None, priority_classes: frozenset[str]) -> bool:
    return priority_class is not None and priority_class in priority_classes


def reserve_threshold(capacity: int, reserve: float) -> int:
    """Sessions from which on only priority staff are served."""
    return math.floor((1.0 - reserve) * capacity + 1e-9)


def reserve_blocks(open_sessions: int, capacity: int, reserve: float, priority: bool) -> bool:
    if priority or reserve <= 0:
        return False
    return open_sessions >= reserve_threshold(capacity, reserve)
