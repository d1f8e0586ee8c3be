"""Per-account lockout: how long an account stays locked after failures."""

from __future__ import annotations


def lock_seconds(failures: int, *, threshold: int, base_s: int, max_s: int) -> int | None:
    """Seconds to lock after `failures` consecutive failures, or None for no lock.

    The 5th failure (with the default threshold) locks for `base_s`; every further
    failure doubles the delay, up to `max_s`. A success resets the count.
    """
    if failures < threshold:
        return None
    exponent = min(failures - threshold, 30)
    return int(min(max_s, base_s * (2**exponent)))
