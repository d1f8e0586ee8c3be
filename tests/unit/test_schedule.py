"""Telework windows."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from broker.policy.schedule import (
    Window,
    allowed,
    applicable,
    closed_for,
    in_force_since,
    moment,
    parse_days,
    parse_time,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """2026-03-02 is a Monday; day 0..6 from there, Berlin time."""
    return dt.datetime(2026, 3, 2 + day, hour, minute, tzinfo=BERLIN)


MON_WED = Window(parse_days("mon,wed"), parse_time("07:00"), parse_time("18:00"))
WEEKEND = Window(parse_days("sat-sun"), parse_time("06:00"), parse_time("22:00"))
NIGHT = Window(parse_days("fri"), parse_time("22:00"), parse_time("06:00"))


def test_parse_days() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("sat,sun") == frozenset({5, 6})
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    with pytest.raises(ValueError):
        parse_days("montag")
    with pytest.raises(ValueError):
        parse_time("7 Uhr")


def test_weekday_windows() -> None:
    assert allowed([MON_WED], at(0, 7))
    assert allowed([MON_WED], at(2, 17, 59))
    assert not allowed([MON_WED], at(2, 18))
    assert not allowed([MON_WED], at(1, 10))  # Tuesday
    assert allowed([MON_WED, WEEKEND], at(5, 21))


def test_overnight_window_belongs_to_its_start_day() -> None:
    assert allowed([NIGHT], at(4, 23))  # Friday night
    assert allowed([NIGHT], at(5, 5, 59))  # Saturday morning, same shift
    assert not allowed([NIGHT], at(5, 23))
    assert not allowed([NIGHT], at(4, 5))  # Friday morning belongs to Thursday


def test_user_windows_replace_department_windows() -> None:
    assert applicable([WEEKEND], [MON_WED]) == [WEEKEND]
    assert applicable([], [MON_WED]) == [MON_WED]
    assert applicable([], []) is None
    assert allowed(None, at(1, 3))


def test_time_since_the_window_closed() -> None:
    assert closed_for([MON_WED], at(0, 10)) is None
    assert closed_for([MON_WED], at(0, 19, 30)) == dt.timedelta(hours=1, minutes=30)
    assert closed_for([NIGHT], at(5, 7)) == dt.timedelta(hours=1)
    assert closed_for([MON_WED], at(1, 8)) == dt.timedelta(hours=14)


def test_rules_come_into_force_with_their_last_change() -> None:
    old, newer = at(0, 8), at(0, 9)
    # Own windows replace the department's: only their own changes count.
    assert in_force_since(True, old, newer) == old
    # Under the department's windows, removing one's own last window counts too.
    assert in_force_since(False, newer, old) == newer
    assert in_force_since(False, old, newer) == newer
    assert in_force_since(False, None, old) == old
    assert in_force_since(False, None, None) is None
    # A change gives a session outside its windows the grace from then.
    assert closed_for([MON_WED], at(1, 10), in_force_since(False, at(1, 9), None)) == (
        dt.timedelta(hours=1)
    )


def test_daylight_saving_change_uses_local_time() -> None:
    # 2026-03-29 is the spring change in Berlin; 07:00 local is 05:00 UTC after it.
    sunday_window = Window(parse_days("sun"), parse_time("07:00"), parse_time("08:00"))
    utc = dt.datetime(2026, 3, 29, 5, 30, tzinfo=dt.UTC)
    assert allowed([sunday_window], utc.astimezone(BERLIN))


# -- daylight-saving changes (Berlin 2025: spring 2025-03-30, autumn 2025-10-26) ----


def utc(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A moment in 2025, given in UTC and seen as Berlin local time."""
    return dt.datetime(2025, month, day, hour, minute, tzinfo=dt.UTC).astimezone(BERLIN)


def test_a_bound_is_the_first_moment_the_clock_reads_it() -> None:
    # 02:30 does not exist on 2025-03-30: the clock jumps from 02:00 CET to 03:00 CEST.
    assert moment(dt.date(2025, 3, 30), dt.time(2, 30), BERLIN) == dt.datetime(
        2025, 3, 30, 1, 0, tzinfo=dt.UTC
    )
    # 02:15 happens twice on 2025-10-26 (CEST, then CET): the first counts.
    assert moment(dt.date(2025, 10, 26), dt.time(2, 15), BERLIN) == dt.datetime(
        2025, 10, 26, 0, 15, tzinfo=dt.UTC
    )
    assert moment(dt.date(2025, 3, 30), dt.time(1, 30), BERLIN) == dt.datetime(
        2025, 3, 30, 0, 30, tzinfo=dt.UTC
    )


def test_grace_is_real_time_across_the_spring_change() -> None:
    # Closes Sunday 01:30 CET (00:30 UTC); 01:00 UTC is 03:00 CEST, 30 real minutes later.
    saturday_night = Window(parse_days("sat"), parse_time("18:00"), parse_time("01:30"))
    assert closed_for([saturday_night], utc(3, 30, 1)) == dt.timedelta(minutes=30)
    assert closed_for([saturday_night], utc(3, 30, 1, 30)) == dt.timedelta(hours=1)


def test_grace_is_real_time_across_the_autumn_change() -> None:
    # Closes at the first 02:15 (CEST, 00:15 UTC); an hour later the clock reads 02:15 again.
    saturday_night = Window(parse_days("sat"), parse_time("18:00"), parse_time("02:15"))
    assert closed_for([saturday_night], utc(10, 26, 0, 45)) == dt.timedelta(minutes=30)
    assert closed_for([saturday_night], utc(10, 26, 1, 15)) == dt.timedelta(hours=1)


def test_a_window_does_not_reopen_while_the_clock_repeats_an_hour() -> None:
    saturday_night = Window(parse_days("sat"), parse_time("18:00"), parse_time("02:15"))
    assert allowed([saturday_night], utc(10, 26, 0, 10))  # 02:10 CEST
    assert not allowed([saturday_night], utc(10, 26, 0, 20))  # 02:20 CEST
    assert not allowed([saturday_night], utc(10, 26, 1, 5))  # 02:05 CET, the second time
    # A window that opened in the first pass stays open in the second.
    early_sunday = Window(parse_days("sun"), parse_time("02:30"), parse_time("06:00"))
    assert not allowed([early_sunday], utc(10, 26, 0, 20))  # 02:20 CEST
    assert allowed([early_sunday], utc(10, 26, 0, 45))  # 02:45 CEST
    assert allowed([early_sunday], utc(10, 26, 1, 10))  # 02:10 CET
    assert closed_for([early_sunday], utc(10, 26, 1, 10)) is None


def test_a_bound_in_the_skipped_hour_is_the_clock_change() -> None:
    early_sunday = Window(parse_days("sun"), parse_time("02:30"), parse_time("06:00"))
    assert not allowed([early_sunday], utc(3, 30, 0, 59))  # 01:59 CET
    assert allowed([early_sunday], utc(3, 30, 1))  # 03:00 CEST, right after the jump
    saturday_night = Window(parse_days("sat"), parse_time("22:00"), parse_time("02:30"))
    assert allowed([saturday_night], utc(3, 30, 0, 59))
    assert not allowed([saturday_night], utc(3, 30, 1))
    assert closed_for([saturday_night], utc(3, 30, 1, 30)) == dt.timedelta(minutes=30)


def test_grace_counts_from_when_the_rule_came_into_force() -> None:
    # Monday 19:30, the window closed at 18:00; a rule made at 19:00 gives 30 min so far.
    made = dt.datetime(2026, 3, 2, 18, 0, tzinfo=dt.UTC)  # 19:00 in Berlin
    assert closed_for([MON_WED], at(0, 19, 30), in_force=made) == dt.timedelta(minutes=30)
    assert closed_for([MON_WED], at(0, 19, 30), in_force=made - dt.timedelta(hours=5)) == (
        dt.timedelta(hours=1, minutes=30)
    )
    assert closed_for([MON_WED], at(0, 10), in_force=made) is None
