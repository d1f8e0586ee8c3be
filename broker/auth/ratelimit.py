"""A sliding-window rate limit per key (a source, see broker.net.source_key),
kept in memory.

It only blunts floods from one source before they cost argon2 time; the real
guard against guessing is the per-account lockout, which lives in the database
and so holds across restarts and replicas.

Keys are kept in the order of their last hit, so forgetting the idle ones costs
only what is forgotten, and at most `max_keys` are kept: a flood from ever new
addresses neither grows memory without bound nor makes each hit scan them all.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

MAX_KEYS = 100_000


class SlidingWindowLimiter:
    def __init__(
        self, limit: int, window_s: float, now: Callable[[], float], max_keys: int = MAX_KEYS
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._now = now
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str) -> float | None:
        """Count one attempt; return seconds to wait when over the limit, else None."""
        now = self._now()
        horizon = now - self.window_s
        self._forget(horizon)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        else:
            self._hits.move_to_end(key)
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1.0, hits[0] - horizon)
        hits.append(now)
        return None

    def __len__(self) -> int:
        return len(self._hits)

    def _forget(self, horizon: float) -> None:
        """Drop keys whose last hit left the window (they are at the front), and
        the least recently seen ones beyond `max_keys`."""
        hits = self._hits
        while hits:
            oldest = next(iter(hits.values()))
            if len(hits) < self.max_keys and oldest and oldest[-1] > horizon:
                break
            hits.popitem(last=False)


def retry_after(seconds: float) -> dict[str, str]:
    """The Retry-After header for a wait, in whole seconds, at least one."""
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}
