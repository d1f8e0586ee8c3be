"""A sliding-window rate limit per key (source address), kept in memory.

It only blunts floods from one address before they cost argon2 time; the real
guard against guessing is the per-account lockout, which lives in the database
and so holds across restarts and replicas.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    def __init__(self, limit: int, window_s: float, now: Callable[[], float]) -> None:
        self.limit = limit
        self.window_s = window_s
        self._now = now
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float | None:
        """Count one attempt; return seconds to wait when over the limit, else None."""
        now = self._now()
        horizon = now - self.window_s
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) > 10_000:
                self._prune(horizon)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1.0, hits[0] - horizon)
        hits.append(now)
        return None

    def _prune(self, horizon: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= horizon]:
            del self._hits[key]


def retry_after(seconds: float) -> dict[str, str]:
    """The Retry-After header for a wait, in whole seconds, at least one."""
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}
