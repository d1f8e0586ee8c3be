"""The load index of DESIGN.md."""

from __future__ import annotations

import pytest

from broker.config import LoadIndexSettings
from broker.placement.load_index import HostLoad, load_index

CFG = LoadIndexSettings()
GIB = 1 << 30


def test_idle_host_is_zero() -> None:
    idx = load_index(HostLoad(0.05, 64 * GIB, 64 * GIB * 0.95, 0, 10, 0), CFG)
    assert idx.index == 0.0


def test_components_follow_the_design_formulas() -> None:
    # cpu: (0.5 - 0.1) / 0.8 = 0.5; memory: used 32 GiB, base 6.4, full 57.6 -> 0.5
    # sessions: 3/10; logons: 1/2
    idx = load_index(HostLoad(0.5, 64 * GIB, 32 * GIB, 3, 10, 1), CFG)
    assert idx.cpu == pytest.approx(0.5)
    assert idx.memory == pytest.approx(0.5)
    assert idx.sessions == pytest.approx(0.3)
    assert idx.logons == pytest.approx(0.5)
    # highest (0.5) + 0.1 * mean of the others (0.5, 0.5, 0.3)
    assert idx.index == pytest.approx(0.5 + 0.1 * (1.3 / 3))


def test_components_are_clamped_and_index_capped_at_one() -> None:
    idx = load_index(HostLoad(1.0, 64 * GIB, 0, 20, 10, 9), CFG)
    assert (idx.cpu, idx.memory, idx.sessions, idx.logons) == (1.0, 1.0, 1.0, 1.0)
    assert idx.index == 1.0


def test_one_full_resource_makes_the_host_full_enough() -> None:
    memory_full = load_index(HostLoad(0.1, 64 * GIB, 1 * GIB, 0, 10, 0), CFG)
    assert memory_full.index >= 1.0


def test_a_host_without_capacity_counts_as_full_on_sessions() -> None:
    assert load_index(HostLoad(None, None, None, 0, 0, 0), CFG).sessions == 1.0


def test_logons_raise_the_index_at_once() -> None:
    before = load_index(HostLoad(0.2, 64 * GIB, 48 * GIB, 2, 10, 0), CFG)
    after = load_index(HostLoad(0.2, 64 * GIB, 48 * GIB, 3, 10, 1), CFG)
    assert after.index > before.index
