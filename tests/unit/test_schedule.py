"""Telework windows."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from broker.policy.schedule import Window, allowed, applicable, closed_for, parse_days, parse_time

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


def test_daylight_saving_change_uses_local_time() -> None:
    # 2026-03-29 is the spring change in Berlin; 07:00 local is 05:00 UTC after it.
    sunday_window = Window(parse_days("sun"), parse_time("07:00"), parse_time("08:00"))
    utc = dt.datetime(2026, 3, 29, 5, 30, tzinfo=dt.UTC)
    assert allowed([sunday_window], utc.astimezone(BERLIN))
