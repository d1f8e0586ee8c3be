"""Checking what administrators type for policies and pool settings (no I/O)."""

from __future__ import annotations

import argparse
import datetime as dt
import math

import pytest

from broker.cli import build_parser, unknown_departments_note, unused_priority_class_note
from broker.cli_numbers import int_or_none
from broker.errors import InvalidInput
from broker.policy.schedule import format_days, format_time, parse_days, parse_time
from broker.policy.store import ScheduleSpec, check_cap, check_schedule
from broker.pools.service import UNSET, PoolChanges, validate_changes


def test_days_and_times_are_stored_in_one_spelling() -> None:
    assert format_days(parse_days("Wed, mon")) == "mon,wed"
    assert format_days(parse_days("fri-mon")) == "mon,fri,sat,sun"
    assert format_time(parse_time("7:5")) == "07:05"
    assert format_time(parse_time("24:00")) == "00:00"
    assert format_time(dt.time(18, 30)) == "18:30"


def test_schedule_input_is_normalised() -> None:
    assert check_schedule("department", " Bauamt ", "mon-wed", "7:00", "18:00") == ScheduleSpec(
        "department", "Bauamt", "mon,tue,wed", "07:00", "18:00"
    )
    assert check_schedule("user", " Maria ", "sat,sun", "06:00", "22:00").subject == "maria"


@pytest.mark.parametrize(
    ("scope", "subject", "days", "start", "end", "message"),
    [
        ("team", "Bauamt", "mon", "07:00", "18:00", "'user' or a 'department'"),
        ("department", "Bau\namt", "mon", "07:00", "18:00", "department name"),
        ("user", "Maria Muster", "mon", "07:00", "18:00", "user name"),
        ("department", "Bauamt", "montag", "07:00", "18:00", "unknown weekday"),
        ("department", "Bauamt", "", "07:00", "18:00", "no weekday"),
        ("department", "Bauamt", "mon", "25:00", "18:00", "not a time"),
        ("department", "Bauamt", "mon", "07:00", "18", "not a time"),
        ("department", "Bauamt", "mon", "٠٧:٠٠", "18:00", "not a time"),  # Arabic-Indic
        ("department", "Bauamt", "mon", "07:00", "１８:００", "not a time"),  # full-width
        ("department", "Bauamt", "mon", "+7:00", "18:00", "not a time"),
        # Stored before as a window other than the one written: "mon" alone, and
        # a window from the day's own 00:00, a day before 24:00.
        ("department", "Bauamt", "mon-", "07:00", "18:00", "unknown weekday"),
        ("department", "Bauamt", "fri", "24:00", "06:00", "24:00 ends a window"),
    ],
)
def test_bad_schedules_are_refused(
    scope: str, subject: str, days: str, start: str, end: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_schedule(scope, subject, days, start, end)
    assert message in refused.value.message


def test_cap_is_a_number_or_a_share_or_nothing() -> None:
    assert check_cap(3, None) == (3, None)
    assert check_cap(0, None) == (0, None)
    assert check_cap(None, 1) == (None, 1.0)
    assert check_cap(None, 0.25) == (None, 0.25)
    assert check_cap(None, None) == (None, None)


@pytest.mark.parametrize(
    ("max_sessions", "share", "message"),
    [
        (3, 0.5, "not both"),
        (-1, None, "number of sessions"),
        (100_001, None, "number of sessions"),
        (True, None, "number of sessions"),
        (None, 0.0, "fraction"),
        (None, 1.01, "fraction"),
        (None, math.nan, "fraction"),
        (None, -0.5, "fraction"),
    ],
)
def test_bad_caps_are_refused(max_sessions: int | None, share: float | None, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_cap(max_sessions, share)
    assert message in refused.value.message


def test_pool_changes_keep_what_is_left_out() -> None:
    changes = PoolChanges(max_sessions=20, spare_desktops=None, field=False)
    assert changes.given() == {"max_sessions": 20, "spare_desktops": None, "field": False}
    assert PoolChanges().given() == {}
    assert PoolChanges().idle_timeout_s is UNSET
    assert validate_changes(
        PoolChanges(priority_reserve=0, disconnect_timeout_s=60, max_session_s=None)
    ) == {"priority_reserve": 0.0, "disconnect_timeout_s": 60, "max_session_s": None}


def test_a_reserve_of_minus_zero_is_stored_as_zero() -> None:
    stored = validate_changes(PoolChanges(priority_reserve=-0.0))["priority_reserve"]
    assert math.copysign(1, stored) == 1 and f"{stored:g}" == "0"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (PoolChanges(), "Nothing to change"),
        (PoolChanges(max_sessions=-1), "licence count"),
        (PoolChanges(max_sessions=None), "licence count"),  # type: ignore[arg-type]
        (PoolChanges(priority_reserve=1.0), "priority reserve"),
        (PoolChanges(priority_reserve=-0.1), "priority reserve"),
        (PoolChanges(priority_reserve=math.nan), "priority reserve"),
        (PoolChanges(spare_desktops=-1), "Spare desktops"),
        (PoolChanges(disconnect_timeout_s=59), "disconnect timeout"),
        (PoolChanges(max_session_s=0), "maximum session time"),
        (PoolChanges(idle_timeout_s=10**9), "idle timeout"),
        (PoolChanges(idle_timeout_s=True), "idle timeout"),
        (PoolChanges(field=None), "field flag"),  # type: ignore[arg-type]
    ],
)
def test_bad_pool_settings_are_refused(changes: PoolChanges, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_changes(changes)
    assert message in refused.value.message


def test_cli_number_or_none() -> None:
    assert int_or_none("600") == 600
    assert int_or_none("None") is None
    assert int_or_none(" none ") is None
    with pytest.raises(argparse.ArgumentTypeError):
        int_or_none("10m")


def test_a_rule_for_a_department_nobody_is_in_gets_a_note() -> None:
    known = {"Ordnungsamt", "Finanzen"}
    assert unknown_departments_note(["Finanzen", " Ordnungsamt "], known) is None
    one = unknown_departments_note(["Ordnungsampt"], known)
    assert one is not None
    assert "no user is in department Ordnungsampt (did you mean Ordnungsamt?)." in one
    two = unknown_departments_note(["Stadtkasse", "Finanzen", "Bauhof"], known)
    assert two is not None and "departments Bauhof, Stadtkasse." in two
    assert unknown_departments_note(["IT"], set()) is not None


def test_a_priority_class_nobody_has_gets_a_note() -> None:
    """Classes match exactly: "krisenstab" would not serve users of "Krisenstab"."""
    assert unused_priority_class_note("Krisenstab", {"Krisenstab"}) is None
    note = unused_priority_class_note("krisenstab", {"Krisenstab", "Ordnungsamt"})
    assert note is not None
    assert "no user has priority class krisenstab (did you mean Krisenstab?)." in note
    assert unused_priority_class_note("Krisenstab", set()) is not None


def test_every_command_and_option_of_vdi_broker_says_what_it_does() -> None:
    """`vdi-broker user --help` and the like list each command with a line."""
    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                for name, child in action.choices.items():
                    if name not in helped:
                        missing.append(f"{path} {name}")
                    walk(child, f"{path} {name}")
            elif action.option_strings and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings)}")

    walk(build_parser(), "vdi-broker")
    assert missing == []
