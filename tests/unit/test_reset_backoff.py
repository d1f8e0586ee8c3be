"""The wait before a failed reset is tried again (broker.hosts.backoff)."""

from __future__ import annotations

import datetime as dt

from broker.hosts.backoff import LONGEST_RETRY, consecutive_failures, reset_due, retry_delay

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_the_wait_doubles_up_to_an_hour() -> None:
    waits = [retry_delay(n).total_seconds() for n in range(1, 10)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert retry_delay(10**6) == LONGEST_RETRY  # weeks of failures do not overflow


def test_only_failures_since_the_last_success_count() -> None:
    outcomes = [(at(0), False), (at(100), True), (at(200), False), (at(300), False)]
    assert consecutive_failures(outcomes) == [at(300), at(200)]
    assert consecutive_failures(list(reversed(outcomes))) == [at(300), at(200)]
    assert consecutive_failures([(at(5), True)]) == []


def test_a_reset_is_due_once_the_wait_after_the_last_failure_is_over() -> None:
    assert reset_due([], at(0))  # never failed
    assert reset_due([(at(0), True)], at(0))
    two = [(at(0), False), (at(40), False)]  # the second wait is 60 s
    assert not reset_due(two, at(99))
    assert reset_due(two, at(100))
