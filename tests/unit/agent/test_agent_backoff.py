"""Backoff while the broker is away."""

from __future__ import annotations

import random

import pytest

from agent.backoff import backoff_delay


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
