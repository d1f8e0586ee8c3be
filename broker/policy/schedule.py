"""Telework agreements: on which weekdays and at which times remote work is allowed.

A user's own windows replace their department's; with neither, there is no
restriction. Windows are local time in the configured zone (Europe/Berlin by
default); a window whose end is not after its start runs over midnight
(22:00-06:00). Schedules restrict work from home; field work is duty and is not
restricted by them.

A session that is open when its window closes keeps running, so nobody loses
unsaved work mid-sentence; the broker ends it `schedule_grace_s` after the
close (broker.sessions.lifecycle), and new sessions are refused meanwhile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAYS_DE = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def contains(self, local: dt.datetime) -> bool:
        t = local.time()
        day = local.weekday()
        if not self.overnight:
            return day in self.days and self.start <= t < self.end
        # Over midnight: the evening part belongs to the listed day, the
        # morning part to the day before.
        return (day in self.days and t >= self.start) or (
            (day - 1) % 7 in self.days and t < self.end
        )

    def describe(self, german: bool = False) -> str:
        names = DAYS_DE if german else DAYS
        days = ",".join(names[d] for d in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}"


def parse_days(text: str) -> frozenset[int]:
    """'mon,wed', 'mon-fri', 'sat,sun' -> weekday numbers; ValueError if unclear."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"unknown weekday in {part!r}; use {', '.join(DAYS)}")
        a = DAYS.index(first)
        b = DAYS.index(last) if last else a
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not days:
        raise ValueError("no weekday given")
    return frozenset(days)


def parse_time(text: str) -> dt.time:
    """'07:30' (H:MM or HH:MM, ASCII digits; int() would take any script's)."""
    try:
        hours, minutes = text.split(":")
        if not (hours + minutes).isascii() or not (hours + minutes).isdigit():
            raise ValueError("not ASCII digits")
        if hours == "24" and minutes == "00":
            return dt.time(0, 0)
        return dt.time(int(hours), int(minutes))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a time like 07:30") from exc


def format_days(days: frozenset[int]) -> str:
    """Weekday numbers as stored and shown: 'mon,tue,wed' (Monday first)."""
    return ",".join(DAYS[d] for d in sorted(days))


def format_time(t: dt.time) -> str:
    """A window bound as stored and shown: '07:00' (midnight as an end is '00:00')."""
    return f"{t:%H:%M}"


def applicable(
    user_windows: Sequence[Window], department_windows: Sequence[Window]
) -> Sequence[Window] | None:
    """The windows that govern a user, or None when nothing restricts them."""
    if user_windows:
        return user_windows
    if department_windows:
        return department_windows
    return None


def allowed(windows: Sequence[Window] | None, local: dt.datetime) -> bool:
    return windows is None or any(w.contains(local) for w in windows)


def closed_for(windows: Sequence[Window] | None, local: dt.datetime) -> dt.timedelta | None:
    """How long ago the last window closed, if we are outside every window now.

    None while inside a window or without restriction. Looks back a week.
    """
    if allowed(windows, local):
        return None
    assert windows is not None
    latest: dt.datetime | None = None
    for back in range(8):
        day = (local - dt.timedelta(days=back)).date()
        for w in windows:
            start_day = day if not w.overnight else day - dt.timedelta(days=1)
            if start_day.weekday() not in w.days:
                continue
            end = dt.datetime.combine(day, w.end, tzinfo=local.tzinfo)
            if end <= local and (latest is None or end > latest):
                latest = end
        if latest is not None:
            break
    return local - latest if latest is not None else dt.timedelta(days=7)
