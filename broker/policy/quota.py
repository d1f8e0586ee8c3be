"""Department remote caps ("not everybody at once", minimum presence).

A department may cap how many of its staff work from home at the same time,
as a number or as a share of its staff (rounded down, so the office keeps at
least the rest). Only home work counts; field work does not.

The cap counts people, not sessions: someone with home sessions in two pools
is one person at home, and may open the second even when the cap is reached
(it adds nobody). A share is a share of the department's office staff:
enabled accounts with work mode home (broker.store.tables.CAP_STAFF); field
workers and locked accounts would only raise it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DepartmentCap:
    department: str
    max_sessions: int | None = None
    share: float | None = None

    def limit(self, staff: int) -> int | None:
        """The most staff at home at once, or None when uncapped."""
        if self.max_sessions is not None:
            return self.max_sessions
        if self.share is not None:
            return math.floor(self.share * staff + 1e-9)
        return None


def over_cap(limit: int | None, remote_staff: int) -> bool:
    """Would one more person at home exceed the cap?"""
    return limit is not None and remote_staff >= limit
