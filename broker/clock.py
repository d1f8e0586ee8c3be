"""Time source for the broker.

Everything that asks "what time is it" goes through a `Clock`, so tests can move
time forward (TOTP steps, session expiry, lockouts) without sleeping.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FakeClock:
    """A clock that only moves when told to; for tests and benchmarks."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        self._now = when


def to_utc(value: dt.datetime) -> dt.datetime:
    """`value` in UTC; a naive value is taken to be UTC already.

    Raises ValueError where UTC falls outside the calendar (0001-01-01T00:00+01:00
    is still year 0 in UTC), as a malformed time would, so callers that read a
    time a person typed have one error to answer."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("time outside the years 1 to 9999 in UTC") from None
