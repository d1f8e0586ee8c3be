"""Backoff while the broker is away."""

from __future__ import annotations

import random

import pytest

from agent.backoff import away_cap, backoff_delay, delay_after_failure
from agent.http import retry_after


def upper(lo: float, hi: float) -> float:
    return hi


def test_ceiling_doubles_from_the_interval_up_to_the_cap() -> None:
    ceilings = [backoff_delay(n, 10.0, 300.0, upper) for n in range(1, 8)]
    assert ceilings == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(10_000, 10.0, 300.0, upper) == 300.0


def test_full_jitter_spreads_between_zero_and_the_ceiling() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(3, 10.0, 300.0, rng.uniform) for _ in range(2000)]
    assert all(0.0 <= d <= 40.0 for d in delays)
    assert min(delays) < 4.0 and max(delays) > 36.0
    assert sum(delays) / len(delays) == pytest.approx(20.0, rel=0.1)


def test_while_the_broker_is_away_the_wait_stays_within_three_intervals() -> None:
    # The broker counts a host down after three missed intervals: an agent that
    # waited minutes after the broker came back would keep a healthy host down.
    cap = away_cap(10.0)
    assert cap == 30.0
    assert [backoff_delay(n, 10.0, cap, upper) for n in range(1, 8)] == [10.0, 20.0] + [30.0] * 5
    assert away_cap(600.0) == 300.0  # a very long interval keeps the overall cap


def lower(lo: float, hi: float) -> float:
    return lo


def test_retry_after_is_kept_whatever_the_attempt_with_up_to_one_interval_more() -> None:
    assert delay_after_failure(1, 10.0, 300.0, 5.0, lower) == 5.0
    assert delay_after_failure(9, 10.0, 300.0, 5.0, upper) == 15.0
    assert delay_after_failure(9, 10.0, 300.0, None, upper) == 30.0  # no hint: backoff
    assert delay_after_failure(1, 10.0, 300.0, 3600.0, lower) == 300.0  # within the cap


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ([(b"retry-after", b"5")], 5.0),
        ([(b"content-type", b"application/json"), (b"Retry-After", b" 120 ")], 120.0),
        ([(b"retry-after", b"Wed, 21 Oct 2026 07:28:00 GMT")], None),  # a date: own backoff
        ([(b"retry-after", b"-1")], None),
        ([(b"retry-after", b"9" * 40)], None),
        ([], None),
    ],
)
def test_retry_after_header(headers: list[tuple[bytes, bytes]], seconds: float | None) -> None:
    assert retry_after(headers) == seconds
