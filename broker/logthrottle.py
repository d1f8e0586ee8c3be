"""Log lines a client can provoke at will, at most one per kind and interval.

A misbehaving or hostile client can make the gateway refuse thousands of
channels a second; one log line each would fill the disk (a review measured
100 MB of tracebacks in 70 s). `LogThrottle` lets one line of a kind through
per interval and says in the next one how many it held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# One line per kind in this many seconds.
EVERY_S = 10.0


def let_through(last_at: float | None, now: float, every_s: float) -> bool:
    """May a line of a kind last logged at `last_at` be logged at `now`?"""
    return last_at is None or now - last_at >= every_s


class LogThrottle:
    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = EVERY_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._every_s = every_s
        self._now = now
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, kind: str, message: str, *args: object) -> bool:
        """Log `message` (without a traceback) unless a line of `kind` went out
        within the interval; True if it was logged."""
        now = self._now()
        if not let_through(self._last.get(kind), now, self._every_s):
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        if held:
            message += " (and %d more like it held back)"
            args = (*args, held)
        self._logger.log(level, message, *args)
        return True
