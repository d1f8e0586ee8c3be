"""When to try a failed reset again: soon after the first failure, then less and
less often.

A desktop whose reset failed is kept from everyone until a reset works, so a
passing failure (the hypervisor was busy) should be tried again soon. A reset
that can never work (a physical desktop from a static list, a broken guest)
would otherwise be queued, delivered and failed every lifecycle round, a
stored action each time, for as long as nobody looks. So the wait doubles
with each failure in a row, from `FIRST_RETRY` up to `LONGEST_RETRY`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

FIRST_RETRY = dt.timedelta(seconds=30)
LONGEST_RETRY = dt.timedelta(hours=1)


def retry_delay(failures: int) -> dt.timedelta:
    """The wait after `failures` failed resets in a row (at least one)."""
    # Capped before the power, so a desktop failing for weeks cannot overflow it.
    doublings = min(max(failures, 1) - 1, 16)
    wait: dt.timedelta = FIRST_RETRY * (1 << doublings)
    return min(wait, LONGEST_RETRY)


def consecutive_failures(outcomes: Sequence[tuple[dt.datetime, bool]]) -> list[dt.datetime]:
    """The finish times of the failed resets since the last one that worked, from
    (finished at, ok) pairs in any order."""
    failed: list[dt.datetime] = []
    for finished, ok in sorted(outcomes, reverse=True):
        if ok:
            break
        failed.append(finished)
    return failed


def reset_due(outcomes: Sequence[tuple[dt.datetime, bool]], now: dt.datetime) -> bool:
    """Whether a desktop that still needs a reset gets another one now, from the
    outcomes of its earlier resets."""
    failed = consecutive_failures(outcomes)
    if not failed:
        return True
    return now - failed[0] >= retry_delay(len(failed))
