"""Per-account lockout: how long an account stays locked after failures."""

from __future__ import annotations

import datetime as dt

from broker.config import Settings


def lock_seconds(failures: int, *, threshold: int, base_s: int, max_s: int) -> int | None:
    """Seconds to lock after `failures` consecutive failures, or None for no lock.

    The 5th failure (with the default threshold) locks for `base_s`; every further
    failure doubles the delay, up to `max_s`. A success resets the count.
    """
    if failures < threshold:
        return None
    exponent = min(failures - threshold, 30)
    return int(min(max_s, base_s * (2**exponent)))


def lock_seconds_for(failures: int, settings: Settings) -> int | None:
    """lock_seconds() with the configured threshold and delays; accounts and
    names without one (broker.auth.name_lockout) lock by this same rule."""
    return lock_seconds(
        failures,
        threshold=settings.lockout_threshold,
        base_s=settings.lockout_base_delay_s,
        max_s=settings.lockout_max_delay_s,
    )


def seconds_left(locked_until: dt.datetime | None, now: dt.datetime) -> float:
    """Seconds a lock that refused an attempt has left; at least one, since the
    lock may have been lifted between the refusal and this look (a parallel
    success), and a refusal must still say when to come back."""
    if locked_until is None:
        return 1.0
    return max((locked_until - now).total_seconds(), 1.0)
