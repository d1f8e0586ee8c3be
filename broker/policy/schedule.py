"""Telework agreements: on which weekdays and at which times remote work is allowed.

A user's own windows replace their department's; with neither, there is no
restriction. Windows are local time in the configured zone (Europe/Berlin by
default); a window whose end is not after its start runs over midnight
(22:00-06:00). Schedules restrict work from home; field work is duty and is not
restricted by them.

A session that is open when its window closes keeps running, so nobody loses
unsaved work mid-sentence; the broker ends it `schedule_grace_s` after the
close (broker.sessions.lifecycle), and new sessions are refused meanwhile. A
change of the rules (a window added or removed) that finds a session outside
its windows gives it the same grace, counted from the change (in_force_since).

Window bounds are wall-clock times, but a window is the stretch of real time
between two moments: a bound is the first moment the local clock reads it
(broker.policy.schedule.moment). So across a daylight-saving change a bound in
the skipped spring hour is the clock change itself, one in the repeated autumn
hour is its first occurrence, a window does not close and reopen while the
clock repeats an hour, and time since a close is real (UTC) time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# As people read them (the portal's day names, refusals); DAYS are the codes.
DAYS_DE = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")
DAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time

    @classmethod
    def stored(cls, days: str, start: str, end: str) -> Window:
        """A window as a schedule row stores it ("mon,wed", "07:00", "18:00")."""
        return cls(parse_days(days), parse_time(start), parse_time(end))

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def contains(self, local: dt.datetime) -> bool:
        """Is `local` (aware, in the schedules' zone) inside this window?"""
        now = local.astimezone(dt.UTC)
        zone = _zone(local)
        # Over midnight, the morning part belongs to the day before: the window
        # that may hold `local` started on its day or the day before.
        today = local.date()
        return any(
            start <= now < end
            for start, end in self.occurrences(zone, (today - dt.timedelta(days=1), today))
        )

    def occurrences(
        self, zone: dt.tzinfo, start_days: Iterable[dt.date]
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """(start, end) in UTC of this window's occurrences beginning on the given days."""
        for day in start_days:
            if day.weekday() not in self.days:
                continue
            end_day = day + dt.timedelta(days=1) if self.overnight else day
            yield moment(day, self.start, zone), moment(end_day, self.end, zone)

    def describe(self, german: bool = False) -> str:
        """For people: "Mo, Mi 07:00-18:00" or "Mon, Wed 07:00-18:00"."""
        names = DAYS_DE if german else DAYS_EN
        days = ", ".join(names[d] for d in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}"


def parse_days(text: str) -> frozenset[int]:
    """'mon,wed', 'mon-fri', 'sat,sun' -> weekday numbers; ValueError if unclear."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        if not part:
            continue
        first, dash, last = part.partition("-")
        if first not in DAYS or (dash and last not in DAYS):  # "mon-": a range cut short
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


def in_force_since(
    own_windows: bool, user_changed: dt.datetime | None, department_changed: dt.datetime | None
) -> dt.datetime | None:
    """When the windows that govern a user came into force for them, from when the
    user's and the department's windows last changed (added or removed).

    A user's own windows replace the department's, so only their own changes
    count. Under the department's windows the user's changes count too:
    removing a user's last window puts them under the department's windows
    from that moment on.
    """
    if own_windows:
        return user_changed
    changes = [t for t in (user_changed, department_changed) if t is not None]
    return max(changes) if changes else None


def allowed(windows: Sequence[Window] | None, local: dt.datetime) -> bool:
    return windows is None or any(w.contains(local) for w in windows)


def closed_for(
    windows: Sequence[Window] | None, local: dt.datetime, in_force: dt.datetime | None = None
) -> dt.timedelta | None:
    """How long home work has not been allowed, if we are outside every window now.

    That is real time since the last window closed (looking back a week), or
    since `in_force`, when the windows came into force, if that is later: a
    rule added after the close gives running sessions the grace a closing
    window gives. None while inside a window or without restriction.
    """
    if allowed(windows, local):
        return None
    assert windows is not None
    now = local.astimezone(dt.UTC)
    zone = _zone(local)
    days = [local.date() - dt.timedelta(days=back) for back in range(8)]
    ends = [end for w in windows for _, end in w.occurrences(zone, days) if end <= now]
    since = max(ends) if ends else now - dt.timedelta(days=7)
    if in_force is not None:
        since = max(since, in_force.astimezone(dt.UTC))
    return max(now - since, dt.timedelta(0))


def moment(day: dt.date, t: dt.time, zone: dt.tzinfo) -> dt.datetime:
    """The first moment (UTC) at which the wall clock in `zone` reads `t` or later on `day`.

    A time the clock repeats (autumn) is its first occurrence; a time it skips
    (spring) is the moment the clock jumps past it.
    """
    wall = dt.datetime.combine(day, t)
    # fold=0: a repeated time's first occurrence; a skipped time read with the
    # offset before the jump, which lands after the jump.
    late = wall.replace(tzinfo=zone).astimezone(dt.UTC)
    if _wall(late, zone) == wall:
        return late
    # Skipped. Read with the offset after the jump it lands before the jump;
    # the jump lies in between: the first moment whose wall clock is past `t`.
    early = wall.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    low, high = int(early.timestamp()), int(late.timestamp())  # clocks change on whole seconds
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(dt.datetime.fromtimestamp(middle, dt.UTC), zone) >= wall:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, dt.UTC)


def _wall(utc: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    return utc.astimezone(zone).replace(tzinfo=None, fold=0)


def _zone(local: dt.datetime) -> dt.tzinfo:
    if local.tzinfo is None:
        raise ValueError("a schedule needs an aware local time")
    return local.tzinfo
