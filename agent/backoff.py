"""How long to wait before the next attempt while the broker is away."""

from __future__ import annotations

import random
from collections.abc import Callable

DEFAULT_CAP_S = 300.0
# The broker counts a host down once it missed three report intervals
# (host_down_after_missed), and VdiHostNotReporting pages two minutes later. An
# agent still waiting out a long backoff when the broker comes back (a restart,
# an upgrade, the database back) would keep a healthy host down for up to the
# cap: staff refused with host_unavailable and ops paged for a host that is fine.
# So while the broker is merely away the wait never grows beyond three intervals.
AWAY_CAP_INTERVALS = 3


def away_cap(interval_s: float, cap_s: float = DEFAULT_CAP_S) -> float:
    """The longest wait between two attempts while the broker cannot be reached
    or answers with an error: three report intervals, at most `cap_s`."""
    return min(cap_s, AWAY_CAP_INTERVALS * interval_s)


def backoff_delay(
    attempt: int,
    base_s: float,
    cap_s: float = DEFAULT_CAP_S,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Exponential backoff with full jitter: a random wait between 0 and
    min(cap, base * 2**(attempt-1)). The jitter spreads the agents of all hosts
    apart when a broker comes back, instead of all retrying in the same second."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempt - 1, 0), 32))
    return uniform(0.0, ceiling)


def delay_after_failure(
    attempt: int,
    base_s: float,
    cap_s: float = DEFAULT_CAP_S,
    retry_after_s: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """The wait before the next attempt. Where the broker said when to come back
    (Retry-After on a 503 while its database is away, or a 429), that, plus up to
    one report interval of jitter so that the hosts do not all return in the same
    second; the exponential backoff would wait ever longer after the broker is
    back, and the hosts count as down meanwhile. Otherwise the backoff, growing
    to at most three intervals (away_cap). Both are bounded by `cap_s`."""
    if retry_after_s is not None:
        return min(cap_s, retry_after_s + uniform(0.0, base_s))
    return backoff_delay(attempt, base_s, away_cap(base_s, cap_s), uniform)
