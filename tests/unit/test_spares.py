"""Spare desktop planning (pure)."""

from __future__ import annotations

import datetime as dt

from broker.placement.spares import SpareCandidate, plan_spares

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def c(i: int, score: float = 0.5, idle_min: float | None = None) -> SpareCandidate:
    idle = NOW - dt.timedelta(minutes=idle_min) if idle_min is not None else None
    return SpareCandidate(i, f"d{i}", host_id=i, host_score=score, idle_since=idle)


def test_missing_spares_start_on_the_least_loaded_hosts() -> None:
    plan = plan_spares(3, [c(1)], [c(2, 0.9), c(3, 0.1), c(4, 0.5)], 0, NOW, 900)
    assert [x.desktop_id for x in plan.start] == [3, 4]
    assert plan.stop == []


def test_desktops_already_starting_count() -> None:
    plan = plan_spares(3, [c(1)], [c(2), c(3)], 2, NOW, 900)
    assert plan.start == [] and plan.stop == []


def test_surplus_stops_only_after_idling_most_loaded_host_first() -> None:
    running = [c(1, 0.2, idle_min=60), c(2, 0.8, idle_min=60), c(3, 0.9, idle_min=1), c(4, 0.1)]
    plan = plan_spares(1, running, [], 0, NOW, 900)
    assert [x.desktop_id for x in plan.stop] == [2, 1]
    assert plan.start == []


def test_exact_number_does_nothing() -> None:
    assert plan_spares(2, [c(1), c(2)], [c(3)], 0, NOW, 900) == plan_spares(0, [], [], 0, NOW, 0)
