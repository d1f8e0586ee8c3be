"""Department remote caps ("not everybody at once", minimum presence).

A department may cap how many of its staff work from home at the same time,
as a number or as a share of its staff (rounded down, so the office keeps at
least the rest). Only home work counts; field work does not.
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
        """The most home sessions at once, or None when uncapped."""
        if self.max_sessions is not None:
            return self.max_sessions
        if self.share is not None:
            return math.floor(self.share * staff + 1e-9)
        return None


def over_cap(limit: int | None, remote_sessions: int) -> bool:
    """Would one more home session exceed the cap?"""
    return limit is not None and remote_sessions >= limit
