"""How long to wait before the next attempt while the broker is away."""

from __future__ import annotations

import random
from collections.abc import Callable

DEFAULT_CAP_S = 300.0


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
